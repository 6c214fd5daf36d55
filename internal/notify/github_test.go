package notify

import (
	"bytes"
	"strings"
	"testing"

	"github.com/prox-ops/drover/internal/mdtext/mdtexttest"
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

// TestWorkflowCommandsStayOneCommand: a title or a message from the
// cluster cannot end its command and issue another (::add-mask::, a
// forged ::error::) on the next line.
func TestWorkflowCommandsStayOneCommand(t *testing.T) {
	const title, msg = "node k8s-work-1, check: Ceph\r\n::error::forged", "gate failed\n::add-mask::x\r%0A"
	for _, tc := range []struct {
		name, cmd string
		emit      func(*bytes.Buffer)
		wantTitle string
	}{
		{"error", "error", func(b *bytes.Buffer) { Error(b, title, msg) }, title},
		{"notice", "notice", func(b *bytes.Buffer) { Notice(b, title, msg) }, title},
		{"group", "group", func(b *bytes.Buffer) { Group(b, msg) }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			tc.emit(&b)
			out := strings.TrimSuffix(b.String(), "\n")
			if strings.ContainsAny(out, "\r\n") {
				t.Fatalf("one command became several: %q", b.String())
			}
			// The runner reads ::CMD PROPS::DATA, splitting at the first "::"
			// after the command: the title must come back whole.
			head, data, ok := strings.Cut(strings.TrimPrefix(out, "::"), "::")
			if !ok || data == "" || unescape(data) != msg {
				t.Errorf("data %q of %q, want %q", unescape(data), out, msg)
			}
			cmd, props, _ := strings.Cut(head, " ")
			if cmd != tc.cmd || tc.wantTitle != "" && unescape(strings.TrimPrefix(props, "title=")) != tc.wantTitle {
				t.Errorf("command %q, properties %q in %q", cmd, props, out)
			}
		})
	}
}

// unescape is the runner's reading of an escaped command value.
func unescape(s string) string {
	return strings.NewReplacer("%0D", "\r", "%0A", "\n", "%3A", ":", "%2C", ",", "%25", "%").Replace(s)
}

func hostileReport(s string) *rollout.Report {
	return &rollout.Report{RunID: s, Result: rollout.ResultHalted, Strategy: "cattle", From: s, To: s, Error: "gate failed: " + s,
		Nodes:          []rollout.NodeReport{{Name: s, From: s, To: s, Outcome: rollout.OutcomeRolledBack}},
		KnownBeforeRun: []string{s}}
}

// FuzzStepSummary: whatever the cluster calls things, the step summary
// has the structure of one with plain names.
func FuzzStepSummary(f *testing.F) {
	for _, s := range []string{"Ceph OK\r\r## ✅ All nodes upgraded", "a|b", "</details><script>", "```", "\u2029# x"} {
		f.Add(s)
	}
	want := mdtexttest.Skeleton(StepSummary(hostileReport("plain")))
	f.Fuzz(func(t *testing.T, s string) {
		if s == "" {
			return // optional lines are left out: another structure, rightly
		}
		got := StepSummary(hostileReport(s))
		if d := mdtexttest.Diff(want, mdtexttest.Skeleton(got)); d != "" {
			t.Fatalf("%q changed the summary's structure: %s\n%s", s, d, got)
		}
	})
}
