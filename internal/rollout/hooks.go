package rollout

import (
	"context"
	"errors"
	"fmt"

	"github.com/prox-ops/drover/internal/plan"
)

// HookPoint is where in a run a hook runs.
type HookPoint string

// The hook points (hooks.beforeRun, beforeNode, afterNode, afterRun).
const (
	HookBeforeRun  HookPoint = "beforeRun"
	HookBeforeNode HookPoint = "beforeNode"
	HookAfterNode  HookPoint = "afterNode"
	HookAfterRun   HookPoint = "afterRun"
)

// HookCall is one run of one hook: where, for which node ("" for the run's
// hooks), and what it is told.
type HookCall struct {
	Point HookPoint
	Node  string
	// Env is what the hook is told, as environment (DROVER_NODE,
	// DROVER_RUN_ID, the versions, DROVER_RESULT for afterRun).
	Env map[string]string
}

// HookRunner runs the operator's hooks (Kubernetes Jobs). One call of a
// run, point and node is one hook run: called again (a resumed run) it
// waits for the one that runs, and does not repeat one that succeeded.
type HookRunner interface {
	// Has says whether a hook is configured at the point.
	Has(p HookPoint) bool
	RunHook(ctx context.Context, c HookCall) error
}

// HookError is a hook that failed or did not finish in its timeout.
type HookError struct {
	Point HookPoint
	Node  string
	Err   error
}

func (e *HookError) Error() string {
	if e.Node == "" {
		return fmt.Sprintf("hook %s failed: %v", e.Point, e.Err)
	}
	return fmt.Sprintf("hook %s of %s failed: %v", e.Point, e.Node, e.Err)
}

func (e *HookError) Unwrap() error { return e.Err }

// HookReport is one hook run, for the report.
type HookReport struct {
	Point           HookPoint `json:"point"`
	Node            string    `json:"node,omitempty"`
	Status          Status    `json:"status"`
	DurationSeconds float64   `json:"durationSeconds"`
	Detail          string    `json:"detail,omitempty"`
}

// Silencer holds Alertmanager silences for the nodes under change, so a
// planned change pages nobody. A silence hides pages, never a failure:
// the gate still judges the alerts it suppresses.
type Silencer interface {
	// Silence silences the node's alerts, or finds the silence this run
	// already holds for it (a resumed run); it returns the silence's ID.
	Silence(ctx context.Context, node string) (string, error)
	// Expire ends the node's silence, if it has one, and says whether it had.
	Expire(ctx context.Context, node string) (bool, error)
	// ExpireAll ends every silence of the run.
	ExpireAll(ctx context.Context) error
}

// hookEnv is what every hook is told about the run.
func (e *Engine) hookEnv(p plan.Plan, node string) map[string]string {
	env := map[string]string{
		"DROVER_RUN_ID":          e.RunID,
		"DROVER_STRATEGY":        string(p.Strategy),
		"DROVER_FROM_TALOS":      p.From.Talos.String(),
		"DROVER_TO_TALOS":        p.To.Talos.String(),
		"DROVER_FROM_KUBERNETES": p.From.Kubernetes.String(),
		"DROVER_TO_KUBERNETES":   p.To.Kubernetes.String(),
	}
	if node != "" {
		env["DROVER_NODE"] = node
	}
	return env
}

// hookDone says the journal being resumed shows the hook succeeded: it
// is not run again.
func (e *Engine) hookDone(point HookPoint, node string) bool {
	return e.Resume != nil && e.Resume.HooksDone[HookKey(point, node)]
}

// HookKey names one hook run: its point and node ("" for the run's hooks).
func HookKey(point HookPoint, node string) string { return string(point) + "/" + node }

// hook runs the hook at point for node (if one is configured and it did
// not run before a resume), journaled as a step and reported.
func (e *Engine) hook(ctx context.Context, p plan.Plan, point HookPoint, node string, extra map[string]string) error {
	if e.Hooks == nil || !e.Hooks.Has(point) {
		return nil
	}
	if e.hookDone(point, node) {
		e.emit(Event{Kind: EventLog, Node: node, Step: StepHook, Message: "hook " + string(point) + " succeeded before the resume: not run again"})
		return nil
	}
	env := e.hookEnv(p, node)
	for k, v := range extra {
		env[k] = v
	}
	started := e.Clock.Now()
	err := e.step(ctx, node, StepHook, string(point), func() error {
		return e.Hooks.RunHook(ctx, HookCall{Point: point, Node: node, Env: env})
	})
	hr := HookReport{Point: point, Node: node, Status: StatusDone, DurationSeconds: e.Clock.Now().Sub(started).Seconds()}
	if err != nil {
		hr.Status, hr.Detail = StatusFailed, err.Error()
		var he *HookError
		if !errors.As(err, &he) {
			err = &HookError{Point: point, Node: node, Err: err}
		}
	}
	e.mu.Lock()
	e.report.Hooks = append(e.report.Hooks, hr)
	e.mu.Unlock()
	return err
}

// afterRun runs the afterRun hook when the run ends (succeeded, halted,
// blocked or a failed rollback), whatever its result; a run that stops to
// be continued (a stop, a hand-off, a pause) runs it when it ends. Its
// failure is reported and logged; it does not change the run's result.
func (e *Engine) afterRun(ctx context.Context, p plan.Plan, runErr error) {
	if e.Hooks == nil || !e.Hooks.Has(HookAfterRun) || p.Empty() {
		return
	}
	switch ResultOf(runErr) {
	case ResultSucceeded, ResultHalted, ResultBlocked, ResultRollbackFailed:
	default:
		e.emit(Event{Kind: EventLog, Step: StepHook, Message: "hook afterRun not run: the run is not over (it runs when the resumed run ends)"})
		return
	}
	// It runs after a stop too: the run's own context may be cancelled.
	actx := context.WithoutCancel(ctx)
	if err := e.hook(actx, p, HookAfterRun, "", map[string]string{"DROVER_RESULT": string(ResultOf(runErr))}); err != nil {
		e.emit(Event{Kind: EventLog, Step: StepHook, Message: err.Error() + " (reported; the run's result stands)"})
	}
}

// silence silences the node's alerts before its cordon. A silence that
// cannot be made does not hold the run: it only saves people a page.
func (e *Engine) silence(ctx context.Context, node string) {
	if e.Silences == nil {
		return
	}
	id, err := e.Silences.Silence(context.WithoutCancel(ctx), node)
	if err != nil {
		e.emit(Event{Kind: EventLog, Node: node, Step: StepCordon, Message: "could not silence its alerts (" + err.Error() + "): the change goes on, alerts may page"})
		return
	}
	e.emit(Event{Kind: EventLog, Node: node, Step: StepCordon, Message: "its alerts are silenced in Alertmanager (silence " + id + ") until it passed its gate or was rolled back"})
}

// unsilence ends the node's silence once it passed its gate or was rolled
// back.
func (e *Engine) unsilence(ctx context.Context, node string) {
	if e.Silences == nil {
		return
	}
	had, err := e.Silences.Expire(context.WithoutCancel(ctx), node)
	if err != nil {
		e.emit(Event{Kind: EventLog, Node: node, Message: "could not expire its silence (" + err.Error() + "); it ends by itself"})
		return
	}
	if had {
		e.emit(Event{Kind: EventLog, Node: node, Message: "its silence expired"})
	}
}

// unsilenceAll ends every silence of the run when it ends or stops.
func (e *Engine) unsilenceAll(ctx context.Context) {
	if e.Silences == nil {
		return
	}
	if err := e.Silences.ExpireAll(context.WithoutCancel(ctx)); err != nil {
		e.emit(Event{Kind: EventLog, Message: "could not expire the run's silences (" + err.Error() + "); they end by themselves"})
	}
}
