package rollout_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/version"
)

// hookRec is a stub hook runner and silencer: it records what the engine
// asks, in order, into the recorder's calls (so they interleave with
// cordon and the rest), and fails the hooks it is told to.
type hookRec struct {
	rec  *recorder
	has  []rollout.HookPoint
	fail map[string]bool // "point node"
	mu   sync.Mutex
	env  map[string]map[string]string
}

func (h *hookRec) Has(p rollout.HookPoint) bool { return slices.Contains(h.has, p) }
func (h *hookRec) RunHook(_ context.Context, c rollout.HookCall) error {
	h.mu.Lock()
	if h.env == nil {
		h.env = map[string]map[string]string{}
	}
	h.env[string(c.Point)+" "+c.Node] = c.Env
	h.mu.Unlock()
	_ = h.rec.do("hook:"+string(c.Point), c.Node)
	if h.fail[string(c.Point)+" "+c.Node] {
		return errors.New("exit 1")
	}
	return nil
}
func (h *hookRec) Silence(_ context.Context, node string) (string, error) {
	return "s-" + node, h.rec.do("silence", node)
}
func (h *hookRec) Expire(_ context.Context, node string) (bool, error) {
	return true, h.rec.do("unsilence", node)
}
func (h *hookRec) ExpireAll(context.Context) error { return h.rec.do("unsilence-all", "-") }

// TestHooksAndSilencesAroundEachNode: a node is silenced before its
// cordon and unsilenced once it passed its gate and its afterNode hook;
// beforeNode runs before anything touches it; beforeRun before the
// templates, afterRun at the end with the result; the run's silences all
// end with it.
func TestHooksAndSilencesAroundEachNode(t *testing.T) {
	clk := clock.NewVirtual(time.Unix(0, 0))
	rec := newRecorder(clk)
	eng, _ := newEngine(clk, rec, &gate{fn: alwaysPass})
	h := &hookRec{rec: rec, has: []rollout.HookPoint{rollout.HookBeforeRun, rollout.HookBeforeNode, rollout.HookAfterNode, rollout.HookAfterRun}}
	eng.Hooks, eng.Silences = h, h
	rep, err := eng.Run(context.Background(), testPlan(version.Cattle, 1))
	if err != nil {
		t.Fatal(err)
	}
	want := "hook:beforeNode, silence, cordon, drain, destroy, delete-node, create@v1.12.0, wait-ready@v1.12.0, uncordon, hook:afterNode, unsilence"
	if got := rec.callsFor("w-2"); got != want {
		t.Fatalf("w-2: %q, want %q", got, want)
	}
	if rec.calls[0] != "hook:beforeRun " || rec.calls[1] != "templates v1.12.0" {
		t.Fatalf("the run starts with %q", rec.calls[:2])
	}
	last := rec.calls[len(rec.calls)-2:]
	if last[0] != "unsilence-all -" || last[1] != "hook:afterRun " {
		t.Fatalf("the run ends with %q", last)
	}
	if e := h.env["afterRun "]; e["DROVER_RESULT"] != "succeeded" || e["DROVER_TO_TALOS"] != "v1.12.0" || e["DROVER_RUN_ID"] != "t" {
		t.Fatalf("afterRun's environment: %v", e)
	}
	if e := h.env["beforeNode w-2"]; e["DROVER_NODE"] != "w-2" || e["DROVER_FROM_TALOS"] != "v1.11.3" || e["DROVER_STRATEGY"] != "cattle" {
		t.Fatalf("beforeNode's environment: %v", e)
	}
	if len(rep.Hooks) != 2+2*4 {
		t.Fatalf("%d hooks reported: %+v", len(rep.Hooks), rep.Hooks)
	}
}

// TestFailingHooks: a failing beforeRun blocks before any change; a
// failing beforeNode blocks with that node untouched (exit 4 even after
// other nodes changed); a failing afterNode fails the node's gate: it is
// rolled back (silenced meanwhile) and the run halts; afterRun runs in
// every case, told the result, and its failure changes no result.
func TestFailingHooks(t *testing.T) {
	tests := []struct {
		name       string
		fail       string
		wantResult rollout.Result
		wantNode   map[string]rollout.Outcome
		wantCalls  map[string]string
	}{
		{"beforeRun", "beforeRun ", rollout.ResultBlocked, map[string]rollout.Outcome{"cp-1": rollout.OutcomeUntouched}, map[string]string{"cp-1": ""}},
		{"beforeNode", "beforeNode w-2", rollout.ResultBlocked,
			map[string]rollout.Outcome{"w-1": rollout.OutcomeUpgraded, "w-2": rollout.OutcomeUntouched, "w-3": rollout.OutcomeUntouched},
			map[string]string{"w-2": "hook:beforeNode"}},
		{"afterNode", "afterNode w-1", rollout.ResultHalted,
			map[string]rollout.Outcome{"w-1": rollout.OutcomeRolledBack, "w-2": rollout.OutcomeUntouched},
			map[string]string{"w-1": "hook:beforeNode, silence, cordon, drain, destroy, delete-node, create@v1.12.0, wait-ready@v1.12.0, uncordon, hook:afterNode, " +
				"silence, cordon, drain, destroy, delete-node, create@v1.11.3, wait-ready@v1.11.3, uncordon, unsilence"}},
		{"afterRun", "afterRun ", rollout.ResultSucceeded, map[string]rollout.Outcome{"w-3": rollout.OutcomeUpgraded}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewVirtual(time.Unix(0, 0))
			rec := newRecorder(clk)
			eng, _ := newEngine(clk, rec, &gate{fn: alwaysPass})
			h := &hookRec{rec: rec, fail: map[string]bool{tc.fail: true}, has: []rollout.HookPoint{rollout.HookBeforeRun, rollout.HookBeforeNode, rollout.HookAfterNode, rollout.HookAfterRun}}
			eng.Hooks, eng.Silences = h, h
			rep, err := eng.Run(context.Background(), testPlan(version.Cattle, 1))
			if rep.Result != tc.wantResult || (err == nil) != (tc.wantResult == rollout.ResultSucceeded) {
				t.Fatalf("result %s, err %v", rep.Result, err)
			}
			var he *rollout.HookError
			if err != nil && !errors.As(err, &he) {
				t.Errorf("the error is no HookError: %v", err)
			}
			for n, o := range tc.wantNode {
				if got := rep.Node(n).Outcome; got != o {
					t.Errorf("%s: %s, want %s", n, got, o)
				}
			}
			for n, c := range tc.wantCalls {
				if got := rec.callsFor(n); got != c {
					t.Errorf("%s: %q, want %q", n, got, c)
				}
			}
			if e := h.env["afterRun "]; e["DROVER_RESULT"] != string(tc.wantResult) {
				t.Errorf("afterRun told %q", e["DROVER_RESULT"])
			}
			failed := 0
			for _, hr := range rep.Hooks {
				if hr.Status == rollout.StatusFailed {
					failed++
					if !strings.Contains(hr.Detail, "exit 1") || fmt.Sprint(hr.Point)+" "+hr.Node != tc.fail {
						t.Errorf("reported: %+v", hr)
					}
				}
			}
			if failed != 1 {
				t.Errorf("%d failed hooks reported: %+v", failed, rep.Hooks)
			}
		})
	}
}

// TestAResumeRunsNoFinishedHookAgain: hooks the journal shows succeeded
// are not run again by the resumed run; the ones it shows started are.
func TestAResumeRunsNoFinishedHookAgain(t *testing.T) {
	clk := clock.NewVirtual(time.Unix(0, 0))
	rec := newRecorder(clk)
	eng, j := newEngine(clk, rec, &gate{fn: alwaysPass})
	h := &hookRec{rec: rec, fail: map[string]bool{"beforeNode w-2": true}, has: []rollout.HookPoint{rollout.HookBeforeRun, rollout.HookBeforeNode}}
	eng.Hooks = h
	p := testPlan(version.Cattle, 1)
	if _, err := eng.Run(context.Background(), p); err == nil {
		t.Fatal("the failing beforeNode hook did not stop the run")
	}
	st, err := rollout.ReadResume(j.Entries())
	if err != nil {
		t.Fatal(err)
	}
	if !st.HooksDone[rollout.HookKey(rollout.HookBeforeRun, "")] || !st.HooksDone[rollout.HookKey(rollout.HookBeforeNode, "w-1")] || st.HooksDone[rollout.HookKey(rollout.HookBeforeNode, "w-2")] {
		t.Fatalf("hooks done: %v", st.HooksDone)
	}
	if ns := st.Nodes["w-2"]; ns.Halted || ns.Done || (ns.ResumeAt != rollout.StepPreflight && ns.ResumeAt != rollout.StepEtcdGuard) {
		t.Fatalf("w-2 after its failed hook: %+v (untouched: it starts again before its cordon)", ns)
	}
	rec2 := newRecorder(clk)
	eng2, _ := newEngine(clk, rec2, &gate{fn: alwaysPass})
	eng2.Journal = j
	eng2.Resume = st
	eng2.Hooks = &hookRec{rec: rec2, has: h.has}
	if _, err := eng2.Run(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	var hooks []string
	for _, c := range rec2.calls {
		if strings.HasPrefix(c, "hook:") {
			hooks = append(hooks, c)
		}
	}
	if strings.Join(hooks, ", ") != "hook:beforeNode w-2, hook:beforeNode w-3" {
		t.Fatalf("the resumed run ran %q", hooks)
	}
}
