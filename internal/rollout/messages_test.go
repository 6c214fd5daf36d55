package rollout

import (
	"errors"
	"testing"
)

// TestErrorMessages: what each error says is what the operator reads, in
// the console, the report and Discord: each form is pinned.
func TestErrorMessages(t *testing.T) {
	boom := errors.New("boom")
	failing := HealthResult{Checks: []CheckResult{{Name: "Pod Health"}, {Name: "DNS Resolution", Passed: true}}}
	passing := HealthResult{Checks: []CheckResult{{Name: "Pod Health", Passed: true}}}
	tests := []struct {
		err  error
		want string
	}{
		{&HaltError{Node: "w-1", Reason: "drain failed"}, "run halted at node w-1: drain failed"},
		{&HaltError{Phase: StepTemplates, Reason: "no templates"}, "run halted in the templates phase: no templates"},
		{&RollbackFailedError{Node: "w-1", Err: boom, Cause: "gate"}, "rollback of node w-1 failed, manual intervention required: boom (rolled back because: gate)"},
		{&RollbackFailedError{Phase: StepKubernetes, Err: boom, Cause: "x"}, "the kubernetes phase failed, manual intervention required: boom (x)"},
		{&BlockedError{Reason: "run lock", Err: boom}, "blocked before any change: run lock: boom"},
		{&BlockedError{Reason: "run lock"}, "blocked before any change: run lock"},
		{&HealthFailedError{Node: "w-1", Result: failing}, "health gate failed for node w-1: Pod Health"},
		{&HealthFailedError{Result: failing}, "health gate failed for the cluster: Pod Health"},
		{&HealthFailedError{Node: "w-1", Result: passing, Streak: 1, Want: 2}, "health gate for node w-1 timed out with 1 of 2 passing runs in a row"},
		{&HealthFailedError{Node: "w-1", Result: failing, Streak: 0, Want: 2}, "health gate failed for node w-1: Pod Health"},
		{&HealthFailedError{Node: "w-1", Result: passing, Want: 0}, "health gate failed for node w-1: "},
		{&InterruptedError{}, "interrupted between batches; resume with drover upgrade --resume"},
		{&InterruptedError{Cause: boom}, "stopped (boom) between batches; resume with drover upgrade --resume"},
		{&InterruptedError{Node: "w-1", Step: StepDrain, VMExists: true}, "interrupted during drain of node w-1: uncordoned on its current VM; resume with drover upgrade --resume"},
		{&InterruptedError{Node: "w-1", Step: StepCreate}, "interrupted during create of node w-1: its VM is destroyed and not yet created; --resume creates it; resume with drover upgrade --resume"},
	}
	for _, tc := range tests {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("%T: %q\nwant %q", tc.err, got, tc.want)
		}
	}
}

// TestHealthSummary pins the one-line verdict of a gate.
func TestHealthSummary(t *testing.T) {
	known := Finding{Key: "k", Text: "old", Node: "w-2"}
	tests := []struct {
		name string
		node string
		res  HealthResult
		want string
	}{
		{"all passed", "w-1", HealthResult{Checks: []CheckResult{{Name: "A", Passed: true}, {Name: "B", Passed: true}}}, "✅ Node w-1: 2/2 health checks passed"},
		{"one failed, one skipped", "w-1", HealthResult{Checks: []CheckResult{{Name: "A", Passed: true}, {Name: "B"}, {Name: "C", Skipped: true}}}, "❌ Node w-1: 1/2 health checks passed (failed: B), 1 skipped"},
		{"the cluster names the failed nodes", "", HealthResult{Checks: []CheckResult{{Name: "B", FailedNodes: []string{"w-3", "w-4"}}}}, "❌ Cluster: 0/1 health checks passed (failed: B on w-3, w-4)"},
		{"a failure with no node to name", "", HealthResult{Checks: []CheckResult{{Name: "B"}}}, "❌ Cluster: 0/1 health checks passed (failed: B)"},
		{"a node's summary does not", "w-3", HealthResult{Checks: []CheckResult{{Name: "B", FailedNodes: []string{"w-3"}}}}, "❌ Node w-3: 0/1 health checks passed (failed: B)"},
		{"known before the run", "", HealthResult{Checks: []CheckResult{{Name: "A", Passed: true, Known: []string{known.Text}}}}, "✅ Cluster: 1/1 health checks passed, 1 known before the run"},
	}
	for _, tc := range tests {
		if got := tc.res.Summary(tc.node); got != tc.want {
			t.Errorf("%s: %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

// TestReadResumeRunLevelEntries: a run's own entries say whether it
// finished and which Terraform commands it ran.
func TestReadResumeRunLevelEntries(t *testing.T) {
	h := &RunHeader{Cluster: "c", Strategy: "cattle", From: "a", To: "b"}
	st, err := ReadResume([]Entry{
		{RunID: "r", Step: StepRun, Status: StatusStarted, Header: h},
		{RunID: "r", Step: StepTerraform, Status: StatusStarted, Detail: "apply"},
		{RunID: "r", Step: StepRun, Status: StatusInterrupted},
	})
	if err != nil || st.Finished || len(st.Terraform) != 1 {
		t.Fatalf("unfinished run: %+v %v", st, err)
	}
	st, err = ReadResume([]Entry{
		{RunID: "r", Step: StepRun, Status: StatusStarted, Header: h},
		{RunID: "r", Step: StepRun, Status: StatusDone},
	})
	if err != nil || !st.Finished || len(st.Terraform) != 0 {
		t.Fatalf("finished run: %+v %v", st, err)
	}
}
