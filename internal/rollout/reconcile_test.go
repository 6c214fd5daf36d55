package rollout

import (
	"context"
	"testing"

	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/version"
)

// guardStub only has to be there: resumeAt asks whether a guard exists.
type guardStub struct{}

func (guardStub) BeforeNode(context.Context, plan.Node) (Snapshot, error) { return Snapshot{}, nil }
func (guardStub) BeforeDestroy(context.Context, plan.Node) error          { return nil }
func (guardStub) AfterNode(context.Context, plan.Node) error              { return nil }

// TestResumeAtTrustsTheClusterOverTheJournal pins down how a resumed node's
// starting step is chosen from what the cluster shows, for each strategy
// and role, and that a control-plane node with a destructive step ahead
// always gets its etcd guard again.
func TestResumeAtTrustsTheClusterOverTheJournal(t *testing.T) {
	old := version.Pair{Talos: version.MustParse("v1.11.3"), Kubernetes: version.MustParse("v1.34.1")}
	cattleTo := version.Pair{Talos: version.MustParse("v1.12.0"), Kubernetes: old.Kubernetes}
	petsTo := version.Pair{Talos: version.MustParse("v1.11.4"), Kubernetes: old.Kubernetes}
	yes, no := true, false
	at := func(v version.Pair) *version.Pair { return &v }
	tests := []struct {
		name     string
		strategy version.Strategy
		cp       bool
		seen     Sighting
		journal  Step
		want     Step
	}{
		{"cattle worker: VM gone, the journal says destroy is under way", version.Cattle, false, Sighting{VM: &no}, StepDestroy, StepCreate},
		{"cattle worker: VM gone although the journal says cordon", version.Cattle, false, Sighting{VM: &no}, StepCordon, StepCreate},
		{"cattle worker: back at the target, the journal says wait-ready", version.Cattle, false, Sighting{Exists: true, Ready: true, Versions: at(cattleTo), VM: &yes}, StepWaitReady, StepWaitReady},
		{"cattle worker: at the target and done", version.Cattle, false, Sighting{Exists: true, Ready: true, Versions: at(cattleTo), VM: &yes}, StepDone, StepDone},
		{"cattle worker: at the target, the journal says create", version.Cattle, false, Sighting{Exists: true, Ready: false, Versions: at(cattleTo), VM: &yes}, StepCreate, StepWaitReady},
		{"cattle worker: still old although the journal says create", version.Cattle, false, Sighting{Exists: true, Ready: true, Versions: at(old), VM: &yes}, StepCreate, StepCordon},
		{"cattle worker: the journal says done but it runs the old version", version.Cattle, false, Sighting{Exists: true, Ready: true, Versions: at(old), VM: &yes}, StepDone, StepCordon},
		{"cattle worker: untouched", version.Cattle, false, Sighting{Exists: true, Ready: true, Versions: at(old), VM: &yes}, StepPreflight, StepPreflight},
		{"cattle worker: created, kubelet not registered", version.Cattle, false, Sighting{VM: &yes}, StepCreate, StepWaitReady},
		{"cattle worker: nothing observable, the journal decides", version.Cattle, false, Sighting{}, StepDrain, StepDrain},
		{"cattle control plane: crashed in its etcd guard", version.Cattle, true, Sighting{Exists: true, Ready: true, Versions: at(old), VM: &yes, Member: &yes}, StepEtcdGuard, StepEtcdGuard},
		{"cattle control plane: crashed in its drain: the guard again", version.Cattle, true, Sighting{Exists: true, Ready: true, Cordoned: true, Versions: at(old), VM: &yes, Member: &yes}, StepCordon, StepEtcdGuard},
		{"cattle control plane: left etcd, VM still there: the guard again", version.Cattle, true, Sighting{Exists: true, Ready: true, Cordoned: true, Versions: at(old), VM: &yes, Member: &no}, StepDestroy, StepEtcdGuard},
		{"cattle control plane: VM gone: create", version.Cattle, true, Sighting{VM: &no, Member: &no}, StepDestroy, StepCreate},
		{"cattle control plane: back at the target", version.Cattle, true, Sighting{Exists: true, Ready: true, Versions: at(cattleTo), VM: &yes, Member: &yes}, StepHealth, StepWaitReady},
		{"pets worker: at the target", version.Pets, false, Sighting{Exists: true, Ready: true, Versions: at(petsTo)}, StepUpgrade, StepWaitReady},
		{"pets worker: rebooting, still reporting the old version", version.Pets, false, Sighting{Exists: true, Ready: false, Versions: at(old)}, StepUpgrade, StepWaitReady},
		{"pets worker: upgrade never happened", version.Pets, false, Sighting{Exists: true, Ready: true, Versions: at(old)}, StepUpgrade, StepCordon},
		{"pets worker: not Ready before its upgrade started: the journal decides", version.Pets, false, Sighting{Exists: true, Ready: false, Versions: at(old)}, StepDrain, StepCordon},
		{"pets worker: not Ready after its wait began", version.Pets, false, Sighting{Exists: true, Ready: false, Versions: at(old)}, StepWaitReady, StepWaitReady},
		{"pets worker: not Ready, but done: start again", version.Pets, false, Sighting{Exists: true, Ready: false, Versions: at(old)}, StepDone, StepCordon},
		{"cattle worker: old, the journal says cordon", version.Cattle, false, Sighting{Exists: true, Ready: true, Versions: at(old), VM: &yes}, StepCordon, StepCordon},
		{"cattle worker: old, the journal says drain", version.Cattle, false, Sighting{Exists: true, Ready: true, Versions: at(old), VM: &yes}, StepDrain, StepCordon},
		{"cattle worker: VM there, no Node, the journal says destroy", version.Cattle, false, Sighting{VM: &yes}, StepDestroy, StepDestroy},
		{"pets control plane: upgrade never happened: the guard again", version.Pets, true, Sighting{Exists: true, Ready: true, Versions: at(old), Member: &yes}, StepUpgrade, StepEtcdGuard},
		{"pets control plane: nothing observable, the journal says drain: the guard again", version.Pets, true, Sighting{}, StepDrain, StepEtcdGuard},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := plan.Node{Node: config.Node{Name: "n", Role: config.RoleWorker}, From: old}
			if tc.cp {
				n.Role = config.RoleControlPlane
			}
			to := cattleTo
			if tc.strategy == version.Pets {
				to = petsTo
			}
			p := plan.Plan{Strategy: tc.strategy, From: old, To: to}
			e := &Engine{Guard: guardStub{}}
			r := &nodeRun{n: n, target: nodeTarget(p, n)}
			if got := e.resumeAt(p, r, tc.seen, tc.journal); got != tc.want {
				t.Fatalf("resume at %s, want %s (seen: %s; journal: %s)", got, tc.want, tc.seen, tc.journal)
			}
		})
	}
}

// TestReadResumeTable: the journal's own resume point for each step and
// status (the hint reconcile starts from).
func TestReadResumeTable(t *testing.T) {
	tests := []struct {
		step   Step
		status Status
		want   NodeState
	}{
		{StepPreflight, StatusStarted, NodeState{ResumeAt: StepPreflight}},
		{StepPreflight, StatusFailed, NodeState{Halted: true, Reason: "preflight failed: x"}},
		{StepEtcdGuard, StatusStarted, NodeState{ResumeAt: StepEtcdGuard}},
		{StepEtcdGuard, StatusFailed, NodeState{Halted: true, Reason: "etcd-guard failed: x"}},
		{StepCordon, StatusDone, NodeState{ResumeAt: StepDrain}},
		{StepDrain, StatusStarted, NodeState{ResumeAt: StepCordon}},
		{StepDrain, StatusInterrupted, NodeState{ResumeAt: StepCordon}},
		{StepDrain, StatusFailed, NodeState{Halted: true, Reason: "drain failed: x"}},
		{StepDestroy, StatusStarted, NodeState{ResumeAt: StepDestroy}},
		{StepDestroy, StatusDone, NodeState{ResumeAt: StepCreate}},
		{StepDestroy, StatusInterrupted, NodeState{ResumeAt: StepCreate}},
		{StepCreate, StatusStarted, NodeState{ResumeAt: StepCreate}},
		{StepCreate, StatusDone, NodeState{ResumeAt: StepUpgrade}},
		{StepUpgrade, StatusStarted, NodeState{ResumeAt: StepUpgrade}},
		{StepWaitReady, StatusStarted, NodeState{ResumeAt: StepWaitReady}},
		{StepHealth, StatusInterrupted, NodeState{ResumeAt: StepWaitReady}},
		{StepSoak, StatusStarted, NodeState{ResumeAt: StepWaitReady}},
		{StepRollback, StatusStarted, NodeState{Halted: true, Reason: "rolled back (started)"}},
		{StepRollback, StatusDone, NodeState{Halted: true, Reason: "rolled back (done)"}},
		{StepDone, StatusDone, NodeState{Done: true}},
	}
	h := &RunHeader{Cluster: "c", Strategy: "cattle", From: "a", To: "b"}
	for _, tc := range tests {
		t.Run(string(tc.step)+" "+string(tc.status), func(t *testing.T) {
			st, err := ReadResume([]Entry{
				{RunID: "r", Step: StepRun, Status: StatusStarted, Header: h},
				{RunID: "r", Node: "n", Step: tc.step, Status: tc.status, Detail: "x"},
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := *st.Nodes["n"]; got != tc.want {
				t.Fatalf("state %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestNextStep(t *testing.T) {
	for _, tc := range []struct{ s, want Step }{
		{StepPreflight, StepEtcdGuard}, {StepHealth, StepSoak}, {StepSoak, StepDone}, {StepDone, StepDone}, {Step("nonsense"), StepDone},
	} {
		if got := next(tc.s); got != tc.want {
			t.Errorf("next(%s) = %s, want %s", tc.s, got, tc.want)
		}
	}
}

// TestInFlight: only nodes caught mid-step are in flight, not the done,
// the halted or the untouched.
func TestInFlight(t *testing.T) {
	st := &ResumeState{Nodes: map[string]*NodeState{
		"done": {Done: true}, "halted": {Halted: true, ResumeAt: StepCordon}, "untouched": {},
		"mid-drain": {ResumeAt: StepCordon}, "mid-create": {ResumeAt: StepCreate},
	}}
	if got := st.InFlight(); len(got) != 2 || got[0] != "mid-create" || got[1] != "mid-drain" {
		t.Fatalf("in flight: %v", got)
	}
}
