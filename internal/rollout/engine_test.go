package rollout_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/journal"
	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/version"
)

// recorder is a stub cluster, replacer and upgrader in one: it records the
// calls the engine makes, in order, and fails the ones it is told to.
type recorder struct {
	mu    sync.Mutex
	calls []string
	fail  map[string]error // "op node" -> error
	uids  map[string]int
	clk   clock.Clock
	// runs are the replacer's calls, one per Terraform run: "destroy a,b".
	runs []string
}

func newRecorder(clk clock.Clock) *recorder {
	return &recorder{fail: map[string]error{}, uids: map[string]int{}, clk: clk}
}

func (r *recorder) do(op, node string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, op+" "+node)
	return r.fail[op+" "+node]
}

func (r *recorder) Identity(_ context.Context, node string) (rollout.Identity, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return rollout.Identity{UID: fmt.Sprintf("%s-%d", node, r.uids[node]), Ready: true}, nil
}
func (r *recorder) Cordon(_ context.Context, n string) error   { return r.do("cordon", n) }
func (r *recorder) Uncordon(_ context.Context, n string) error { return r.do("uncordon", n) }
func (r *recorder) Drain(ctx context.Context, n string, _ time.Duration, _ func(string)) error {
	_ = r.clk.Sleep(ctx, time.Minute)
	return r.do("drain", n)
}
func (r *recorder) DeleteNode(_ context.Context, n string) error { return r.do("delete-node", n) }
func (r *recorder) WaitReady(_ context.Context, n string, want rollout.ReadyWant, _ time.Duration) (rollout.Identity, error) {
	return rollout.Identity{}, r.do("wait-ready@"+want.Talos.String(), n)
}
func (r *recorder) EnsureTemplates(_ context.Context, to version.Pair) error {
	return r.do("templates", to.Talos.String())
}
func (r *recorder) Destroy(ctx context.Context, ns []plan.Node) error {
	_ = r.clk.Sleep(ctx, 20*time.Second)
	r.run("destroy", ns)
	errs := rollout.NodeErrors{}
	for _, n := range ns {
		if err := r.do("destroy", n.Name); err != nil {
			errs[n.Name] = err
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}
func (r *recorder) Create(ctx context.Context, ns []plan.Node, at version.Pair) error {
	_ = r.clk.Sleep(ctx, 3*time.Minute)
	r.run("create@"+at.Talos.String(), ns)
	errs := rollout.NodeErrors{}
	for _, n := range ns {
		r.mu.Lock()
		r.uids[n.Name]++
		r.mu.Unlock()
		if err := r.do("create@"+at.Talos.String(), n.Name); err != nil {
			errs[n.Name] = err
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}
func (r *recorder) run(op string, ns []plan.Node) {
	names := make([]string, len(ns))
	for i, n := range ns {
		names[i] = n.Name
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runs = append(r.runs, op+" "+strings.Join(names, ","))
}
func (r *recorder) Upgrade(_ context.Context, n plan.Node, to version.Pair) error {
	return r.do("upgrade@"+to.Talos.String(), n.Name)
}

func (r *recorder) callsFor(node string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, c := range r.calls {
		if strings.HasSuffix(c, " "+node) {
			out = append(out, strings.TrimSuffix(c, " "+node))
		}
	}
	return strings.Join(out, ", ")
}

// gate is a stub health gate: fn decides per call.
type gate struct {
	mu    sync.Mutex
	calls map[string]int
	fn    func(node string, call int) bool
}

func (g *gate) Check(_ context.Context, in rollout.GateInput) rollout.HealthResult {
	g.mu.Lock()
	if g.calls == nil {
		g.calls = map[string]int{}
	}
	g.calls[in.Node.Name]++
	call := g.calls[in.Node.Name]
	g.mu.Unlock()
	ok := g.fn(in.Node.Name, call)
	res := rollout.CheckResult{Name: "Stub", Passed: ok}
	if !ok {
		res.Diagnostics = []string{"stub says no"}
	}
	return rollout.HealthResult{Checks: []rollout.CheckResult{res}}
}

var (
	alwaysPass = func(string, int) bool { return true }
	alwaysFail = func(string, int) bool { return false }
)

func testPlan(strategy version.Strategy, parallel int) plan.Plan {
	nodes := []config.Node{
		{Name: "cp-1", Role: config.RoleControlPlane, ProxmoxHost: "a"},
		{Name: "w-1", Role: config.RoleWorker, ProxmoxHost: "a"},
		{Name: "w-2", Role: config.RoleWorker, ProxmoxHost: "b"},
		{Name: "w-3", Role: config.RoleWorker, ProxmoxHost: "c"},
	}
	from := version.Pair{Talos: version.MustParse("v1.11.3")}
	to := version.Pair{Talos: version.MustParse("v1.12.0")}
	if strategy == version.Pets {
		to.Talos = version.MustParse("v1.11.4")
	}
	return plan.Build(plan.Input{Nodes: nodes, Strategy: strategy, From: from, To: to, MaxParallelWorkers: parallel})
}

func newEngine(clk clock.Clock, rec *recorder, g *gate) (*rollout.Engine, *journal.Memory) {
	j := &journal.Memory{}
	return &rollout.Engine{
		Cluster: rec, Replacer: rec, Upgrader: rec, Health: g, Journal: j, Clock: clk, RunID: "t",
		Policy: rollout.Policy{DrainTimeout: time.Minute, ReadyTimeout: time.Minute, HealthTimeout: 5 * time.Minute,
			HealthAttempts: 3, HealthInterval: 30 * time.Second, ControlPlaneSoak: 2 * time.Minute},
	}, j
}

func TestCattleCallOrder(t *testing.T) {
	clk := clock.NewVirtual(time.Unix(0, 0))
	rec := newRecorder(clk)
	eng, _ := newEngine(clk, rec, &gate{fn: alwaysPass})
	rep, err := eng.Run(context.Background(), testPlan(version.Cattle, 1))
	if err != nil {
		t.Fatal(err)
	}
	if rec.calls[0] != "templates v1.12.0" {
		t.Fatalf("first call %q, want the template phase", rec.calls[0])
	}
	want := "cordon, drain, destroy, delete-node, create@v1.12.0, wait-ready@v1.12.0, uncordon"
	for _, n := range []string{"cp-1", "w-1", "w-2", "w-3"} {
		if got := rec.callsFor(n); got != want {
			t.Errorf("%s: calls %q, want %q", n, got, want)
		}
	}
	if rep.Result != rollout.ResultSucceeded {
		t.Fatalf("result %s", rep.Result)
	}
}

func TestPetsCallOrder(t *testing.T) {
	clk := clock.NewVirtual(time.Unix(0, 0))
	rec := newRecorder(clk)
	eng, _ := newEngine(clk, rec, &gate{fn: alwaysPass})
	if _, err := eng.Run(context.Background(), testPlan(version.Pets, 1)); err != nil {
		t.Fatal(err)
	}
	want := "cordon, drain, upgrade@v1.11.4, wait-ready@v1.11.4, uncordon"
	if got := rec.callsFor("w-2"); got != want {
		t.Fatalf("calls %q, want %q", got, want)
	}
}

func TestHealthGate(t *testing.T) {
	tests := []struct {
		name        string
		fn          func(node string, call int) bool
		wantErr     bool
		wantOutcome map[string]rollout.Outcome
		wantCalls   map[string]int
	}{
		{
			name:        "flapping gate passes on the second attempt",
			fn:          func(_ string, call int) bool { return call != 1 },
			wantOutcome: map[string]rollout.Outcome{"cp-1": rollout.OutcomeUpgraded, "w-1": rollout.OutcomeUpgraded, "w-3": rollout.OutcomeUpgraded},
		},
		{
			// 3 attempts fail, the node is rolled back, the post-rollback
			// gate fails its 3 attempts too: the rollback failed.
			name:        "failing gate rolls the first node back after 3 attempts",
			fn:          alwaysFail,
			wantErr:     true,
			wantOutcome: map[string]rollout.Outcome{"cp-1": rollout.OutcomeFailed, "w-1": rollout.OutcomeUntouched},
			wantCalls:   map[string]int{"cp-1": 6},
		},
		{
			name:        "gate failing after one node halts at the second",
			fn:          func(node string, _ int) bool { return node == "cp-1" },
			wantErr:     true,
			wantOutcome: map[string]rollout.Outcome{"cp-1": rollout.OutcomeUpgraded, "w-1": rollout.OutcomeFailed, "w-2": rollout.OutcomeUntouched},
		},
		{
			// The only control-plane node is the last: its soak goes on in
			// the background while the first worker is changed, and its
			// failure halts the run after that worker's gate.
			name:        "gate failing in the soak rolls the control plane back",
			fn:          func(node string, call int) bool { return node != "cp-1" || call == 1 },
			wantErr:     true,
			wantOutcome: map[string]rollout.Outcome{"cp-1": rollout.OutcomeFailed, "w-1": rollout.OutcomeUpgraded, "w-2": rollout.OutcomeUntouched},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewVirtual(time.Unix(0, 0))
			rec := newRecorder(clk)
			g := &gate{fn: tc.fn}
			eng, _ := newEngine(clk, rec, g)
			rep, err := eng.Run(context.Background(), testPlan(version.Cattle, 1))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			for n, o := range tc.wantOutcome {
				if got := rep.Node(n).Outcome; got != o {
					t.Errorf("%s outcome %s, want %s", n, got, o)
				}
			}
			for n, c := range tc.wantCalls {
				if g.calls[n] != c {
					t.Errorf("%s gate calls %d, want %d", n, g.calls[n], c)
				}
			}
		})
	}
}

func TestRollbackRecreatesAtTheOldVersion(t *testing.T) {
	clk := clock.NewVirtual(time.Unix(0, 0))
	rec := newRecorder(clk)
	eng, _ := newEngine(clk, rec, &gate{fn: func(node string, call int) bool { return node != "w-1" || call > 3 }})
	_, err := eng.Run(context.Background(), testPlan(version.Cattle, 1))
	var halt *rollout.HaltError
	if !errors.As(err, &halt) || halt.Node != "w-1" {
		t.Fatalf("err = %v, want a halt at w-1", err)
	}
	want := "cordon, drain, destroy, delete-node, create@v1.12.0, wait-ready@v1.12.0, uncordon, " +
		"cordon, drain, destroy, delete-node, create@v1.11.3, wait-ready@v1.11.3, uncordon"
	if got := rec.callsFor("w-1"); got != want {
		t.Fatalf("calls\n %q\nwant\n %q", got, want)
	}
	if strings.Contains(strings.Join(rec.calls, ","), "w-2") {
		t.Fatal("a node after the halted one was touched")
	}
}

func TestFailedCreateAndFailedRollback(t *testing.T) {
	clk := clock.NewVirtual(time.Unix(0, 0))
	rec := newRecorder(clk)
	rec.fail["create@v1.12.0 w-1"] = errors.New("clone failed")
	rec.fail["create@v1.11.3 w-1"] = errors.New("clone failed again")
	eng, _ := newEngine(clk, rec, &gate{fn: alwaysPass})
	rep, err := eng.Run(context.Background(), testPlan(version.Cattle, 1))
	var rf *rollout.RollbackFailedError
	if !errors.As(err, &rf) || rf.Node != "w-1" {
		t.Fatalf("err = %v, want RollbackFailedError", err)
	}
	if rep.Result != rollout.ResultRollbackFailed || rep.Node("w-1").Outcome != rollout.OutcomeFailed {
		t.Fatalf("result %s, w-1 %s", rep.Result, rep.Node("w-1").Outcome)
	}
}

func TestDrainFailureUncordonsAndTouchesNothingElse(t *testing.T) {
	clk := clock.NewVirtual(time.Unix(0, 0))
	rec := newRecorder(clk)
	rec.fail["drain w-2"] = errors.New("pdb says no")
	eng, _ := newEngine(clk, rec, &gate{fn: alwaysPass})
	rep, err := eng.Run(context.Background(), testPlan(version.Cattle, 1))
	var halt *rollout.HaltError
	if !errors.As(err, &halt) {
		t.Fatalf("err = %v", err)
	}
	if got := rec.callsFor("w-2"); got != "cordon, drain, uncordon" {
		t.Fatalf("w-2 calls %q", got)
	}
	if rep.Node("w-2").Outcome != rollout.OutcomeFailed || rep.Node("w-3").Outcome != rollout.OutcomeUntouched {
		t.Fatalf("outcomes %s %s", rep.Node("w-2").Outcome, rep.Node("w-3").Outcome)
	}
}

func TestParallelBatchRunsTogetherOnTheClock(t *testing.T) {
	clk := clock.NewVirtual(time.Unix(0, 0))
	rec := newRecorder(clk)
	eng, _ := newEngine(clk, rec, &gate{fn: alwaysPass})
	rep, err := eng.Run(context.Background(), testPlan(version.Cattle, 3))
	if err != nil {
		t.Fatal(err)
	}
	// The three workers share one batch: each takes 1m drain + 20s destroy
	// + 3m create, so the batch takes 4m20s, not 13m.
	w := rep.Node("w-1")
	if w.Batch != rep.Node("w-3").Batch || w.Duration != 4*time.Minute+20*time.Second {
		t.Fatalf("w-1 batch %d duration %s; w-3 batch %d", w.Batch, w.Duration, rep.Node("w-3").Batch)
	}
	// One state, one lock: the batch is one destroy and one create.
	want := []string{"destroy cp-1", "create@v1.12.0 cp-1", "destroy w-1,w-2,w-3", "create@v1.12.0 w-1,w-2,w-3"}
	if fmt.Sprint(rec.runs) != fmt.Sprint(want) {
		t.Fatalf("Terraform runs %q, want %q", rec.runs, want)
	}
}

func TestOneNodeOfABatchFailsAloneAndTheRunHaltsAfterTheBatch(t *testing.T) {
	clk := clock.NewVirtual(time.Unix(0, 0))
	rec := newRecorder(clk)
	eng, _ := newEngine(clk, rec, &gate{fn: func(node string, call int) bool { return node != "w-2" || call > 3 }})
	rep, err := eng.Run(context.Background(), testPlan(version.Cattle, 3))
	var halt *rollout.HaltError
	if !errors.As(err, &halt) || halt.Node != "w-2" {
		t.Fatalf("err = %v, want a halt at w-2", err)
	}
	for n, o := range map[string]rollout.Outcome{"w-1": rollout.OutcomeUpgraded, "w-2": rollout.OutcomeRolledBack, "w-3": rollout.OutcomeUpgraded} {
		if got := rep.Node(n).Outcome; got != o {
			t.Errorf("%s: %s, want %s", n, got, o)
		}
	}
	want := []string{"destroy cp-1", "create@v1.12.0 cp-1", "destroy w-1,w-2,w-3", "create@v1.12.0 w-1,w-2,w-3", "destroy w-2", "create@v1.11.3 w-2"}
	if fmt.Sprint(rec.runs) != fmt.Sprint(want) {
		t.Fatalf("Terraform runs %q, want %q", rec.runs, want)
	}
}

func TestACreateThatFailsForOneNodeRollsBackThatNodeOnly(t *testing.T) {
	clk := clock.NewVirtual(time.Unix(0, 0))
	rec := newRecorder(clk)
	rec.fail["create@v1.12.0 w-3"] = errors.New("clone failed")
	eng, _ := newEngine(clk, rec, &gate{fn: alwaysPass})
	rep, err := eng.Run(context.Background(), testPlan(version.Cattle, 3))
	var halt *rollout.HaltError
	if !errors.As(err, &halt) || halt.Node != "w-3" {
		t.Fatalf("err = %v, want a halt at w-3", err)
	}
	if rep.Node("w-1").Outcome != rollout.OutcomeUpgraded || rep.Node("w-3").Outcome != rollout.OutcomeRolledBack {
		t.Fatalf("w-1 %s, w-3 %s", rep.Node("w-1").Outcome, rep.Node("w-3").Outcome)
	}
}

func TestTheWorstOutcomeOfABatchDecides(t *testing.T) {
	clk := clock.NewVirtual(time.Unix(0, 0))
	rec := newRecorder(clk)
	// w-1 fails its gate and rolls back fine; w-2 fails its gate and its
	// rollback fails: the run must say "rollback failed" (exit 3).
	rec.fail["create@v1.11.3 w-2"] = errors.New("clone failed")
	eng, _ := newEngine(clk, rec, &gate{fn: func(node string, call int) bool { return node == "cp-1" || node == "w-3" || call > 3 }})
	rep, err := eng.Run(context.Background(), testPlan(version.Cattle, 3))
	var rf *rollout.RollbackFailedError
	if !errors.As(err, &rf) || rf.Node != "w-2" || rep.Result != rollout.ResultRollbackFailed {
		t.Fatalf("err = %v (result %s), want w-2's failed rollback", err, rep.Result)
	}
	if rep.Node("w-1").Outcome != rollout.OutcomeRolledBack {
		t.Fatalf("w-1 %s", rep.Node("w-1").Outcome)
	}
}

func TestEngineRefusesAPlanItCannotRun(t *testing.T) {
	tests := []struct {
		name     string
		strategy version.Strategy
		breaks   func(e *rollout.Engine)
		want     string
	}{
		{"cattle without a replacer", version.Cattle, func(e *rollout.Engine) { e.Replacer = nil }, "a cattle plan needs a node replacer"},
		{"pets without an upgrader", version.Pets, func(e *rollout.Engine) { e.Upgrader = nil }, "a pets plan needs an in-place upgrader"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewVirtual(time.Unix(0, 0))
			rec := newRecorder(clk)
			eng, j := newEngine(clk, rec, &gate{fn: alwaysPass})
			tc.breaks(eng)
			_, err := eng.Run(context.Background(), testPlan(tc.strategy, 1))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if len(rec.calls) != 0 || len(j.Entries()) > 1 {
				t.Fatalf("calls %v, journal %v: the refusal touched something", rec.calls, j.Entries())
			}
		})
	}
}

// versions is a stub VersionReader: every node runs from, but for the
// nodes it names.
type versions struct {
	from version.Pair
	runs map[string]version.Pair
}

func (v versions) NodeVersions(_ context.Context, n plan.Node, _ bool) (rollout.Observed, error) {
	if p, ok := v.runs[n.Name]; ok {
		return rollout.Observed{Versions: p, Source: "stub"}, nil
	}
	return rollout.Observed{Versions: v.from, Source: "stub"}, nil
}

// guardRec records the etcd guard's calls into the recorder.
type guardRec struct{ rec *recorder }

func (g guardRec) BeforeNode(_ context.Context, n plan.Node) (rollout.Snapshot, error) {
	return rollout.Snapshot{Path: "snap-" + n.Name}, g.rec.do("etcd-guard", n.Name)
}
func (g guardRec) BeforeDestroy(_ context.Context, n plan.Node) error {
	return g.rec.do("etcd-leave", n.Name)
}
func (g guardRec) AfterNode(_ context.Context, n plan.Node) error {
	return g.rec.do("etcd-rejoin", n.Name)
}

func TestWhatTheNodesRunDecidesRightBeforeTheirChange(t *testing.T) {
	old := version.Pair{Talos: version.MustParse("v1.11.3")}
	tests := []struct {
		name      string
		runs      map[string]version.Pair
		wantErr   any
		wantFirst string // the first node's calls
		outcomes  map[string]rollout.Outcome
	}{
		{
			name:     "a node already at the target is skipped, untouched",
			runs:     map[string]version.Pair{"w-2": {Talos: version.MustParse("v1.12.0")}},
			outcomes: map[string]rollout.Outcome{"w-1": rollout.OutcomeUpgraded, "w-2": rollout.OutcomeSkipped, "w-3": rollout.OutcomeUpgraded},
		},
		{
			name:     "a worker that drifted halts the run, untouched",
			runs:     map[string]version.Pair{"w-2": {Talos: version.MustParse("v1.11.4")}},
			wantErr:  new(*rollout.HaltError),
			outcomes: map[string]rollout.Outcome{"w-1": rollout.OutcomeUpgraded, "w-2": rollout.OutcomeFailed, "w-3": rollout.OutcomeUntouched},
		},
		{
			name:     "the first node drifted: blocked before any change",
			runs:     map[string]version.Pair{"cp-1": {Talos: version.MustParse("v1.11.2")}},
			wantErr:  new(*rollout.BlockedError),
			outcomes: map[string]rollout.Outcome{"cp-1": rollout.OutcomeFailed, "w-1": rollout.OutcomeUntouched},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewVirtual(time.Unix(0, 0))
			rec := newRecorder(clk)
			eng, _ := newEngine(clk, rec, &gate{fn: alwaysPass})
			eng.Versions = versions{from: old, runs: tc.runs}
			rep, err := eng.Run(context.Background(), testPlan(version.Cattle, 1))
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.As(err, tc.wantErr) {
				t.Fatalf("err = %v, want %T", err, tc.wantErr)
			}
			for n, o := range tc.outcomes {
				if got := rep.Node(n).Outcome; got != o {
					t.Errorf("%s: %s, want %s", n, got, o)
				}
			}
			for n := range tc.runs {
				if calls := rec.callsFor(n); calls != "" {
					t.Errorf("%s was touched: %s", n, calls)
				}
			}
		})
	}
}

func TestRollbackDrainsAndGuardsLikeTheChange(t *testing.T) {
	clk := clock.NewVirtual(time.Unix(0, 0))
	rec := newRecorder(clk)
	eng, _ := newEngine(clk, rec, &gate{fn: func(node string, call int) bool { return node != "cp-1" || call > 3 }})
	eng.Guard = guardRec{rec}
	_, err := eng.Run(context.Background(), testPlan(version.Cattle, 1))
	var halt *rollout.HaltError
	if !errors.As(err, &halt) || halt.Node != "cp-1" {
		t.Fatalf("err = %v, want a halt at cp-1", err)
	}
	want := "etcd-guard, cordon, drain, etcd-leave, destroy, delete-node, create@v1.12.0, wait-ready@v1.12.0, etcd-rejoin, uncordon, " +
		"cordon, drain, etcd-guard, etcd-leave, destroy, delete-node, create@v1.11.3, wait-ready@v1.11.3, etcd-rejoin, uncordon"
	if got := rec.callsFor("cp-1"); got != want {
		t.Fatalf("calls\n %q\nwant\n %q", got, want)
	}
}

func TestALostLockStopsAtTheNextSafePoint(t *testing.T) {
	clk := clock.NewVirtual(time.Unix(0, 0))
	rec := newRecorder(clk)
	eng, j := newEngine(clk, rec, &gate{fn: alwaysPass})
	lost := errors.New("run lock lost: taken over by runner=other")
	ctx, cancel := context.WithCancelCause(context.Background())
	eng.Sink = rollout.SinkFunc(func(e rollout.Event) {
		if e.Kind == rollout.EventStep && e.Node == "w-1" && e.Step == rollout.StepDrain && e.Status == rollout.StatusStarted {
			cancel(lost)
		}
	})
	rep, err := eng.Run(ctx, testPlan(version.Cattle, 1))
	var ie *rollout.InterruptedError
	if !errors.As(err, &ie) || ie.Node != "w-1" || !errors.Is(err, lost) {
		t.Fatalf("err = %v, want w-1 stopped because the lock was lost", err)
	}
	if rep.Result != rollout.ResultInterrupted {
		t.Fatalf("result %s", rep.Result)
	}
	// The drain was stopped, the node put back into service; nothing after it ran.
	if got := rec.callsFor("w-1"); got != "cordon, drain, uncordon" {
		t.Fatalf("w-1 calls %q", got)
	}
	last := j.Entries()[len(j.Entries())-1]
	if last.Status != rollout.StatusInterrupted {
		t.Fatalf("the journal ends with %+v, want the stop", last)
	}
}

func TestAStopDuringThePreflightsIsAStopNotARefusal(t *testing.T) {
	clk := clock.NewVirtual(time.Unix(0, 0))
	rec := newRecorder(clk)
	eng, j := newEngine(clk, rec, &gate{fn: alwaysPass})
	ctx, cancel := context.WithCancel(context.Background())
	eng.Preflights = []rollout.Preflight{preflightFunc(func(ctx context.Context) error {
		cancel() // SIGTERM arrives while a preflight waits on the API
		return ctx.Err()
	})}
	_, err := eng.Run(ctx, testPlan(version.Cattle, 1))
	var ie *rollout.InterruptedError
	if !errors.As(err, &ie) {
		t.Fatalf("err = %T %v, want a stop", err, err)
	}
	var stopped bool
	for _, e := range j.Entries() {
		if e.Step == rollout.StepRun && e.Status == rollout.StatusInterrupted {
			stopped = true
		}
	}
	if !stopped || len(rec.calls) != 0 {
		t.Fatalf("journal says stopped: %v; calls %v", stopped, rec.calls)
	}
}

type preflightFunc func(ctx context.Context) error

func (preflightFunc) Name() string                                   { return "stub" }
func (f preflightFunc) Check(ctx context.Context, _ plan.Plan) error { return f(ctx) }

// stopVersions cancels the run while the version of node is being read, as
// a SIGTERM arriving during that node's preflight does.
type stopVersions struct {
	versions
	node   string
	cancel context.CancelFunc
}

func (v stopVersions) NodeVersions(ctx context.Context, n plan.Node, pets bool) (rollout.Observed, error) {
	if n.Name == v.node {
		v.cancel()
		return rollout.Observed{}, fmt.Errorf("talos version of %s: %w", n.Name, ctx.Err())
	}
	return v.versions.NodeVersions(ctx, n, pets)
}

// stopGuard cancels the run while the etcd guard works on a node.
type stopGuard struct {
	guardRec
	cancel context.CancelFunc
}

func (g stopGuard) BeforeNode(ctx context.Context, _ plan.Node) (rollout.Snapshot, error) {
	g.cancel()
	return rollout.Snapshot{}, fmt.Errorf("etcd snapshot: %w", ctx.Err())
}

// A stop that cuts a node's preflight or etcd guard short is a stop: the
// node was not touched, nothing is undone on it (not even an uncordon), and
// a resume starts it again at the step the stop cut short.
func TestAStopBeforeANodeIsTouchedLeavesItUntouched(t *testing.T) {
	old := version.Pair{Talos: version.MustParse("v1.11.3")}
	tests := []struct {
		name string
		node string
		step rollout.Step
		wire func(eng *rollout.Engine, rec *recorder, cancel context.CancelFunc)
	}{
		{"during a worker's preflight", "w-1", rollout.StepPreflight, func(eng *rollout.Engine, _ *recorder, cancel context.CancelFunc) {
			eng.Versions = stopVersions{versions: versions{from: old}, node: "w-1", cancel: cancel}
		}},
		{"during the etcd guard", "cp-1", rollout.StepEtcdGuard, func(eng *rollout.Engine, rec *recorder, cancel context.CancelFunc) {
			eng.Guard = stopGuard{guardRec: guardRec{rec}, cancel: cancel}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewVirtual(time.Unix(0, 0))
			rec := newRecorder(clk)
			eng, j := newEngine(clk, rec, &gate{fn: alwaysPass})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			tc.wire(eng, rec, cancel)
			rep, err := eng.Run(ctx, testPlan(version.Cattle, 1))
			var ie *rollout.InterruptedError
			if !errors.As(err, &ie) || ie.Node != tc.node || ie.Step != tc.step {
				t.Fatalf("err = %T %v, want a stop of %s at %s", err, err, tc.node, tc.step)
			}
			if rep.Result != rollout.ResultInterrupted || rep.Node(tc.node).Outcome != rollout.OutcomeUntouched {
				t.Fatalf("result %s, %s %s", rep.Result, tc.node, rep.Node(tc.node).Outcome)
			}
			if calls := rec.callsFor(tc.node); calls != "" {
				t.Fatalf("%s was touched: %s", tc.node, calls)
			}
			st, err := rollout.ReadResume(j.Entries())
			if err != nil {
				t.Fatal(err)
			}
			if ns := st.Nodes[tc.node]; ns == nil || ns.Halted || ns.ResumeAt != tc.step {
				t.Fatalf("resume state of %s: %+v, want it resumed at %s", tc.node, ns, tc.step)
			}
		})
	}
}

// criticalGate fails every run with a critical finding: a cluster already
// broken before the run.
type criticalGate struct{ calls int }

func (g *criticalGate) Check(_ context.Context, in rollout.GateInput) rollout.HealthResult {
	g.calls++
	f := rollout.Finding{Key: "critical/kube-system/coredns", Critical: true, Text: "critical pod kube-system/coredns is Pending"}
	return rollout.HealthResult{Checks: []rollout.CheckResult{{Name: "Pod Health", Diagnostics: []string{f.Text}, Findings: []rollout.Finding{f}}}}
}

// TestAnUnhealthyClusterBlocksBeforeAnyChange: with the preflight health
// on (as assembled), a cluster whose gate fails critically blocks the run
// (exit 4) before any node is touched.
func TestAnUnhealthyClusterBlocksBeforeAnyChange(t *testing.T) {
	clk := clock.NewVirtual(time.Unix(0, 0))
	rec := newRecorder(clk)
	g := &criticalGate{}
	eng, _ := newEngine(clk, rec, &gate{fn: alwaysPass})
	eng.Health, eng.PreflightHealth = g, true
	eng.Policy.HealthPasses = 1
	_, err := eng.Run(context.Background(), testPlan(version.Cattle, 1))
	var blocked *rollout.BlockedError
	if !errors.As(err, &blocked) || !strings.Contains(err.Error(), "preflight health") {
		t.Fatalf("err = %T %v, want a block by the preflight health", err, err)
	}
	if g.calls == 0 || len(rec.calls) != 0 {
		t.Fatalf("gate runs %d, calls %v", g.calls, rec.calls)
	}
}

// journalCheck is a recorder that, at each action, checks the journal
// already says the step started: an action is never ahead of its record.
type journalCheck struct {
	*recorder
	j *journal.Memory
	t *testing.T
}

func (c journalCheck) started(op, node string) {
	step := map[string]rollout.Step{"cordon": rollout.StepCordon, "drain": rollout.StepDrain, "destroy": rollout.StepDestroy}[op]
	if strings.HasPrefix(op, "create") {
		step = rollout.StepCreate
	}
	es := c.j.Entries()
	for i := len(es) - 1; i >= 0; i-- {
		if es[i].Node == node && es[i].Step == step {
			if es[i].Status != rollout.StatusStarted {
				c.t.Errorf("%s %s: the journal's last record of the step is %s", op, node, es[i].Status)
			}
			return
		}
	}
	c.t.Errorf("%s %s ran before the journal recorded its start", op, node)
}

func (c journalCheck) Cordon(ctx context.Context, n string) error {
	c.started("cordon", n)
	return c.recorder.Cordon(ctx, n)
}

func (c journalCheck) Drain(ctx context.Context, n string, d time.Duration, p func(string)) error {
	c.started("drain", n)
	return c.recorder.Drain(ctx, n, d, p)
}

func (c journalCheck) Destroy(ctx context.Context, ns []plan.Node) error {
	for _, n := range ns {
		c.started("destroy", n.Name)
	}
	return c.recorder.Destroy(ctx, ns)
}

func (c journalCheck) Create(ctx context.Context, ns []plan.Node, at version.Pair) error {
	for _, n := range ns {
		c.started("create", n.Name)
	}
	return c.recorder.Create(ctx, ns, at)
}

// TestTheJournalSaysStartedBeforeEachAction: a crash in the middle of an
// action must find its start in the journal, or a resume would skip it.
func TestTheJournalSaysStartedBeforeEachAction(t *testing.T) {
	clk := clock.NewVirtual(time.Unix(0, 0))
	rec := newRecorder(clk)
	eng, j := newEngine(clk, rec, &gate{fn: alwaysPass})
	c := journalCheck{recorder: rec, j: j, t: t}
	eng.Cluster, eng.Replacer = c, c
	if _, err := eng.Run(context.Background(), testPlan(version.Cattle, 2)); err != nil {
		t.Fatal(err)
	}
	if len(rec.calls) < 16 {
		t.Fatalf("only %d calls were checked", len(rec.calls))
	}
}

// readyWants records what the engine waits for after each change.
type readyWants struct {
	*recorder
	mu    sync.Mutex
	wants map[string]rollout.ReadyWant
}

func (r *readyWants) WaitReady(ctx context.Context, n string, want rollout.ReadyWant, d time.Duration) (rollout.Identity, error) {
	r.mu.Lock()
	r.wants[n] = want
	r.mu.Unlock()
	return r.recorder.WaitReady(ctx, n, want, d)
}

// TestAReplacedNodeMustBeANewNodeObject: after a cattle replacement the old
// Node object (its UID) never counts as the node being back; an in-place
// upgrade keeps its Node object.
func TestAReplacedNodeMustBeANewNodeObject(t *testing.T) {
	for _, strategy := range []version.Strategy{version.Cattle, version.Pets} {
		clk := clock.NewVirtual(time.Unix(0, 0))
		rec := newRecorder(clk)
		rw := &readyWants{recorder: rec, wants: map[string]rollout.ReadyWant{}}
		eng, _ := newEngine(clk, rec, &gate{fn: alwaysPass})
		eng.Cluster = rw
		if _, err := eng.Run(context.Background(), testPlan(strategy, 1)); err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"cp-1", "w-1"} {
			got := rw.wants[n].NotUID
			if strategy == version.Cattle && got != n+"-0" || strategy == version.Pets && got != "" {
				t.Errorf("%s %s: waits for a Node whose UID is not %q", strategy, n, got)
			}
		}
	}
}

// TestAResumeMidDrainDrainsAgain: a run stopped while it drained w-1 is
// resumed: w-1 still runs its old version, so it is cordoned and drained
// again before anything is destroyed (pods may have landed on it since).
func TestAResumeMidDrainDrainsAgain(t *testing.T) {
	clk := clock.NewVirtual(time.Unix(0, 0))
	rec := newRecorder(clk)
	eng, _ := newEngine(clk, rec, &gate{fn: alwaysPass})
	old := version.Pair{Talos: version.MustParse("v1.11.3")}
	eng.Versions = versions{from: old, runs: map[string]version.Pair{"cp-1": {Talos: version.MustParse("v1.12.0")}}}
	h := &rollout.RunHeader{Cluster: "c", Strategy: "cattle", From: "v1.11.3", To: "v1.12.0"}
	st, err := rollout.ReadResume([]rollout.Entry{
		{RunID: "t", Step: rollout.StepRun, Status: rollout.StatusStarted, Header: h},
		{RunID: "t", Node: "cp-1", Step: rollout.StepDone, Status: rollout.StatusDone},
		{RunID: "t", Node: "w-1", Step: rollout.StepCordon, Status: rollout.StatusStarted},
		{RunID: "t", Node: "w-1", Step: rollout.StepCordon, Status: rollout.StatusDone},
		{RunID: "t", Node: "w-1", Step: rollout.StepDrain, Status: rollout.StatusStarted},
	})
	if err != nil {
		t.Fatal(err)
	}
	eng.Resume = st
	if _, err := eng.Run(context.Background(), testPlan(version.Cattle, 1)); err != nil {
		t.Fatal(err)
	}
	if got := rec.callsFor("w-1"); !strings.HasPrefix(got, "cordon, drain, destroy") {
		t.Fatalf("w-1 calls %q: the resumed node was not drained before its destroy", got)
	}
	if got := rec.callsFor("cp-1"); strings.Contains(got, "destroy") {
		t.Fatalf("cp-1, done before the stop, was replaced again: %q", got)
	}
}

// slowTemplates builds templates in d on the clock.
type slowTemplates struct {
	*recorder
	d time.Duration
}

func (s slowTemplates) EnsureTemplates(ctx context.Context, to version.Pair) error {
	_ = s.clk.Sleep(ctx, s.d)
	return s.recorder.EnsureTemplates(ctx, to)
}

// TestTheTemplatesTarget: templates that take longer than the PRD's 15
// minutes are named in the report's missed targets; exactly 15 are not.
func TestTheTemplatesTarget(t *testing.T) {
	for _, tc := range []struct {
		took   time.Duration
		missed bool
	}{{rollout.TemplatesTarget, false}, {rollout.TemplatesTarget + time.Second, true}} {
		clk := clock.NewVirtual(time.Unix(0, 0))
		rec := newRecorder(clk)
		eng, _ := newEngine(clk, rec, &gate{fn: alwaysPass})
		eng.Replacer = slowTemplates{recorder: rec, d: tc.took}
		rep, err := eng.Run(context.Background(), testPlan(version.Cattle, 1))
		if err != nil {
			t.Fatal(err)
		}
		missed := strings.Contains(strings.Join(rep.MissedTargets, "\n"), "the templates took")
		if missed != tc.missed || rep.TemplatesSeconds != tc.took.Seconds() {
			t.Errorf("templates took %s: missed %v (%v), seconds %v", tc.took, missed, rep.MissedTargets, rep.TemplatesSeconds)
		}
	}
}

// TestAClosedWindowPausesBetweenBatches: the window is checked between
// batches, never before the first (the CLI checks that) nor mid-batch.
func TestAClosedWindowPausesBetweenBatches(t *testing.T) {
	clk := clock.NewVirtual(time.Unix(0, 0))
	rec := newRecorder(clk)
	eng, j := newEngine(clk, rec, &gate{fn: alwaysPass})
	eng.Window, eng.WindowName = func(time.Time) bool { return false }, "Sat 02:00-06:00"
	rep, err := eng.Run(context.Background(), testPlan(version.Cattle, 1))
	var paused *rollout.PausedError
	if !errors.As(err, &paused) || paused.Window != "Sat 02:00-06:00" {
		t.Fatalf("err = %v, want a pause for the window", err)
	}
	if rep.Node("cp-1").Outcome != rollout.OutcomeUpgraded || rep.Node("w-1").Outcome != rollout.OutcomeUntouched {
		t.Fatalf("cp-1 %s, w-1 %s", rep.Node("cp-1").Outcome, rep.Node("w-1").Outcome)
	}
	var closed bool
	for _, e := range j.Entries() {
		closed = closed || e.Step == rollout.StepRun && e.Status == rollout.StatusInterrupted && e.Detail == "maintenance window closed"
	}
	if !closed {
		t.Fatalf("the journal does not say the window closed: %+v", j.Entries())
	}
}

// TestTheCanaryPause: the run pauses after the canary's batches, and only
// when batches are left.
func TestTheCanaryPause(t *testing.T) {
	for _, tc := range []struct {
		after int
		pause bool
	}{{1, true}, {2, true}, {4, false}, {0, false}} {
		clk := clock.NewVirtual(time.Unix(0, 0))
		rec := newRecorder(clk)
		eng, _ := newEngine(clk, rec, &gate{fn: alwaysPass})
		p := testPlan(version.Cattle, 1) // four batches: cp-1, w-1, w-2, w-3
		p.PauseAfter, p.Canary = tc.after, []string{"w-1"}
		rep, err := eng.Run(context.Background(), p)
		var cp *rollout.CanaryPausedError
		if errors.As(err, &cp) != tc.pause || !tc.pause && err != nil {
			t.Fatalf("pause after %d: err = %v", tc.after, err)
		}
		upgraded := 0
		for _, n := range rep.Nodes {
			if n.Outcome == rollout.OutcomeUpgraded {
				upgraded++
			}
		}
		if want := map[bool]int{true: tc.after, false: 4}[tc.pause]; upgraded != want {
			t.Errorf("pause after %d: %d nodes upgraded, want %d", tc.after, upgraded, want)
		}
	}
}

// TestTheGateLoop: the gate passes after Passes passing runs in a row, a
// failure resets the streak, it fails after Attempts failing runs, and it
// fails when the time runs out before the streak is complete.
func TestTheGateLoop(t *testing.T) {
	tests := []struct {
		name        string
		results     string // one letter per run: p passes, f fails
		attempts    int
		passes      int
		timeout     time.Duration
		wantErr     bool
		wantRuns    int
		wantTimeout bool // a *HealthFailedError that counts the streak
	}{
		{"two in a row", "pp", 3, 2, time.Hour, false, 2, false},
		{"a failure resets the streak", "pfpp", 3, 2, time.Hour, false, 4, false},
		{"three failures", "fpfpf", 3, 2, time.Hour, true, 5, false},
		{"one pass is enough when one is asked", "p", 3, 1, time.Hour, false, 1, false},
		{"out of time before the streak", "pppp", 3, 3, 90 * time.Second, true, 2, true},
		{"out of time while failing", "ffff", 5, 1, 90 * time.Second, true, 2, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewVirtual(time.Unix(0, 0))
			g := &gate{fn: func(_ string, call int) bool { return call <= len(tc.results) && tc.results[call-1] == 'p' }}
			loop := rollout.Gate{Checks: g, Clock: clk, Timeout: tc.timeout, Interval: time.Minute, Attempts: tc.attempts, Passes: tc.passes}
			res, err := loop.Run(context.Background(), rollout.GateInput{Node: plan.Node{Node: config.Node{Name: "n"}}})
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v", err)
			}
			if got := g.calls["n"]; got != tc.wantRuns || res.Checks[0].Attempts != tc.wantRuns {
				t.Fatalf("%d runs (attempts %d), want %d", got, res.Checks[0].Attempts, tc.wantRuns)
			}
			var hf *rollout.HealthFailedError
			if tc.wantErr && (!errors.As(err, &hf) || (hf.Want > 0) != tc.wantTimeout) {
				t.Fatalf("err = %#v", err)
			}
		})
	}
}

// slowCreate makes a VM's creation take extra on the clock.
type slowCreate struct {
	*recorder
	extra time.Duration
}

func (s slowCreate) Create(ctx context.Context, ns []plan.Node, at version.Pair) error {
	_ = s.clk.Sleep(ctx, s.extra)
	return s.recorder.Create(ctx, ns, at)
}

// TestANodeOverItsTargetIsNamed: an upgraded node that took longer than
// the PRD's target is marked in the report; one under it is not.
func TestANodeOverItsTargetIsNamed(t *testing.T) {
	for _, tc := range []struct {
		extra  time.Duration
		missed bool
	}{{0, false}, {10 * time.Minute, true}} {
		clk := clock.NewVirtual(time.Unix(0, 0))
		rec := newRecorder(clk)
		eng, _ := newEngine(clk, rec, &gate{fn: alwaysPass})
		eng.Replacer = slowCreate{recorder: rec, extra: tc.extra}
		rep, err := eng.Run(context.Background(), testPlan(version.Cattle, 1))
		if err != nil {
			t.Fatal(err)
		}
		w := rep.Node("w-1")
		if w.MissedTarget != tc.missed || w.TargetSeconds != rollout.CattleNodeTarget.Seconds() {
			t.Errorf("create +%s: w-1 took %s, missed %v (target %vs)", tc.extra, w.Duration, w.MissedTarget, w.TargetSeconds)
		}
	}
}

// TestTheRunHeaderAndTheSoak: without a header the journal's first entry
// still says what the run is; a worker with no soak configured has no
// soak step, a control-plane node has its soak.
func TestTheRunHeaderAndTheSoak(t *testing.T) {
	clk := clock.NewVirtual(time.Unix(0, 0))
	rec := newRecorder(clk)
	eng, j := newEngine(clk, rec, &gate{fn: alwaysPass})
	rep, err := eng.Run(context.Background(), testPlan(version.Cattle, 1))
	if err != nil {
		t.Fatal(err)
	}
	if h := j.Entries()[0].Header; h == nil || h.Strategy != "cattle" || !strings.Contains(h.To, "v1.12.0") {
		t.Fatalf("first entry %+v", j.Entries()[0])
	}
	soaked := func(node string) bool {
		for _, s := range rep.Node(node).Steps {
			if s.Step == rollout.StepSoak {
				return true
			}
		}
		return false
	}
	if !soaked("cp-1") || soaked("w-1") {
		t.Fatalf("soak: cp-1 %v, w-1 %v", soaked("cp-1"), soaked("w-1"))
	}
}

// memoryGate checks the gate hands every run the same memory.
type memoryGate struct{ seen []*rollout.Memory }

func (g *memoryGate) Check(_ context.Context, in rollout.GateInput) rollout.HealthResult {
	g.seen = append(g.seen, in.Memory)
	return rollout.HealthResult{Checks: []rollout.CheckResult{{Name: "Stub", Passed: true}}}
}

// TestTheGateKeepsItsMemory: the runs of one gate share one memory (the
// restart counts), given or made.
func TestTheGateKeepsItsMemory(t *testing.T) {
	clk := clock.NewVirtual(time.Unix(0, 0))
	for _, given := range []*rollout.Memory{nil, rollout.NewMemory()} {
		g := &memoryGate{}
		loop := rollout.Gate{Checks: g, Clock: clk, Timeout: time.Hour, Interval: time.Second, Attempts: 1, Passes: 2}
		if _, err := loop.Run(context.Background(), rollout.GateInput{Memory: given}); err != nil {
			t.Fatal(err)
		}
		if len(g.seen) != 2 || g.seen[0] == nil || g.seen[0] != g.seen[1] || given != nil && g.seen[0] != given {
			t.Fatalf("memories %v (given %p)", g.seen, given)
		}
	}
}

// TestHandOffBeforeDroversOwnNode: the run reaches drover's own node (last
// of its role, alone), cordons it, journals the hand-off and stops with
// HandedOffError, having drained nothing of it; a resume from another
// runner (the journal read back, drover elsewhere) takes it from its
// preflight, cordons and drains it like any node, and succeeds.
func TestHandOffBeforeDroversOwnNode(t *testing.T) {
	for _, self := range []string{"w-2", "cp-1"} {
		t.Run(self, func(t *testing.T) {
			clk := clock.NewVirtual(time.Unix(0, 0))
			rec := newRecorder(clk)
			eng, j := newEngine(clk, rec, &gate{fn: alwaysPass})
			p := selfPlan(self)
			rep, err := eng.Run(context.Background(), p)
			var ho *rollout.HandedOffError
			if !errors.As(err, &ho) || ho.Node != self || rep.Result != rollout.ResultHandedOff {
				t.Fatalf("err %v, result %s: want handed off at %s", err, rep.Result, self)
			}
			if got := rec.callsFor(self); got != "cordon" {
				t.Fatalf("%s: calls %q, want only its cordon", self, got)
			}
			for _, b := range p.Batches {
				if n := b.Nodes[0].Name; n != self && n[0] == self[0] && rec.callsFor(n) == "" {
					t.Fatalf("%s of drover's role was not upgraded before the hand-off", n)
				}
			}
			st, err := rollout.ReadResume(j.Entries())
			if err != nil {
				t.Fatal(err)
			}
			if ns := st.Nodes[self]; ns == nil || ns.Done || ns.Halted || ns.ResumeAt != rollout.StepPreflight {
				t.Fatalf("the journal shows %s as %+v, want it to resume at its preflight", self, ns)
			}
			// The continuation: drover now runs elsewhere.
			rec2 := newRecorder(clk)
			eng2, _ := newEngine(clk, rec2, &gate{fn: alwaysPass})
			eng2.Resume = st
			p2 := selfPlan("")
			if rep, err := eng2.Run(context.Background(), p2); err != nil || rep.Result != rollout.ResultSucceeded {
				t.Fatalf("continuation: %v (%s)", err, rep.Result)
			}
			if got := rec2.callsFor(self); !strings.HasPrefix(got, "cordon, drain, destroy") {
				t.Fatalf("the continuation did %q on %s, want its cordon, drain and replacement", got, self)
			}
		})
	}
}

// selfPlan is testPlan's inventory with drover running on self.
func selfPlan(self string) plan.Plan {
	p := testPlan(version.Cattle, 1)
	var nodes []config.Node
	for _, b := range p.Batches {
		for _, n := range b.Nodes {
			nodes = append(nodes, n.Node)
		}
	}
	return plan.Build(plan.Input{Nodes: append(nodes, config.Node{Name: "cp-2", Role: config.RoleControlPlane, ProxmoxHost: "b"}),
		Strategy: version.Cattle, From: p.From, To: p.To, MaxParallelWorkers: 1, Self: self})
}

// soakEngine is newEngine with the workers soaking 5m in the background,
// two gate passes in a row 30s apart.
func soakEngine(clk *clock.Virtual, rec *recorder, g *gate) (*rollout.Engine, *journal.Memory) {
	eng, j := newEngine(clk, rec, g)
	eng.Policy.WorkerSoak, eng.Policy.HealthPasses = 5*time.Minute, 2
	return eng, j
}

// TestASoakingNodeThatDegradesHaltsTheRun: w-1 soaks in the background
// while w-2 is changed; when w-1 degrades (while w-2 is mid-drain,
// mid-replace or at its gate) no new node starts, w-2 finishes up to its
// gate, then w-1 is drained and rolled back and the run halts.
func TestASoakingNodeThatDegradesHaltsTheRun(t *testing.T) {
	for _, tc := range []struct {
		name string
		// degraded says, from what w-2 has done so far, whether w-1 fails.
		degraded func(w2 string) bool
	}{
		{"while the next node drains", func(w2 string) bool { return w2 == "cordon" }},
		{"while the next node is replaced", func(w2 string) bool { return strings.HasSuffix(w2, "delete-node") }},
		{"while the next node is at its gate", func(w2 string) bool { return strings.HasSuffix(w2, "uncordon") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewVirtual(time.Unix(0, 0))
			rec := newRecorder(clk)
			failed := false
			g := &gate{fn: func(node string, _ int) bool {
				if node == "w-1" && !failed && tc.degraded(rec.callsFor("w-2")) {
					failed = true // degraded for good, until its rollback
				}
				return node != "w-1" || !failed || strings.Count(rec.callsFor("w-1"), "create") > 1
			}}
			eng, _ := soakEngine(clk, rec, g)
			rep, err := eng.Run(context.Background(), testPlan(version.Cattle, 1))
			var he *rollout.HaltError
			if !errors.As(err, &he) || he.Node != "w-1" || !failed {
				t.Fatalf("err %v (degraded %v): want a halt at w-1", err, failed)
			}
			out := map[string]rollout.Outcome{}
			for _, n := range rep.Nodes {
				out[n.Name] = n.Outcome
			}
			if out["w-1"] != rollout.OutcomeRolledBack || out["w-2"] != rollout.OutcomeUpgraded || out["w-3"] != rollout.OutcomeUntouched {
				t.Fatalf("outcomes %v", out)
			}
			calls := strings.Join(rec.calls, "|")
			gateDone := strings.Index(calls, "uncordon w-2")
			rollback := strings.LastIndex(calls, "|cordon w-1")
			if gateDone < 0 || rollback < gateDone || !strings.Contains(calls[rollback:], "drain w-1") {
				t.Fatalf("w-1 was not drained and rolled back after w-2's gate: %s", calls)
			}
		})
	}
}

// TestTheLastSoakHoldsTheResult: the run succeeds only once the last
// worker's soak passed; when it fails, the worker is rolled back and the
// run halts.
func TestTheLastSoakHoldsTheResult(t *testing.T) {
	for _, fail := range []bool{false, true} {
		clk := clock.NewVirtual(time.Unix(0, 0))
		rec := newRecorder(clk)
		calls := 0
		g := &gate{fn: func(node string, _ int) bool {
			if node == "w-3" && strings.Count(rec.callsFor("w-3"), "create") == 1 {
				calls++
				return !fail || calls <= 2 // passes its gate, then degrades
			}
			return true
		}}
		eng, j := soakEngine(clk, rec, g)
		rep, err := eng.Run(context.Background(), testPlan(version.Cattle, 1))
		var gateAt, soakAt time.Time
		for _, e := range j.Entries() {
			if e.Node == "w-3" && e.Step == rollout.StepHealth && e.Status == rollout.StatusDone && gateAt.IsZero() {
				gateAt = e.Time
			}
			if e.Node == "w-3" && e.Step == rollout.StepSoak && e.Status != rollout.StatusStarted {
				soakAt = e.Time
			}
		}
		switch {
		case !fail && (err != nil || rep.Finished.Before(gateAt.Add(5*time.Minute))):
			t.Fatalf("passing soak: err %v, finished %s, gate at %s: the run ended before the last soak", err, rep.Finished, gateAt)
		case fail && (err == nil || rep.Node("w-3").Outcome != rollout.OutcomeRolledBack || soakAt.IsZero()):
			t.Fatalf("failing soak: err %v, w-3 %s", err, rep.Node("w-3").Outcome)
		}
	}
}

// TestControlPlaneSoaksHoldTheNextControlPlaneNode: cp-2 starts only once
// cp-1's soak ended (etcd quorum); the last control-plane node's soak, in a
// Talos-only change, goes on while the first worker is changed; a soak
// limit (maxSoaking 1) makes the next worker wait for the previous soak.
func TestControlPlaneSoaksHoldTheNextControlPlaneNode(t *testing.T) {
	run := func(maxSoaking int) *journal.Memory {
		clk := clock.NewVirtual(time.Unix(0, 0))
		eng, j := soakEngine(clk, newRecorder(clk), &gate{fn: alwaysPass})
		eng.Policy.MaxSoaking, eng.Policy.WorkerSoak = maxSoaking, 10*time.Minute
		if _, err := eng.Run(context.Background(), selfPlan("")); err != nil {
			t.Fatal(err)
		}
		return j
	}
	j := run(0)
	at := func(node string, step rollout.Step, st rollout.Status) time.Time {
		for _, e := range j.Entries() {
			if e.Node == node && e.Step == step && e.Status == st {
				return e.Time
			}
		}
		t.Fatalf("no %s %s %s in the journal", node, step, st)
		return time.Time{}
	}
	if cp1, cp2 := at("cp-1", rollout.StepSoak, rollout.StatusDone), at("cp-2", rollout.StepPreflight, rollout.StatusStarted); cp2.Before(cp1) {
		t.Errorf("cp-2 started at %s, before cp-1's soak ended at %s", cp2, cp1)
	}
	if cp2, w1 := at("cp-2", rollout.StepSoak, rollout.StatusDone), at("w-1", rollout.StepPreflight, rollout.StatusStarted); !w1.Before(cp2) {
		t.Errorf("w-1 waited for the last control-plane node's soak (%s >= %s)", w1, cp2)
	}
	if w1, w2 := at("w-1", rollout.StepSoak, rollout.StatusDone), at("w-2", rollout.StepPreflight, rollout.StatusStarted); !w2.Before(w1) {
		t.Errorf("no limit: w-2 waited for w-1's soak (%s >= %s)", w2, w1)
	}
	j = run(1)
	if w1, w2 := at("w-1", rollout.StepSoak, rollout.StatusDone), at("w-2", rollout.StepPreflight, rollout.StatusStarted); w2.Before(w1) {
		t.Errorf("maxSoaking 1: w-2 started at %s, before w-1's soak ended at %s", w2, w1)
	}
}
