package runreport

import (
	"bytes"
	"strings"
	"testing"
	"time"

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
	if !strings.Contains(m.String(), "| Trigger | by a\\|b<c> |") || !strings.Contains(m.String(), "health :crit, t1, 2026-11-26T08:01:00, 2026-11-26T08:02:00") {
		t.Fatalf("markdown:\n%s", m.String())
	}
}
