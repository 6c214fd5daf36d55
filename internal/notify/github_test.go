package notify

import (
	"strings"
	"testing"

	"github.com/prox-ops/drover/internal/rollout"
)

func TestStepSummaryListsWhatWasKnownBeforeTheRun(t *testing.T) {
	r := &rollout.Report{RunID: "r1", Result: rollout.ResultSucceeded, Strategy: "cattle", From: "Talos v1.11.3", To: "Talos v1.12.0",
		Nodes:          []rollout.NodeReport{{Name: "k8s-work-1", From: "v1.11.3", To: "v1.12.0", Outcome: rollout.OutcomeUpgraded}},
		KnownBeforeRun: []string{"Pod Health: pod apps/backlog Pending for 4m", "Storage Health: CephCluster rook-ceph/rook-ceph is HEALTH_WARN"}}
	s := StepSummary(r)
	for _, want := range []string{"## ✅ drover cattle upgrade: succeeded", "| k8s-work-1 | cattle | v1.11.3 → v1.12.0 | - | upgraded |",
		"<summary>Known before the run", "- Pod Health: pod apps/backlog Pending for 4m", "- Storage Health: CephCluster"} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
	if s := StepSummary(&rollout.Report{Result: rollout.ResultSucceeded}); strings.Contains(s, "Known before") {
		t.Errorf("an empty baseline is listed:\n%s", s)
	}
}
