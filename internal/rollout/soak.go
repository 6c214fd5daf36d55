package rollout

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/plan"
)

// errSoakCut ends the soaks still going when the run halts for another
// node; errSoakHandedOver those going when the run hands off.
var (
	errSoakCut        = errors.New("the run halted")
	errSoakHandedOver = errors.New("the run handed off")
)

// soak is a worker soaking in the background: its gate keeps running on it
// every HealthInterval for the soak while the run goes on with the next
// batch. The node is done only when its soak passed.
type soak struct {
	r       *nodeRun
	started time.Time
	d       time.Duration
	stop    context.CancelCauseFunc
	ctx     context.Context
	wait    func()
	// Set when the soak is over (under Engine.mu).
	over bool
	err  error
	res  HealthResult
}

// startSoak sets a worker soaking in the background.
func (e *Engine) startSoak(ctx context.Context, r *nodeRun, in GateInput, d time.Duration) {
	n := r.n
	detail := d.String() + " in the background"
	if err := e.record(ctx, n.Name, StepSoak, StatusStarted, detail); err != nil {
		r.cause = err
		return
	}
	e.emit(Event{Kind: EventStep, Node: n.Name, Step: StepSoak, Status: StatusStarted, Message: detail})
	sctx, stop := context.WithCancelCause(ctx)
	s := &soak{r: r, started: e.Clock.Now(), d: d, stop: stop, ctx: sctx}
	r.soak = s
	in.NodeOnly = true
	s.wait = clock.Go(e.Clock, func() {
		res, err := e.soak(sctx, in, d)
		if sctx.Err() == nil {
			// Passed or failed: said as it happens; the run settles it
			// between batches.
			_ = e.ended(ctx, n.Name, StepSoak, detail, s.started, err)
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		s.over, s.err, s.res = true, err, res
		r.endedAt = e.Clock.Now()
	})
	e.mu.Lock()
	e.soaks = append(e.soaks, s)
	e.mu.Unlock()
}

// soaking are the soaks started and not yet reaped, oldest first.
func (e *Engine) soaking() []*soak {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*soak(nil), e.soaks...)
}

// reapSoaks settles the soaks that are over: a passed soak finishes its
// node; a failed one is rolled back (drained first), after the other
// soaks are cut short, and halts the run. It waits, oldest first, until at
// most limit soaks go on (limit < 0: no limit; 0: wait for every soak).
func (e *Engine) reapSoaks(ctx context.Context, p plan.Plan, limit int) error {
	for {
		var over, active []*soak
		e.mu.Lock()
		for _, s := range e.soaks {
			if s.over {
				over = append(over, s)
			} else {
				active = append(active, s)
			}
		}
		e.mu.Unlock()
		for _, s := range over {
			if err := e.settleSoak(ctx, p, s); err != nil {
				return e.haltSoaks(ctx, p, err)
			}
		}
		if len(active) == 0 || limit < 0 || len(active) <= limit {
			return nil
		}
		active[0].wait()
	}
}

// settleSoak journals how a soak ended and finishes its node; a failed
// soak's node is rolled back, and its error returned.
func (e *Engine) settleSoak(ctx context.Context, p plan.Plan, s *soak) error {
	e.mu.Lock()
	for i, o := range e.soaks {
		if o == s {
			e.soaks = append(e.soaks[:i], e.soaks[i+1:]...)
			break
		}
	}
	e.mu.Unlock()
	r := s.r
	n := r.n
	switch {
	case s.err == nil:
	case errors.Is(context.Cause(s.ctx), errSoakHandedOver):
		// The continuation finds the soak unfinished in the journal and
		// watches the node again (its gate, then its soak).
		_ = e.record(context.WithoutCancel(ctx), n.Name, StepSoak, StatusInterrupted, "handed over after "+formatDuration(e.Clock.Now().Sub(s.started))+": the continuation watches it again")
		r.quiet = true
		e.stop(r, OutcomeInterrupted, "its soak continues after the hand-off", nil)
	case errors.Is(context.Cause(s.ctx), errSoakCut):
		_ = e.record(context.WithoutCancel(ctx), n.Name, StepSoak, StatusInterrupted, "cut short after "+formatDuration(e.Clock.Now().Sub(s.started))+": the run halted at another node")
		e.mu.Lock()
		r.nr.Notes = append(r.nr.Notes, "its soak was cut short: the run halted at another node")
		e.mu.Unlock()
	case ctx.Err() != nil:
		e.interrupt(ctx, r, StepSoak, true)
	default:
		e.setHealth(r.nr, s.res)
		r.cause = s.err
		e.emit(Event{Kind: EventLog, Node: n.Name, Step: StepSoak, Message: "degraded during its soak: " + s.err.Error()})
		e.rollback(ctx, p, r)
	}
	e.done(ctx, p, r)
	return r.end
}

// haltSoaks cuts the soaks still going short (the run halts), settles
// them, and returns the worst of err and theirs.
func (e *Engine) haltSoaks(ctx context.Context, p plan.Plan, err error) error {
	rs := []*nodeRun{{end: err, ended: true}}
	for _, s := range e.soaking() {
		s.stop(errSoakCut)
		s.wait()
		_ = e.settleSoak(ctx, p, s)
		rs = append(rs, s.r)
	}
	return worst(rs)
}

// handOverSoaks ends the soaks going on at a hand-off: the continuation
// resumes them from the journal.
func (e *Engine) handOverSoaks(ctx context.Context, p plan.Plan) error {
	if err := e.reapSoaks(ctx, p, -1); err != nil {
		return err
	}
	for _, s := range e.soaking() {
		s.stop(errSoakHandedOver)
		s.wait()
		if s.err == nil {
			_ = e.settleSoak(ctx, p, s) // passed just now
			continue
		}
		_ = e.settleSoak(ctx, p, s)
	}
	return nil
}

// lastLook runs the gate over the whole cluster before the run says it
// succeeded: a pod on an upgraded node that began failing after its node's
// own gate (and outside its soak's view) is caught here.
func (e *Engine) lastLook(ctx context.Context, p plan.Plan) error {
	var res HealthResult
	err := e.step(ctx, "", StepHealth, "the whole cluster, before the run is done", func() (err error) {
		res, err = e.gate(ctx, GateInput{Exclude: p.InFlight})
		return err
	})
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		_ = e.record(ctx, "", StepRun, StatusInterrupted, "during the last look over the cluster")
		return Stopped(ctx)
	}
	nodes := res.FailedNodes()
	who := ""
	if len(nodes) > 0 {
		who = " (on " + strings.Join(nodes, ", ") + ")"
	}
	return &HaltError{Phase: StepHealth, Reason: fmt.Sprintf("the last look over the whole cluster failed%s: %s; every node is upgraded, look before you resume", who, res.Summary("")), Err: err}
}
