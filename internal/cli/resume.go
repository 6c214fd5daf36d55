package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/prox-ops/drover/internal/journal"
	"github.com/prox-ops/drover/internal/lab"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/version"
)

// readResume reads --journal for --resume and checks it is this cluster's.
func (u *upgrade) readResume(ctx context.Context, p *prepared) (*rollout.ResumeState, error) {
	f := u.f
	if f.journalPath == "" && p.lab != nil {
		return nil, usage(errors.New("--resume needs --journal: the journal of the run to continue"))
	}
	if f.journalPath == "" {
		f.journalPath = "drover-journal.jsonl"
	}
	entries, err := u.journalEntries(ctx, p)
	if err != nil {
		return nil, err
	}
	st, err := rollout.ReadResume(rollout.LastRun(entries))
	if err != nil {
		return nil, usage(err)
	}
	// The journal is written masked: compare what it could hold.
	if want := u.s.Masker.Mask(p.cfg.Cluster.Name); st.Header.Cluster != want {
		return nil, usage(&rollout.JournalError{Why: fmt.Sprintf("the journal is for cluster %s, this configuration is %s", st.Header.Cluster, want)})
	}
	for _, n := range f.retryNodes {
		ns, ok := st.Nodes[n]
		if !ok || !ns.Halted {
			return nil, usage(fmt.Errorf("--retry-node %s: the journal has no halted node of that name", n))
		}
		delete(st.Nodes, n)
	}
	return st, nil
}

// configMapJournal is the --journal configmap[:[NS/]NAME] store, or nil
// when --journal names a file.
func (u *upgrade) configMapJournal() (*journal.ConfigMap, error) {
	kc, clk := u.client()
	ns, name, ok, err := journal.ParseConfigMapRef(u.f.journalPath, u.f.lock.lease(kc, clk, u.s).Namespace)
	switch {
	case !ok:
		return nil, nil
	case err != nil:
		return nil, usage(err)
	case kc == nil:
		return nil, usage(fmt.Errorf("--journal %s needs cluster access", u.f.journalPath))
	}
	return &journal.ConfigMap{Client: kc, Namespace: ns, Name: name, Mask: u.s.Masker.Mask}, nil
}

// journalEntries reads the journal of --journal (a file or a ConfigMap).
func (u *upgrade) journalEntries(ctx context.Context, p *prepared) ([]rollout.Entry, error) {
	u.p = p // the ConfigMap lives in the cluster prepare reached
	cm, err := u.configMapJournal()
	if err != nil {
		return nil, err
	}
	if cm != nil {
		entries, err := cm.Entries(ctx)
		if err != nil {
			return nil, usage(&rollout.JournalError{Why: err.Error()})
		}
		return entries, nil
	}
	fh, err := os.Open(u.f.journalPath)
	if err != nil {
		return nil, usage(fmt.Errorf("--resume: %w", err))
	}
	defer fh.Close()
	log, err := journal.Read(fh)
	if err != nil {
		return nil, usage(&rollout.JournalError{Why: err.Error()})
	}
	for _, w := range log.Warnings {
		fmt.Fprintf(u.s.Err, "drover: warning: %s\n", w)
	}
	return log.Entries, nil
}

// crashJournal saves the lab after every record (--lab-state) and crashes
// the process right after it records --lab-crash-at NODE:STEP.
func (u *upgrade) crashJournal(inner rollout.Journal) (rollout.Journal, error) {
	f, p := u.f, u.p
	cj := &labJournal{inner: inner, lab: p.lab, state: f.src.labState, crash: u.s.crash}
	if f.src.crashAt == "" {
		return cj, nil
	}
	node, step, ok := strings.Cut(f.src.crashAt, ":")
	if !ok || node == "" || step == "" {
		return nil, usage(fmt.Errorf("--lab-crash-at %q: want NODE:STEP, such as k8s-work-2:destroy", f.src.crashAt))
	}
	if _, ok := p.cfg.NodeByName(node); !ok {
		return nil, usage(fmt.Errorf("--lab-crash-at: no node %q in the inventory", node))
	}
	if step == "replace" { // the replacement as a whole: it starts with the destroy (or the in-place upgrade)
		step = string(rollout.StepDestroy)
		if p.plan.Strategy == version.Pets {
			step = string(rollout.StepUpgrade)
		}
	}
	if !rollout.IsNodeStep(rollout.Step(step)) {
		return nil, usage(fmt.Errorf("--lab-crash-at: unknown step %q; steps are %s", step, rollout.NodeSteps()))
	}
	cj.node, cj.step = node, rollout.Step(step)
	return cj, nil
}

// labJournal keeps the lab's state in step with the journal, and plays the
// rehearsed crash.
type labJournal struct {
	inner rollout.Journal
	lab   *lab.Lab
	state string
	node  string
	step  rollout.Step
	crash func()
}

func (j *labJournal) Record(ctx context.Context, e rollout.Entry) error {
	if err := j.inner.Record(ctx, e); err != nil {
		return err
	}
	if j.state != "" {
		if err := j.lab.SaveState(j.state); err != nil {
			return fmt.Errorf("save the lab state: %w", err)
		}
	}
	if j.node != "" && e.Node == j.node && e.Step == j.step && e.Status == rollout.StatusStarted {
		// The rehearsed crash: no cleanup, no lock release, nothing flushed.
		j.crash()
	}
	return nil
}
