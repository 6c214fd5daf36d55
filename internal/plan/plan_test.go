package plan

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/version"
)

var (
	from = version.Pair{Talos: version.MustParse("v1.11.3"), Kubernetes: version.MustParse("v1.34.1")}
	to   = version.Pair{Talos: version.MustParse("v1.12.0"), Kubernetes: version.MustParse("v1.34.1")}
)

func randomInventory(r *rand.Rand) []config.Node {
	hosts := 1 + r.IntN(6)
	cps := []int{1, 3, 5}[r.IntN(3)]
	workers := r.IntN(40)
	var ns []config.Node
	for i := range cps + workers {
		role := config.RoleWorker
		if i < cps {
			role = config.RoleControlPlane
		}
		ns = append(ns, config.Node{
			Name: fmt.Sprintf("n-%d", r.IntN(1000)*100+i), Role: role,
			ProxmoxHost: fmt.Sprintf("host-%d", r.IntN(hosts)), GPUs: r.IntN(3) / 2,
		})
	}
	r.Shuffle(len(ns), func(i, j int) { ns[i], ns[j] = ns[j], ns[i] })
	return ns
}

// TestBuildProperties checks, over random inventories and batch sizes, the
// plan's invariants: control plane first and alone, no two nodes of one
// Proxmox host in a batch, batches within the size limit, every node once,
// and drover's own node (when it runs on one) last of its role and alone.
func TestBuildProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for iter := range 2000 {
		inv := randomInventory(r)
		par := 1 + r.IntN(5)
		self := ""
		if r.IntN(2) == 0 {
			self = inv[r.IntN(len(inv))].Name
		}
		p := Build(Input{Nodes: inv, Strategy: version.Cattle, From: from, To: to, MaxParallelWorkers: par, Self: self})
		checkSelfLast(t, iter, p, self)
		seen := map[string]int{}
		workersStarted := false
		for bi, b := range p.Batches {
			if len(b.Nodes) == 0 {
				t.Fatalf("iter %d: empty batch %d", iter, bi)
			}
			hosts := map[string]bool{}
			cp := 0
			for _, n := range b.Nodes {
				seen[n.Name]++
				if hosts[n.ProxmoxHost] {
					t.Fatalf("iter %d: batch %d holds two nodes of host %s", iter, bi, n.ProxmoxHost)
				}
				hosts[n.ProxmoxHost] = true
				if n.IsControlPlane() {
					cp++
					if workersStarted {
						t.Fatalf("iter %d: control-plane node %s after a worker batch", iter, n.Name)
					}
				}
			}
			if cp > 0 && len(b.Nodes) != 1 {
				t.Fatalf("iter %d: batch %d holds a control-plane node with %d others", iter, bi, len(b.Nodes)-1)
			}
			if cp == 0 {
				workersStarted = true
				if len(b.Nodes) > par {
					t.Fatalf("iter %d: batch %d has %d workers, max %d", iter, bi, len(b.Nodes), par)
				}
			}
		}
		for _, n := range inv {
			if seen[n.Name] != 1 {
				t.Fatalf("iter %d: node %s planned %d times", iter, n.Name, seen[n.Name])
			}
		}
		if p.NodeCount() != len(inv) {
			t.Fatalf("iter %d: %d planned of %d", iter, p.NodeCount(), len(inv))
		}
	}
}

// checkSelfLast: drover's own node is alone in its batch and no node of
// its role comes after it.
func checkSelfLast(t *testing.T, iter int, p Plan, self string) {
	t.Helper()
	if p.Self != self {
		t.Fatalf("iter %d: plan says drover runs on %q, want %q", iter, p.Self, self)
	}
	if self == "" {
		return
	}
	at := -1
	var role config.Role
	for bi, b := range p.Batches {
		for _, n := range b.Nodes {
			if n.Name == self {
				at, role = bi, n.Role
				if len(b.Nodes) != 1 {
					t.Fatalf("iter %d: drover's node %s shares batch %d with %d others", iter, self, bi, len(b.Nodes)-1)
				}
			} else if at >= 0 && n.Role == role {
				t.Fatalf("iter %d: %s (%s) comes after drover's own node %s", iter, n.Name, role, self)
			}
		}
	}
	if at < 0 {
		t.Fatalf("iter %d: drover's node %s is not planned", iter, self)
	}
}

func TestBuildIsDeterministicWhateverTheInventoryOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		inv := randomInventory(r)
		in := Input{Nodes: inv, Strategy: version.Cattle, From: from, To: to, MaxParallelWorkers: 3}
		a := Build(in)
		shuffled := append([]config.Node(nil), inv...)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		in.Nodes = shuffled
		if b := Build(in); !reflect.DeepEqual(a, b) {
			t.Fatalf("plans differ for the same inventory in another order")
		}
	}
}

func names(p Plan) [][]string {
	var out [][]string
	for _, b := range p.Batches {
		var bn []string
		for _, n := range b.Nodes {
			bn = append(bn, n.Name)
		}
		out = append(out, bn)
	}
	return out
}

func TestBuildOrder(t *testing.T) {
	inv := []config.Node{
		{Name: "w-10", Role: config.RoleWorker, ProxmoxHost: "a"},
		{Name: "w-2", Role: config.RoleWorker, ProxmoxHost: "a"},
		{Name: "w-1", Role: config.RoleWorker, ProxmoxHost: "b"},
		{Name: "cp-2", Role: config.RoleControlPlane, ProxmoxHost: "a"},
		{Name: "cp-1", Role: config.RoleControlPlane, ProxmoxHost: "b"},
		{Name: "cp-3", Role: config.RoleControlPlane, ProxmoxHost: "c"},
		{Name: "gpu-1", Role: config.RoleWorker, ProxmoxHost: "c", GPUs: 1},
	}
	tests := []struct {
		name string
		par  int
		self string
		want [][]string
	}{
		{"one at a time, natural order", 1, "", [][]string{{"cp-1"}, {"cp-2"}, {"cp-3"}, {"gpu-1"}, {"w-1"}, {"w-2"}, {"w-10"}}},
		{"three at once, never two of host a", 3, "", [][]string{{"cp-1"}, {"cp-2"}, {"cp-3"}, {"gpu-1", "w-1", "w-2"}, {"w-10"}}},
		{"drover's worker goes last, alone", 3, "w-1", [][]string{{"cp-1"}, {"cp-2"}, {"cp-3"}, {"gpu-1", "w-2"}, {"w-10"}, {"w-1"}}},
		{"drover's control-plane node goes last of the control plane", 1, "cp-1", [][]string{{"cp-2"}, {"cp-3"}, {"cp-1"}, {"gpu-1"}, {"w-1"}, {"w-2"}, {"w-10"}}},
		{"drover outside the inventory changes nothing", 1, "runner-vm", [][]string{{"cp-1"}, {"cp-2"}, {"cp-3"}, {"gpu-1"}, {"w-1"}, {"w-2"}, {"w-10"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := Build(Input{Nodes: inv, Strategy: version.Cattle, From: from, To: to, MaxParallelWorkers: tc.par, Self: tc.self})
			if got := names(p); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("batches = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestOnlyAndCanary(t *testing.T) {
	inv := []config.Node{
		{Name: "cp-1", Role: config.RoleControlPlane, ProxmoxHost: "a"},
		{Name: "cp-2", Role: config.RoleControlPlane, ProxmoxHost: "b"},
		{Name: "cp-3", Role: config.RoleControlPlane, ProxmoxHost: "c"},
		{Name: "w-1", Role: config.RoleWorker, ProxmoxHost: "a"},
		{Name: "w-2", Role: config.RoleWorker, ProxmoxHost: "b"},
		{Name: "w-3", Role: config.RoleWorker, ProxmoxHost: "a"},
	}
	kubeTo := version.Pair{Talos: version.MustParse("v1.12.0"), Kubernetes: version.MustParse("v1.35.0")}
	tests := []struct {
		name       string
		in         Input
		want       [][]string
		pauseAfter int
		canary     []string
		skipped    int
		problem    string
		first      bool
	}{
		{"only one worker", Input{Only: []string{"w-2"}}, [][]string{{"w-2"}}, 0, nil, 5, "", false},
		{"only keeps the rules", Input{Only: []string{"w-3", "cp-2", "w-1"}, MaxParallelWorkers: 2}, [][]string{{"cp-2"}, {"w-1"}, {"w-3"}}, 0, nil, 3, "", false},
		{"a canary worker goes first, then the pause", Input{Canary: 1}, [][]string{{"w-1"}, {"cp-1"}, {"cp-2"}, {"cp-3"}, {"w-2"}, {"w-3"}}, 1, []string{"w-1"}, 0, "", false},
		{"the configured canary", Input{Canary: 1, CanaryNodes: []string{"w-2", "w-1"}}, [][]string{{"w-2"}, {"cp-1"}, {"cp-2"}, {"cp-3"}, {"w-1"}, {"w-3"}}, 1, []string{"w-2"}, 0, "", false},
		{"two canaries in host-aware batches", Input{Canary: 2, MaxParallelWorkers: 2, CanaryNodes: []string{"w-1", "w-3"}}, [][]string{{"w-1"}, {"w-3"}, {"cp-1"}, {"cp-2"}, {"cp-3"}, {"w-2"}}, 2, []string{"w-1", "w-3"}, 0, "", false},
		{"a cattle Kubernetes change keeps the control plane first", Input{Canary: 1, To: kubeTo}, [][]string{{"cp-1"}, {"cp-2"}, {"cp-3"}, {"w-1"}, {"w-2"}, {"w-3"}}, 4, []string{"w-1"}, 0, "", false},
		{"a canary of everything does not pause, and says so", Input{Canary: 5, Only: []string{"w-1", "w-2"}}, [][]string{{"w-1"}, {"w-2"}}, 0, nil, 4, "changes only 2 worker(s)", false},
		{"a canary of only control-plane nodes", Input{Canary: 1, Only: []string{"cp-1"}}, [][]string{{"cp-1"}}, 0, nil, 5, "changes no worker", false},
		{"the configured canary is filled when its nodes are done", Input{Canary: 2, CanaryNodes: []string{"w-9", "w-3"}}, [][]string{{"w-3"}, {"w-1"}, {"cp-1"}, {"cp-2"}, {"cp-3"}, {"w-2"}}, 2, []string{"w-3", "w-1"}, 0, "", false},
		{"a resumed canary takes its own nodes only", Input{Canary: 1, CanaryNodes: []string{"w-2"}, CanaryOnly: true}, [][]string{{"w-2"}, {"cp-1"}, {"cp-2"}, {"cp-3"}, {"w-1"}, {"w-3"}}, 1, []string{"w-2"}, 0, "", false},
		{"a resumed canary done before a crash pauses first", Input{CanaryNodes: []string{"w-2"}, CanaryDone: true}, [][]string{{"cp-1"}, {"cp-2"}, {"cp-3"}, {"w-1"}, {"w-2"}, {"w-3"}}, 0, []string{"w-2"}, 0, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			in.Nodes, in.Strategy, in.From = inv, version.Cattle, from
			if in.To.Talos.IsZero() {
				in.To = to
			}
			p := Build(in)
			if got := names(p); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("batches = %v, want %v", got, tc.want)
			}
			if p.PauseAfter != tc.pauseAfter || !reflect.DeepEqual(p.Canary, tc.canary) || len(p.Skipped) != tc.skipped || p.PauseFirst != tc.first {
				t.Fatalf("pause after %d (first %v), canary %v, %d skipped", p.PauseAfter, p.PauseFirst, p.Canary, len(p.Skipped))
			}
			if !strings.Contains(p.CanaryProblem, tc.problem) || (tc.problem == "") != (p.CanaryProblem == "") {
				t.Errorf("canary problem %q, want %q", p.CanaryProblem, tc.problem)
			}
		})
	}
}

func TestETAFromMeasuredDurations(t *testing.T) {
	inv := []config.Node{
		{Name: "cp-1", Role: config.RoleControlPlane, ProxmoxHost: "a"},
		{Name: "w-1", Role: config.RoleWorker, ProxmoxHost: "a"},
		{Name: "w-2", Role: config.RoleWorker, ProxmoxHost: "b"},
	}
	steps := config.Defaults().Rollout.StepDurations
	configured := Build(Input{Nodes: inv, Strategy: version.Cattle, From: from, To: to, MaxParallelWorkers: 1, Steps: steps})
	if !strings.HasPrefix(configured.ETASource, "rollout.stepDurations") {
		t.Fatalf("source %q", configured.ETASource)
	}
	measured := Build(Input{Nodes: inv, Strategy: version.Cattle, From: from, To: to, MaxParallelWorkers: 1, Steps: steps,
		Measured:      map[string]time.Duration{"cattle/worker": 4 * time.Minute, "cattle/templates": 8 * time.Minute},
		MeasuredCount: map[string]int{"cattle/worker": 6, "cattle/templates": 3}})
	perNode := steps.Drain.Duration + steps.Destroy.Duration + steps.Create.Duration + steps.Health.Duration
	// The preflight gate, the templates, the control plane, the workers, the last look.
	if want := steps.Health.Duration + 8*time.Minute + perNode + 2*4*time.Minute + steps.Health.Duration; measured.ETA != want {
		t.Fatalf("ETA %s, want %s (templates and workers measured, the control plane configured)", measured.ETA, want)
	}
	if !strings.Contains(measured.ETASource, "cattle worker median 4m0s over 6") || !strings.Contains(measured.ETASource, "cattle templates median 8m0s over 3") {
		t.Fatalf("source %q", measured.ETASource)
	}
}

func TestBuildSkipsNodesAlreadyAtTarget(t *testing.T) {
	inv := []config.Node{
		{Name: "cp-1", Role: config.RoleControlPlane, ProxmoxHost: "a"},
		{Name: "w-1", Role: config.RoleWorker, ProxmoxHost: "a"},
		{Name: "w-2", Role: config.RoleWorker, ProxmoxHost: "b"},
	}
	p := Build(Input{Nodes: inv, Strategy: version.Cattle, From: from, To: to, MaxParallelWorkers: 1,
		Current: map[string]version.Pair{"w-1": to, "cp-1": from}})
	if got := names(p); !reflect.DeepEqual(got, [][]string{{"cp-1"}, {"w-2"}}) {
		t.Fatalf("batches = %v", got)
	}
	if len(p.Skipped) != 1 || p.Skipped[0].Node.Name != "w-1" || p.Skipped[0].Reason == "" {
		t.Fatalf("skipped = %+v", p.Skipped)
	}
}

func TestETA(t *testing.T) {
	steps := config.StepDurations{
		Drain: config.D(time.Minute), Destroy: config.D(20 * time.Second), Create: config.D(3 * time.Minute),
		Upgrade: config.D(2 * time.Minute), Template: config.D(10 * time.Minute), Health: config.D(40 * time.Second),
	}
	inv := []config.Node{
		{Name: "cp-1", Role: config.RoleControlPlane, ProxmoxHost: "a"},
		{Name: "w-1", Role: config.RoleWorker, ProxmoxHost: "a"},
		{Name: "w-2", Role: config.RoleWorker, ProxmoxHost: "b"},
	}
	gate := 40 * time.Second // one gate: the preflight's and the last look's
	kubeTo := version.Pair{Talos: to.Talos, Kubernetes: version.MustParse("v1.35.0")}
	tests := []struct {
		name            string
		strategy        version.Strategy
		to              version.Pair
		par, maxSoaking int
		workerSoak      time.Duration
		self            string
		want            time.Duration
	}{
		// The only control-plane node soaks while w-1 (5m) is changed.
		{"cattle sequential", version.Cattle, to, 1, 0, 0, "", gate + 10*time.Minute + 3*5*time.Minute + gate},
		{"cattle two workers at once", version.Cattle, to, 2, 0, 0, "", gate + 10*time.Minute + 2*5*time.Minute + gate},
		// 3 x (1m+2m+40s)
		{"pets sequential", version.Pets, to, 1, 0, 0, "", gate + 3*(3*time.Minute+40*time.Second) + gate},
		// A Kubernetes change: the control plane's soak holds the workers.
		{"cattle with a Kubernetes change", version.Cattle, kubeTo, 1, 0, 0, "", gate + 10*time.Minute + 3*5*time.Minute + 5*time.Minute + gate},
		// Worker soaks overlap the next worker; the last one is waited for.
		{"worker soaks in the background", version.Cattle, to, 1, 0, 5 * time.Minute, "", gate + 10*time.Minute + 3*5*time.Minute + 5*time.Minute + gate},
		// maxSoaking 1 and soaks of 10m: each worker waits for the soak
		// before it (w-1 for the control plane's 5m).
		{"one soak at a time", version.Cattle, to, 1, 1, 10 * time.Minute, "", gate + 10*time.Minute + 5*time.Minute + 5*time.Minute + 5*time.Minute + 10*time.Minute + 5*time.Minute + 10*time.Minute + gate},
		// A hand-off before w-1 (drover's): the continuation's preflight
		// gate, and w-2's soak taken over: gated again, soaking anew.
		{"a hand-off", version.Cattle, to, 1, 0, 5 * time.Minute, "w-1", gate + 10*time.Minute + 2*5*time.Minute + gate + gate + 5*time.Minute + 5*time.Minute + gate},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := Build(Input{Nodes: inv, Strategy: tc.strategy, From: from, To: tc.to, MaxParallelWorkers: tc.par, Steps: steps, ControlPlaneSoak: 5 * time.Minute,
				WorkerSoak: tc.workerSoak, MaxSoaking: tc.maxSoaking, Self: tc.self})
			if p.ETA != tc.want {
				t.Fatalf("ETA = %s, want %s", p.ETA, tc.want)
			}
		})
	}
}

func TestPetsPlanComparesTalosOnlyAndAddsAKubernetesPhase(t *testing.T) {
	inv := []config.Node{
		{Name: "cp-1", Role: config.RoleControlPlane, ProxmoxHost: "a"},
		{Name: "w-1", Role: config.RoleWorker, ProxmoxHost: "b"},
	}
	k8s := version.Pair{Talos: from.Talos, Kubernetes: version.MustParse("v1.34.2")}
	p := Build(Input{Nodes: inv, Strategy: version.Pets, From: from, To: k8s, MaxParallelWorkers: 1,
		Steps: config.StepDurations{Kubernetes: config.D(10 * time.Minute)}})
	if p.NodeCount() != 0 || !p.KubernetesPhase || p.Empty() || p.ETA != 10*time.Minute {
		t.Fatalf("a Kubernetes-only pets plan: %d nodes, phase %v, ETA %s", p.NodeCount(), p.KubernetesPhase, p.ETA)
	}
	c := Build(Input{Nodes: inv, Strategy: version.Cattle, From: from, To: version.Pair{Talos: to.Talos, Kubernetes: k8s.Kubernetes}, MaxParallelWorkers: 1})
	if c.KubernetesPhase || c.NodeCount() != 2 {
		t.Fatalf("cattle: phase %v, %d nodes", c.KubernetesPhase, c.NodeCount())
	}
}

// TestRollbackETA: a rollback is a drain, the change back and a gate; a
// cattle rollback under rebuilt templates builds the old ones first. Each
// step has its own duration, so a step counted wrong shows. Where the
// cluster measured its nodes (as the ETA uses), the rollback takes the
// longest measured node and the measured templates.
func TestRollbackETA(t *testing.T) {
	steps := config.StepDurations{
		Drain: config.D(1 * time.Second), Destroy: config.D(10 * time.Second), Create: config.D(100 * time.Second),
		Upgrade: config.D(1000 * time.Second), Template: config.D(10000 * time.Second), Health: config.D(100000 * time.Second),
	}
	nodes := []config.Node{{Name: "cp-1", Role: config.RoleControlPlane, ProxmoxHost: "a"}}
	measured := map[string]time.Duration{"cattle/controlplane": 7 * time.Minute, "cattle/worker": 5 * time.Minute, "cattle/templates": 9 * time.Minute, "pets/worker": 3 * time.Minute}
	for _, tc := range []struct {
		strategy version.Strategy
		rebuild  bool
		measured map[string]time.Duration
		want     time.Duration
	}{
		{version.Cattle, false, nil, 100111 * time.Second},
		{version.Cattle, true, nil, 110111 * time.Second},
		{version.Pets, false, nil, 101001 * time.Second},
		{version.NoChange, false, nil, 0},
		{version.Cattle, false, measured, 7 * time.Minute},
		{version.Cattle, true, measured, 16 * time.Minute},
		{version.Pets, false, measured, 3 * time.Minute},
	} {
		p := Build(Input{Nodes: nodes, Strategy: tc.strategy, From: from, To: to, Steps: steps, RebuildTemplates: tc.rebuild, MaxParallelWorkers: 1, Measured: tc.measured})
		if p.RollbackETA != tc.want {
			t.Errorf("%s rebuild=%v: rollback ETA %s, want %s", tc.strategy, tc.rebuild, p.RollbackETA, tc.want)
		}
	}
}

func TestNaturalLess(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		less bool
	}{
		{"k8s-work-2", "k8s-work-10", true},
		{"k8s-work-10", "k8s-work-2", false},
		{"k8s-work-2", "k8s-work-2", false},
		{"a", "b", true},
		{"b", "a", false},
		{"w1", "w1a", true},
		{"w1a", "w1", false},
		{"9", "10", true},
		{"10", "9", false},
		{"x9", "y1", true},
		{"", "a", true},
		{"a", "", false},
	} {
		if got := NaturalLess(tc.a, tc.b); got != tc.less {
			t.Errorf("NaturalLess(%q, %q) = %v", tc.a, tc.b, got)
		}
	}
}

// TestACanaryNeverTakesDroversNodeSilently: the canary is picked from the
// other workers, and a canary that can only be had with drover's own node
// is flagged for the run to refuse.
func TestACanaryNeverTakesDroversNodeSilently(t *testing.T) {
	inv := []config.Node{
		{Name: "cp-1", Role: config.RoleControlPlane, ProxmoxHost: "a"},
		{Name: "w-1", Role: config.RoleWorker, ProxmoxHost: "a"},
		{Name: "w-2", Role: config.RoleWorker, ProxmoxHost: "b"},
		{Name: "w-3", Role: config.RoleWorker, ProxmoxHost: "c"},
	}
	for _, tc := range []struct {
		name   string
		in     Input
		want   [][]string
		flag   bool
		canary []string
	}{
		{"the first other worker", Input{Canary: 1, Self: "w-1"}, [][]string{{"w-2"}, {"cp-1"}, {"w-3"}, {"w-1"}}, false, []string{"w-2"}},
		{"rollout.canary naming drover's node takes the next", Input{Canary: 1, Self: "w-1", CanaryNodes: []string{"w-3", "w-1"}}, [][]string{{"w-3"}, {"cp-1"}, {"w-2"}, {"w-1"}}, false, []string{"w-3"}},
		{"every worker: drover's node too, flagged", Input{Canary: 3, Self: "w-1"}, [][]string{{"w-2"}, {"w-3"}, {"w-1"}, {"cp-1"}}, true, []string{"w-2", "w-3", "w-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			in.Nodes, in.Strategy, in.From, in.To, in.MaxParallelWorkers = inv, version.Cattle, from, to, 1
			p := Build(in)
			if got := names(p); !reflect.DeepEqual(got, tc.want) || p.SelfInCanary != tc.flag || !reflect.DeepEqual(p.Canary, tc.canary) {
				t.Fatalf("batches %v, canary %v, flagged %v; want %v, %v, %v", got, p.Canary, p.SelfInCanary, tc.want, tc.canary, tc.flag)
			}
		})
	}
}

// TestSkipReasonsSayWhatIsTrue: a Kubernetes-only patch skips every node's
// own step but does not claim the nodes run the new Kubernetes already;
// a node that runs the whole target says so.
func TestSkipReasonsSayWhatIsTrue(t *testing.T) {
	nodes := []config.Node{{Name: "cp-1", Role: config.RoleControlPlane, ProxmoxHost: "a"}}
	at := func(talos, k8s string) version.Pair {
		return version.Pair{Talos: version.MustParse(talos), Kubernetes: version.MustParse(k8s)}
	}
	tests := []struct {
		name     string
		strategy version.Strategy
		from, to version.Pair
		want     string
	}{
		{"a Kubernetes-only patch", version.Pets, at("v1.11.3", "v1.34.1"), at("v1.11.3", "v1.34.2"),
			"already at Talos v1.11.3; its kubelet moves to Kubernetes v1.34.2 in the Kubernetes phase"},
		{"nothing to change", version.NoChange, at("v1.11.3", "v1.34.1"), at("v1.11.3", "v1.34.1"), "already at Talos v1.11.3, Kubernetes v1.34.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := Build(Input{Nodes: nodes, Strategy: tc.strategy, From: tc.from, To: tc.to, MaxParallelWorkers: 1})
			if len(p.Skipped) != 1 || p.Skipped[0].Reason != tc.want {
				t.Fatalf("skipped %+v, want %q", p.Skipped, tc.want)
			}
		})
	}
}
