package terraform

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/user"
	"sync/atomic"
	"time"

	"github.com/hashicorp/terraform-exec/tfexec"

	"github.com/prox-ops/drover/internal/rollout"
)

// The statuses of a LockRecord.
const (
	LockStarted     = "started"
	LockDone        = "done"
	LockFailed      = "failed"
	LockInterrupted = "interrupted"
	// LockLeft: the command ended but its lock is still held (Terraform
	// was killed before it could release it); LockID says which.
	LockLeft = "lock-left"
	// LockBroken: a resumed run force-unlocked the lock its dead run left.
	LockBroken = "unlocked"
)

// LockRecord is one Terraform command that takes the state lock, as the
// journal keeps it: enough for a resumed run to recognise a lock its own
// dead run left (and to break only that one).
type LockRecord struct {
	// Ref ties a command's records together.
	Ref string `json:"ref"`
	// Op is what ran: templates, destroy, apply.
	Op string `json:"op"`
	// Who is user@host, as Terraform writes it into the lock it takes.
	Who     string    `json:"who"`
	Started time.Time `json:"started"`
	Status  string    `json:"status"`
	// LockID is the lock left behind (LockLeft) or broken (LockBroken).
	LockID string `json:"lockId,omitempty"`
}

// Ledger receives the LockRecords of the Runner's commands (the run's
// journal, in production).
type Ledger func(ctx context.Context, rec LockRecord)

// Entry is the record as a journal entry of the run.
func (rec LockRecord) Entry(runID string, at time.Time) rollout.Entry {
	detail, _ := json.Marshal(rec)
	return rollout.Entry{Time: at, RunID: runID, Step: rollout.StepTerraform, Status: rollout.Status(rec.Status), Detail: string(detail)}
}

// LockRecords reads the records back from a run's StepTerraform entries;
// an entry that is not one is skipped.
func LockRecords(entries []rollout.Entry) []LockRecord {
	var out []LockRecord
	for _, e := range entries {
		var rec LockRecord
		if e.Step == rollout.StepTerraform && json.Unmarshal([]byte(e.Detail), &rec) == nil && rec.Ref != "" {
			out = append(out, rec)
		}
	}
	return out
}

// lockOwner is who Terraform names as a lock's holder when this process
// runs it: the user name and host name, as Terraform computes them.
func lockOwner() string {
	name := ""
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host
}

func newRef() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Watch makes the Runner's state-changing commands stop when stop is done
// (the run's SIGINT/SIGTERM): Terraform gets an interrupt, finishes what
// it is doing, writes the state and releases its lock. Each such command
// is written down in ledger, with the lock it leaves if it leaves one.
func (r *Runner) Watch(stop context.Context, ledger Ledger) {
	r.stop, r.ledger = stop, ledger
}

func (r *Runner) note(ctx context.Context, rec LockRecord) {
	if r.ledger != nil {
		r.ledger(context.WithoutCancel(ctx), rec)
	}
}

// locked runs a command that takes the state lock: stoppable by the
// watched stop, and written down. fn gets the stoppable context.
func (r *Runner) locked(ctx context.Context, op, who string, fn func(context.Context) error) error {
	rec := LockRecord{Ref: newRef(), Op: op, Who: r.owner, Started: time.Now().UTC(), Status: LockStarted}
	r.note(ctx, rec)
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var interrupted atomic.Bool
	if r.stop != nil {
		unhook := context.AfterFunc(r.stop, func() {
			interrupted.Store(true)
			cancel()
		})
		defer unhook()
	}
	err := r.run(who, func() error { return fn(tctx) })
	switch {
	case interrupted.Load():
		rec.Status = LockInterrupted
		r.note(ctx, rec)
		if le, _ := r.lockHolder(ctx); le != nil && le.Who == r.owner {
			rec.Status, rec.LockID = LockLeft, le.ID
			r.note(ctx, rec)
			return fmt.Errorf("terraform %s was interrupted and left its state lock %s; drover upgrade --resume breaks it: %w", op, le.ID, errOrInterrupted(err))
		}
		return fmt.Errorf("terraform %s was interrupted; it released its state lock: %w", op, errOrInterrupted(err))
	case err != nil:
		rec.Status = LockFailed
	default:
		rec.Status = LockDone
	}
	r.note(ctx, rec)
	return err
}

func errOrInterrupted(err error) error {
	if err == nil {
		return context.Canceled
	}
	return err
}

// lockHolder asks Terraform whether the state is locked, with a
// refresh-free plan that does not wait for the lock: nil when it is free.
func (r *Runner) lockHolder(ctx context.Context) (*LockedError, error) {
	opts := []tfexec.PlanOption{tfexec.Refresh(false), tfexec.Lock(true), tfexec.LockTimeout("0s")}
	for _, v := range r.varOpts(r.at) {
		opts = append(opts, tfexec.Var(v))
	}
	err := r.read(func() error {
		_, err := r.tf.Plan(ctx, opts...)
		return err
	})
	if le, ok := asLocked(err); ok {
		return le, nil
	}
	return nil, err
}

// ownDeadLock says whether the lock le was left by one of this run's own
// commands (recs, from the journal of the run being resumed), and which:
// one the journal names as left (LockLeft with its ID), or one the journal
// shows started and never ended (drover itself died) whose holder and
// creation time are that command's. Anyone else's lock is not.
func ownDeadLock(le *LockedError, recs []LockRecord) (LockRecord, bool) {
	ended := map[string]bool{}
	for _, rec := range recs {
		if rec.Status == LockLeft && le.ID != "" && rec.LockID == le.ID {
			return rec, true
		}
		if rec.Status != LockStarted {
			ended[rec.Ref] = true
		}
	}
	created, err := time.Parse("2006-01-02 15:04:05.999999999 -0700 MST", le.Created)
	if err != nil || le.ID == "" {
		return LockRecord{}, false
	}
	for _, rec := range recs {
		if rec.Status != LockStarted || ended[rec.Ref] || rec.Who != le.Who {
			continue
		}
		// Terraform takes its lock within moments of starting.
		if !created.Before(rec.Started.Add(-2*time.Second)) && created.Before(rec.Started.Add(5*time.Minute)) {
			return rec, true
		}
	}
	return LockRecord{}, false
}
