// Package runreport renders a finished run for people: the test-results
// report of the PRD's Story 1.9. Versions, strategy, trigger, each node's
// timeline and duration against the PRD's targets, health verdicts,
// rollbacks, the notifications sent, and a picture of the run: a Gantt
// chart of the nodes by step, in Mermaid for Markdown (GitHub renders it)
// and as an SVG in HTML.
package runreport

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/prox-ops/drover/internal/notify"
	"github.com/prox-ops/drover/internal/rollout"
)

// Trigger is who and what started the run.
type Trigger struct {
	Actor      string `json:"actor,omitempty"`
	Repository string `json:"repository,omitempty"`
	PR         string `json:"pullRequest,omitempty"`
	SHA        string `json:"commit,omitempty"`
	Workflow   string `json:"workflow,omitempty"`
	RunURL     string `json:"runUrl,omitempty"`
}

// Doc is what a report is made of: the run's report and what came with it.
type Doc struct {
	rollout.Report
	Trigger       *Trigger          `json:"trigger,omitempty"`
	Notifications []notify.Delivery `json:"notifications,omitempty"`
	Rationale     string            `json:"rationale,omitempty"`
	// Source says where the run was read from (a report file, a journal).
	Source string `json:"-"`
}

// bar is one step of one node on the chart.
type bar struct {
	node       string
	step       string
	start, end time.Time
	failed     bool
}

// bars are the steps with both ends, in node order, then time.
func bars(d Doc) []bar {
	var out []bar
	for _, n := range d.Nodes {
		for _, s := range n.Steps {
			if s.Started.IsZero() || s.Finished.Sub(s.Started) < time.Second {
				continue // too short to see
			}
			out = append(out, bar{node: n.Name, step: string(s.Step), start: s.Started, end: s.Finished, failed: s.Status == rollout.StatusFailed})
		}
	}
	return out
}

// window is the chart's time span.
func window(bs []bar) (time.Time, time.Time) {
	var from, to time.Time
	for _, b := range bs {
		if from.IsZero() || b.start.Before(from) {
			from = b.start
		}
		if b.end.After(to) {
			to = b.end
		}
	}
	return from, to
}

// targetNote says how a node's duration compares with the PRD's target.
func targetNote(n rollout.NodeReport) string {
	if n.TargetSeconds == 0 || n.Outcome != rollout.OutcomeUpgraded {
		return "-"
	}
	target := time.Duration(n.TargetSeconds * float64(time.Second))
	if n.MissedTarget {
		return "missed (≤ " + short(target) + ")"
	}
	return "met (≤ " + short(target) + ")"
}

// healthVerdict summarises a node's last health gate.
func healthVerdict(n rollout.NodeReport) string {
	if n.Health == nil || len(n.Health.Checks) == 0 {
		return "-"
	}
	passed, skipped, attempts := 0, 0, 0
	var failed []string
	for _, c := range n.Health.Checks {
		switch {
		case c.Skipped:
			skipped++
		case c.Passed:
			passed++
		default:
			failed = append(failed, c.Name)
		}
		attempts = max(attempts, c.Attempts)
	}
	v := fmt.Sprintf("%d/%d passed", passed, len(n.Health.Checks)-skipped)
	if len(failed) > 0 {
		v += ", failed: " + strings.Join(failed, ", ")
	}
	if attempts > 1 {
		v += fmt.Sprintf(" (%d attempts)", attempts)
	}
	return v
}

func short(d time.Duration) string {
	d = d.Round(time.Second)
	if d >= time.Minute && d%time.Minute == 0 {
		return fmt.Sprintf("%dm", int(d.Minutes()))
	}
	return d.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// rollbacks are the nodes rolled back (or whose rollback failed).
func rollbacks(d Doc) []rollout.NodeReport {
	var out []rollout.NodeReport
	for _, n := range d.Nodes {
		if n.Outcome == rollout.OutcomeRolledBack || d.Result == rollout.ResultRollbackFailed && n.Outcome == rollout.OutcomeFailed {
			out = append(out, n)
		}
	}
	return out
}

// notificationSummary counts the notifications by event.
func notificationSummary(d Doc) []string {
	type count struct{ sent, failed int }
	by := map[string]*count{}
	for _, n := range d.Notifications {
		c := by[n.Event]
		if c == nil {
			c = &count{}
			by[n.Event] = c
		}
		if n.Delivered {
			c.sent++
		} else {
			c.failed++
		}
	}
	var keys []string
	for k := range by {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		s := fmt.Sprintf("%s: %d delivered", k, by[k].sent)
		if by[k].failed > 0 {
			s += fmt.Sprintf(", %d not delivered", by[k].failed)
		}
		out = append(out, s)
	}
	return out
}
