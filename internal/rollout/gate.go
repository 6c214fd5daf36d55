package rollout

import (
	"context"
	"fmt"
	"time"

	"github.com/prox-ops/drover/internal/clock"
)

// Gate judges health the way the engine does between nodes: it runs the
// checks until Passes runs in a row pass, Interval apart. Any failing run
// resets the count; Attempts failing runs, or Timeout, fail the gate. kops
// validates a cluster the same way: one lucky poll is never enough.
type Gate struct {
	Checks HealthGate
	Clock  clock.Clock
	// Timeout bounds the whole gate; Interval separates its runs.
	Timeout  time.Duration
	Interval time.Duration
	// Attempts is how many failing runs fail the gate (default 1).
	Attempts int
	// Passes is how many passing runs in a row pass it (default 1).
	Passes int
	// Log, when set, is told of each failing run that will be retried.
	Log func(msg string)
}

// GateFrom is the gate of a policy.
func GateFrom(p Policy, checks HealthGate, c clock.Clock) Gate {
	return Gate{Checks: checks, Clock: c, Timeout: p.HealthTimeout, Interval: p.HealthInterval, Attempts: p.HealthAttempts, Passes: p.HealthPasses}
}

// Run runs the gate. The result is the last run's, each check's Attempts
// the number of times it ran. A failed gate is a *HealthFailedError.
func (g Gate) Run(ctx context.Context, in GateInput) (HealthResult, error) {
	if in.Memory == nil {
		in.Memory = NewMemory()
	}
	deadline := g.Clock.Now().Add(g.Timeout)
	attempts, passes := max(1, g.Attempts), max(1, g.Passes)
	var res HealthResult
	ran, failed, streak := 0, 0, 0
	for {
		res = g.Checks.Check(ctx, in)
		ran++
		for i := range res.Checks {
			res.Checks[i].Attempts = ran
		}
		if res.Passed() {
			streak++
			if streak >= passes {
				return res, nil
			}
		} else {
			failed++
			streak = 0
			if failed >= attempts {
				return res, &HealthFailedError{Node: in.Node.Name, Result: res}
			}
		}
		if !g.Clock.Now().Add(g.Interval).Before(deadline) {
			if res.Passed() {
				// Out of time before enough passes in a row.
				return res, &HealthFailedError{Node: in.Node.Name, Result: res, Streak: streak, Want: passes}
			}
			return res, &HealthFailedError{Node: in.Node.Name, Result: res}
		}
		if g.Log != nil {
			if res.Passed() {
				g.Log(fmt.Sprintf("run %d passed (%d/%d in a row), next in %s", ran, streak, passes, g.Interval))
			} else {
				g.Log(fmt.Sprintf("run %d failed (%v; %d/%d failures), next in %s", ran, res.Failed(), failed, attempts, g.Interval))
			}
		}
		if err := g.Clock.Sleep(ctx, g.Interval); err != nil {
			return res, err
		}
	}
}
