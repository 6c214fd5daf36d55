package cli

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/prox-ops/drover/internal/notify"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/run"
)

// console prints the engine's events as live progress, one line each, with
// the elapsed (in the lab: simulated) time. Safe for concurrent use.
type console struct {
	mu    sync.Mutex
	w     io.Writer
	now   func() time.Time
	start time.Time
	// github adds GitHub Actions annotations; groups only when nodes run
	// one at a time (log groups cannot interleave).
	github, groups bool
}

func newConsole(w io.Writer, now func() time.Time) *console {
	return &console{w: w, now: now, start: now()}
}

func (c *console) line(node, msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if node == "" {
		node = "-"
	}
	fmt.Fprintf(c.w, "[%s] %-14s %s\n", clockTime(c.now().Sub(c.start)), node, msg)
}

// labLog shows what the simulated infrastructure does.
func (c *console) labLog(node, msg string) { c.line(node, "  · "+msg) }

// Event implements rollout.Sink.
func (c *console) Event(e rollout.Event) {
	switch e.Kind {
	case rollout.EventRunStarted:
		c.line("", e.Message)
	case rollout.EventStep:
		if c.groups && e.Step == rollout.StepPreflight && e.Status == rollout.StatusStarted && e.Node != "" {
			c.mu.Lock()
			notify.Group(c.w, "drover: node "+e.Node)
			c.mu.Unlock()
		}
		switch e.Status {
		case rollout.StatusStarted:
			msg := string(e.Step)
			if e.Message != "" {
				msg += " " + e.Message
			}
			c.line(e.Node, msg)
		case rollout.StatusFailed:
			c.line(e.Node, fmt.Sprintf("%s FAILED: %s", e.Step, e.Message))
		}
	case rollout.EventRollback:
		c.line(e.Node, "ROLLBACK: "+e.Message)
	case rollout.EventNodeDone:
		n := e.NodeReport
		mark := "✓"
		if n.Outcome != rollout.OutcomeUpgraded {
			mark = "✗"
		}
		c.line(e.Node, fmt.Sprintf("%s %s in %s (%s -> %s)", mark, n.Outcome, human(n.Duration), n.From, n.To))
		c.mu.Lock()
		if c.github && n.Outcome != rollout.OutcomeUpgraded {
			notify.Error(c.w, "drover: node "+n.Name+" "+string(n.Outcome), n.Reason)
		}
		if c.groups {
			notify.EndGroup(c.w)
		}
		c.mu.Unlock()
	case rollout.EventLog:
		c.line(e.Node, e.Message)
	case rollout.EventRunFinished:
		c.line("", "run "+e.Message)
		if c.github && e.Report != nil && e.Report.Result != rollout.ResultSucceeded {
			c.mu.Lock()
			switch e.Report.Result {
			case rollout.ResultCanary, rollout.ResultHandedOff:
				// Nothing failed: the run stopped where it should.
				notify.Notice(c.w, "drover: run "+string(e.Report.Result), e.Report.Error)
			default:
				notify.Error(c.w, "drover: run "+string(e.Report.Result), e.Report.Error)
			}
			c.mu.Unlock()
		}
	}
}

// printSummary prints the per-node table and the run's result.
func printSummary(w io.Writer, out *run.Output) {
	r, stats := out.Report, out.LabStats
	fmt.Fprintln(w)
	t := newTable(w)
	fmt.Fprintln(t, "NODE\tROLE\tHOST\tFROM\tTO\tOUTCOME\tTO GATE (PLANNED)\tWITH SOAK")
	secs := func(s float64) string {
		if s <= 0 {
			return "-"
		}
		return human(time.Duration(s * float64(time.Second)))
	}
	for _, n := range r.Nodes {
		d := "-"
		if n.Duration > 0 {
			d = human(n.Duration)
		}
		changed := secs(n.ChangedSeconds)
		if n.PlannedSeconds > 0 {
			changed += " (" + secs(n.PlannedSeconds) + ")"
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Role, n.Host, n.From, n.To, n.Outcome, changed, d)
	}
	t.Flush()
	for _, n := range r.Nodes {
		if n.Reason == "" || n.Outcome == rollout.OutcomeSkipped {
			continue
		}
		fmt.Fprintf(w, "\n%s %s: %s\n", n.Name, n.Outcome, n.Reason)
		if len(n.FailedChecks) > 0 {
			fmt.Fprintf(w, "  failed checks: %s\n", strings.Join(n.FailedChecks, ", "))
		}
		if n.Health != nil {
			for _, c := range n.Health.Checks {
				for _, d := range c.Diagnostics {
					fmt.Fprintf(w, "  [%s] %s\n", c.Name, d)
				}
			}
		}
	}
	kind := ""
	if out.Simulated() {
		kind = " (simulated)"
	}
	fmt.Fprintf(w, "\nResult: %s in %s%s", r.Result, human(r.Duration), kind)
	if stats != nil {
		fmt.Fprintf(w, "; PDB violations: %d; most control-plane nodes down at once: %d", stats.PDBViolations, stats.MaxControlPlaneDown)
	}
	fmt.Fprintln(w)
}
