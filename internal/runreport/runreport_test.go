package runreport

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/prox-ops/drover/internal/mdtext/mdtexttest"
	"github.com/prox-ops/drover/internal/rollout"
)

// TestHostileTextStaysText: what the report carries from the cluster
// (error messages, reasons) cannot break the table, the chart or the page.
func TestHostileTextStaysText(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	d := Doc{Report: rollout.Report{RunID: "r1", Strategy: "pets", Result: rollout.ResultHalted, From: "v1", To: "v2",
		Error: "pod <script>alert(1)</script> | broke\nthe table",
		Nodes: []rollout.NodeReport{{Name: "w-1", Role: "worker", Outcome: rollout.OutcomeRolledBack, Reason: "x</li><li>injected",
			Steps: []rollout.StepRecord{{Step: "drain", Started: t0, Finished: t0.Add(time.Minute), Status: rollout.StatusDone},
				{Step: "health", Started: t0.Add(time.Minute), Finished: t0.Add(2 * time.Minute), Status: rollout.StatusFailed}}}}},
		Trigger: &Trigger{Actor: "a|b<c>"}}
	var h bytes.Buffer
	if err := HTML(&h, d); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"<script>", "</li><li>injected"} {
		if strings.Contains(h.String(), bad) {
			t.Errorf("the HTML carries %q unescaped", bad)
		}
	}
	var m bytes.Buffer
	if err := Markdown(&m, d); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m.String(), "| Trigger | by a\\|b&lt;c&gt; |") || !strings.Contains(m.String(), "health :crit, t1, 2026-11-26T08:01:00, 2026-11-26T08:02:00") {
		t.Fatalf("markdown:\n%s", m.String())
	}
}

// hostileDoc is a report whose every value from the cluster is s.
func hostileDoc(s string) Doc {
	t0 := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	return Doc{Report: rollout.Report{RunID: s, Strategy: "cattle", Result: rollout.ResultHalted, From: s, To: s, Error: "gate failed: " + s,
		KnownBeforeRun: []string{s}, MissedTargets: []string{s},
		Nodes: []rollout.NodeReport{{Name: s, Role: "worker", Outcome: rollout.OutcomeRolledBack, Reason: s, FailedChecks: []string{s},
			Steps: []rollout.StepRecord{{Step: rollout.Step(s), Started: t0, Finished: t0.Add(time.Minute), Status: rollout.StatusDone},
				{Step: "health", Started: t0.Add(time.Minute), Finished: t0.Add(2 * time.Minute), Status: rollout.StatusFailed}}},
			{Name: s + "-skipped", Outcome: rollout.OutcomeSkipped}}},
		Trigger: &Trigger{Actor: s, Workflow: s}, Rationale: s, Source: s}
}

// TestACheckNameCannotAddAHeading: the case from the field, a custom
// check named to close the chart and announce success.
func TestACheckNameCannotAddAHeading(t *testing.T) {
	var m bytes.Buffer
	if err := Markdown(&m, hostileDoc("Ceph OK\r\r## ✅ All nodes upgraded\n```\n<b>x</b> `code` [a](http://x) | y")); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(m.String(), "\n") {
		if strings.Contains(line, "All nodes upgraded") && (strings.HasPrefix(line, "#") || strings.HasPrefix(line, "```")) {
			t.Errorf("a value started a line of its own: %q", line)
		}
	}
	if strings.Count(m.String(), "```") != 2 || strings.Contains(m.String(), "<b>") {
		t.Errorf("the value escaped:\n%s", m.String())
	}
}

// FuzzMarkdown: whatever the cluster calls its nodes, checks and errors,
// the report has the structure of a report with plain names.
func FuzzMarkdown(f *testing.F) {
	for _, s := range []string{"Ceph OK\r\r## ✅ All nodes upgraded", "a|b\\|c", "```\n# x", "<details>", "x:y#z;%%w", "\u2028## y", "\\", "- [x](javascript:alert(1))"} {
		f.Add(s)
	}
	var plain bytes.Buffer
	if err := Markdown(&plain, hostileDoc("plain")); err != nil {
		f.Fatal(err)
	}
	want := mdtexttest.Skeleton(plain.String())
	f.Fuzz(func(t *testing.T, s string) {
		if s == "" {
			return // optional lines are left out: another structure, rightly
		}
		var m bytes.Buffer
		if err := Markdown(&m, hostileDoc(s)); err != nil {
			t.Fatal(err)
		}
		if d := mdtexttest.Diff(want, mdtexttest.Skeleton(m.String())); d != "" {
			t.Fatalf("%q changed the report's structure: %s\n%s", s, d, m.String())
		}
	})
}
