package runreport

import (
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/version"
)

// FromJournal rebuilds a run's report from its journal entries (one run:
// rollout.LastRun): each node's steps with their times, its outcome, and
// the run's result. Health verdicts and notifications are only in the
// report file.
func FromJournal(entries []rollout.Entry) Doc {
	var d Doc
	if len(entries) == 0 {
		return d
	}
	nodes := map[string]*rollout.NodeReport{}
	var order []string
	open := map[[2]string]rollout.Entry{}
	for _, e := range entries {
		if e.Header != nil && d.RunID == "" {
			d.RunID, d.Strategy, d.From, d.To = e.RunID, e.Header.Strategy, e.Header.From, e.Header.To
			d.Started = e.Time
		}
		if e.Node == "" {
			if e.Step == rollout.StepRun && e.Status != rollout.StatusStarted {
				d.Finished, d.Result = e.Time, rollout.Result(e.Detail)
				if e.Status == rollout.StatusInterrupted && d.Result == "" {
					d.Result = rollout.ResultInterrupted
				}
			}
			continue
		}
		n := nodes[e.Node]
		if n == nil {
			n = &rollout.NodeReport{Name: e.Node, From: talosOf(d.From), To: talosOf(d.To), Outcome: rollout.OutcomeUntouched}
			nodes[e.Node] = n
			order = append(order, e.Node)
		}
		k := [2]string{e.Node, string(e.Step)}
		switch {
		case e.Step == rollout.StepDone && e.Status == rollout.StatusDone:
			n.Outcome = rollout.OutcomeUpgraded
		case e.Step == rollout.StepRollback && e.Status == rollout.StatusDone:
			n.Outcome = rollout.OutcomeRolledBack
		case e.Step == rollout.StepRollback && e.Status == rollout.StatusFailed:
			n.Outcome = rollout.OutcomeFailed
		case e.Status == rollout.StatusInterrupted && n.Outcome != rollout.OutcomeUpgraded:
			n.Outcome = rollout.OutcomeInterrupted
		case e.Status == rollout.StatusFailed && n.Outcome != rollout.OutcomeRolledBack:
			n.Outcome = rollout.OutcomeFailed
		}
		if e.Status == rollout.StatusStarted {
			open[k] = e
			if n.Outcome == rollout.OutcomeUntouched {
				// Touched, and nothing after says how it ended: a run that
				// stopped (a crash) left it mid-step.
				n.Outcome = rollout.OutcomeInterrupted
			}
			continue
		}
		if s, ok := open[k]; ok {
			n.Steps = append(n.Steps, rollout.StepRecord{Step: e.Step, Started: s.Time, Finished: e.Time, Status: e.Status, Detail: e.Detail})
			delete(open, k)
		}
	}
	for _, name := range order {
		d.Nodes = append(d.Nodes, settle(*nodes[name], d.Strategy))
	}
	if !d.Finished.IsZero() {
		d.Duration = d.Finished.Sub(d.Started)
	}
	if d.Result == "" {
		// No end entry: the run crashed, or it is still running.
		d.Result = rollout.ResultInterrupted
		d.Error = "the journal ends without the run's end: it crashed or was killed (or is still running); resume it with drover upgrade --resume"
	}
	return d
}

// talosOf is the Talos version of a "Talos vX, Kubernetes vY" pair, as
// the node rows of a report show it.
func talosOf(pair string) string {
	if p, err := version.ParsePair(pair); err == nil {
		return p.Talos.String()
	}
	return pair
}

// settle computes a node's duration and its time to the gate from its
// steps, and judges that time against the strategy's target, as the run's
// own report does (a worker's soak goes on after its gate).
func settle(n rollout.NodeReport, strategy string) rollout.NodeReport {
	if len(n.Steps) > 0 {
		n.Duration = n.Steps[len(n.Steps)-1].Finished.Sub(n.Steps[0].Started)
		n.DurationSeconds = n.Duration.Seconds()
	}
	changed := n.Duration
	for _, s := range n.Steps {
		if s.Step == rollout.StepHealth && s.Status == rollout.StatusDone {
			changed = s.Finished.Sub(n.Steps[0].Started)
		}
	}
	n.ChangedSeconds = changed.Seconds()
	if t := rollout.NodeTarget(strategy); t > 0 && n.Outcome == rollout.OutcomeUpgraded {
		n.TargetSeconds, n.MissedTarget = t.Seconds(), changed > t
	}
	return n
}
