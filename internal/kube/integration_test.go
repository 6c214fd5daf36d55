package kube_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/prox-ops/drover/internal/assemble"
	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/health"
	"github.com/prox-ops/drover/internal/journal"
	"github.com/prox-ops/drover/internal/kube"
	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/testenv"
	"github.com/prox-ops/drover/internal/version"
)

// These tests run against a real kube-apiserver, etcd, kube-scheduler and
// kube-controller-manager (disruption, replicaset, deployment, node
// lifecycle, pod GC). Only the kubelets are simulated (testenv.Kubelets),
// on the wall clock.

var env *testenv.Env

func TestMain(m *testing.M) { os.Exit(testenv.Main(m, &env)) }

// client is drover's Kubernetes operations as the CLI assembles them:
// the production client, production's eviction retry and polls.
func client() *kube.Client {
	return assemble.KubeClient(config.Defaults(), assemble.Adapters{Kube: env.Drover, Clock: clock.Real{}})
}

func nodes(t *testing.T, k *testenv.Kubelets, talos string, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := k.AddNode(context.Background(), testenv.NodeSpec{Name: n, Talos: talos, Kubelet: "v1.34.1"}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { env.DeleteNodes(names...) })
}

func podsOn(t *testing.T, ns, node string) int {
	t.Helper()
	pods, err := env.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		t.Fatal(err)
	}
	return len(pods.Items)
}

func TestCordonAndUncordonAreIdempotent(t *testing.T) {
	testenv.Require(t, env)
	ctx := context.Background()
	k := testenv.NewKubelets(env.Client, "none")
	defer k.Close()
	nodes(t, k, "v1.11.3", "idem-1")
	c := client()
	for i, step := range []struct {
		op   func(context.Context, string) error
		want bool
	}{{c.Cordon, true}, {c.Cordon, true}, {c.Uncordon, false}, {c.Uncordon, false}} {
		if err := step.op(ctx, "idem-1"); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		id, _ := c.Identity(ctx, "idem-1")
		if id.Unschedulable != step.want {
			t.Fatalf("step %d: unschedulable=%v, want %v", i, id.Unschedulable, step.want)
		}
	}
	if err := c.Cordon(ctx, "no-such-node"); !apierrors.IsNotFound(errors.Unwrap(err)) && !strings.Contains(err.Error(), "not found") {
		t.Fatalf("cordon of a missing node: %v", err)
	}
}

// TestDrainHonoursPDB: a node holds 2 of 3 replicas under minAvailable 2.
// The drain evicts one, is refused (429) for the other until the first
// replacement is Ready elsewhere, then completes; a sampler checks that
// fewer than 2 replicas are never Ready.
func TestDrainHonoursPDB(t *testing.T) {
	testenv.Require(t, env)
	ctx := context.Background()
	ns := env.Namespace(t, "drain-pdb")
	k := testenv.NewKubelets(env.Client, ns)
	defer k.Close()
	nodes(t, k, "v1.11.3", "dp-1", "dp-2")
	env.WaitSchedulable(t, "dp-1", "dp-2")
	env.Deployment(t, ns, "web", 3, false)
	env.PDB(t, ns, "web", 2)
	env.WaitReplicas(t, ns, "web", 3)
	if got := podsOn(t, ns, "dp-1"); got != 2 {
		t.Fatalf("dp-1 holds %d web pods, the fixture needs 2", got)
	}
	env.PDBSettled(t, ns, "web", 1)
	nodes(t, k, "v1.11.3", "dp-3") // room for the replacements

	var minReady atomic.Int64
	minReady.Store(3)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if n, err := env.ReadyPods(ctx, ns, "web"); err == nil && int64(n) < minReady.Load() {
				minReady.Store(int64(n))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()

	c := client()
	var refused atomic.Int32
	c.OnEvict = func(_, _ string, err error) {
		if apierrors.IsTooManyRequests(err) {
			refused.Add(1)
		}
	}
	if err := c.Cordon(ctx, "dp-1"); err != nil {
		t.Fatal(err)
	}
	err := c.Drain(ctx, "dp-1", time.Minute, nil)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("drain: %v", err)
	}
	if got := podsOn(t, ns, "dp-1"); got != 0 {
		t.Fatalf("%d web pods left on the drained node", got)
	}
	if refused.Load() == 0 {
		t.Fatal("no eviction was refused: the two pods were not evicted one at a time")
	}
	if m := minReady.Load(); m < 2 {
		t.Fatalf("at one moment only %d web replicas were Ready; the budget says 2", m)
	}
	env.WaitReplicas(t, ns, "web", 3)
	t.Logf("evictions refused while the budget was spent: %d; fewest Ready replicas seen: %d", refused.Load(), minReady.Load())
}

func TestSingleReplicaPDBBlocksDrainAndPreflight(t *testing.T) {
	testenv.Require(t, env)
	ctx := context.Background()
	ns := env.Namespace(t, "drain-solo")
	k := testenv.NewKubelets(env.Client, ns)
	defer k.Close()
	nodes(t, k, "v1.11.3", "solo-1")
	env.Deployment(t, ns, "ledger", 1, false)
	env.PDB(t, ns, "ledger", 1)
	env.WaitReplicas(t, ns, "ledger", 1)
	env.PDBSettled(t, ns, "ledger", 0)

	c := client()
	blockers, err := c.DrainPreflight(ctx, []string{"solo-1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(blockers) != 1 || blockers[0].PDB != "ledger" || blockers[0].Workload != "Deployment/ledger" ||
		!strings.Contains(blockers[0].Reason, "single-replica") || !strings.Contains(blockers[0].Reason, "never allow") {
		t.Fatalf("blockers %+v", blockers)
	}

	if err := c.Cordon(ctx, "solo-1"); err != nil {
		t.Fatal(err)
	}
	var told []string
	err = c.Drain(ctx, "solo-1", 3*time.Second, func(msg string) { told = append(told, msg) })
	// The refusal is told once, while the drain waits, naming the budget.
	if len(told) != 1 || !strings.Contains(told[0], "refused by PodDisruptionBudget drain-solo/ledger (disruptions allowed: 0") {
		t.Fatalf("progress %q", told)
	}
	var dt *kube.DrainTimeoutError
	if !errors.As(err, &dt) {
		t.Fatalf("err = %v, want DrainTimeoutError", err)
	}
	if len(dt.Blocked) != 1 || dt.Blocked[0].PDB != "ledger" || !strings.HasPrefix(dt.Blocked[0].Pod, "ledger-") {
		t.Fatalf("blocked %+v", dt.Blocked)
	}
	if !strings.Contains(err.Error(), "PodDisruptionBudget drain-solo/ledger") {
		t.Fatalf("error %q does not name the budget", err)
	}
	if id, _ := c.Identity(ctx, "solo-1"); id.Unschedulable {
		t.Fatal("the node was left cordoned after the drain timed out")
	}
	if got := podsOn(t, ns, "solo-1"); got != 1 {
		t.Fatalf("the protected pod was removed (%d left)", got)
	}
}

func TestForceAfterTimeoutDeletesAroundThePDB(t *testing.T) {
	testenv.Require(t, env)
	ctx := context.Background()
	ns := env.Namespace(t, "drain-force")
	k := testenv.NewKubelets(env.Client, ns)
	defer k.Close()
	nodes(t, k, "v1.11.3", "force-1")
	env.Deployment(t, ns, "stuck", 1, false)
	env.PDB(t, ns, "stuck", 1)
	env.WaitReplicas(t, ns, "stuck", 1)
	env.PDBSettled(t, ns, "stuck", 0)
	c := client()
	c.ForceAfterTimeout = true
	if err := c.Cordon(ctx, "force-1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Drain(ctx, "force-1", 2*time.Second, nil); err != nil {
		t.Fatalf("forced drain: %v", err)
	}
	if got := podsOn(t, ns, "force-1"); got != 0 {
		t.Fatalf("%d pods left after a forced drain", got)
	}
}

func TestWaitReadyWantsTheNewNode(t *testing.T) {
	testenv.Require(t, env)
	ctx := context.Background()
	k := testenv.NewKubelets(env.Client, "none")
	defer k.Close()
	nodes(t, k, "v1.11.3", "wr-1")
	c := client()
	old, err := c.Identity(ctx, "wr-1")
	if err != nil {
		t.Fatal(err)
	}
	want := rollout.ReadyWant{NotUID: old.UID, Talos: version.MustParse("v1.12.0"), Kubelet: version.MustParse("v1.34.1")}

	// Only the old, Ready Node object: never counts.
	_, err = c.WaitReady(ctx, "wr-1", want, time.Second)
	var nr *kube.NodeNotReadyError
	if !errors.As(err, &nr) || !strings.Contains(nr.Why, "old Node object") {
		t.Fatalf("err = %v, want NodeNotReadyError about the old object", err)
	}

	// The old object reporting the new version still does not count.
	if err := k.AddNode(ctx, testenv.NodeSpec{Name: "wr-1", Talos: "v1.12.0", Kubelet: "v1.34.1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitReady(ctx, "wr-1", want, time.Second); !errors.As(err, &nr) {
		t.Fatalf("the old Node object (same UID) counted as the new node: %v", err)
	}

	// Replace it: delete, then register anew at the target a little later.
	if err := c.DeleteNode(ctx, "wr-1"); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(700 * time.Millisecond)
		_ = k.AddNode(context.Background(), testenv.NodeSpec{Name: "wr-1", Talos: "v1.12.0", Kubelet: "v1.34.1"})
	}()
	start := time.Now()
	got, err := c.WaitReady(ctx, "wr-1", want, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got.UID == old.UID || got.UID == "" || got.OSImage != "Talos (v1.12.0)" {
		t.Fatalf("got %+v", got)
	}
	t.Logf("new node seen %s after the wait started", time.Since(start).Round(time.Millisecond))

	// A wrong kubelet version never counts.
	want.NotUID, want.Kubelet = "", version.MustParse("v1.35.0")
	if _, err := c.WaitReady(ctx, "wr-1", want, 500*time.Millisecond); !errors.As(err, &nr) || !strings.Contains(nr.Why, "kubelet") {
		t.Fatalf("err = %v, want a kubelet version mismatch", err)
	}
}

func TestIdentityDiffFindsLostLabelTaintAndGPU(t *testing.T) {
	testenv.Require(t, env)
	ctx := context.Background()
	k := testenv.NewKubelets(env.Client, "none")
	defer k.Close()
	if err := k.AddNode(ctx, testenv.NodeSpec{Name: "gpu-1", Talos: "v1.11.3", Kubelet: "v1.34.1", GPUs: 1, Labels: map[string]string{"nvidia.com/gpu.present": "true"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.DeleteNodes("gpu-1") })
	patch := `{"spec":{"taints":[{"key":"dedicated","value":"gpu","effect":"NoSchedule"}]}}`
	if _, err := env.Client.CoreV1().Nodes().Patch(ctx, "gpu-1", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	c := client()
	before, err := c.Identity(ctx, "gpu-1")
	if err != nil {
		t.Fatal(err)
	}
	if before.Allocatable[kube.GPUResource] != "1" {
		t.Fatalf("fixture: allocatable %v", before.Allocatable)
	}
	// The node comes back without its label, its taint and its GPU.
	lose := `{"metadata":{"labels":{"nvidia.com/gpu.present":null}},"spec":{"taints":null}}`
	if _, err := env.Client.CoreV1().Nodes().Patch(ctx, "gpu-1", types.MergePatchType, []byte(lose), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := k.SetGPUs(ctx, "gpu-1", 0); err != nil {
		t.Fatal(err)
	}
	after, err := c.Identity(ctx, "gpu-1")
	if err != nil {
		t.Fatal(err)
	}
	d := kube.DiffIdentity(before, after, nil)
	lost := strings.Join(d.Lost, "\n")
	for _, want := range []string{"label nvidia.com/gpu.present=true is gone", "taint dedicated=gpu:NoSchedule is gone", "allocatable nvidia.com/gpu dropped 1 -> 0"} {
		if !strings.Contains(lost, want) {
			t.Errorf("lost %q lacks %q", lost, want)
		}
	}
	// And the Node Readiness check fails on it.
	g := &health.Gate{Client: env.Drover, Clock: clock.Real{}, Settings: config.Health{CriticalNamespaces: []string{}, Disable: withoutProbes.Disable}}
	n := plan.Node{Node: config.Node{Name: "gpu-1", Role: config.RoleWorker}}
	res := g.Check(ctx, rollout.GateInput{Node: n, Want: version.Pair{Talos: version.MustParse("v1.11.3")}, Before: &before})
	if f := res.Failed(); len(f) != 1 || f[0] != health.CheckNodeReadiness {
		t.Fatalf("health %+v", res)
	}
}

// TestCattleRunAgainstTheRealAPIServer runs the engine through internal/kube
// against the real control plane, with the hypervisor simulated: a 5-node
// cluster's four workers are replaced with zero PDB violations.
func TestCattleRunAgainstTheRealAPIServer(t *testing.T) {
	testenv.Require(t, env)
	ctx := context.Background()
	ns := env.Namespace(t, "cattle-run")
	k := testenv.NewKubelets(env.Client, ns)
	defer k.Close()
	inv := []config.Node{
		{Name: "cr-cp-1", Role: config.RoleControlPlane, ProxmoxHost: "a"},
		{Name: "cr-w-1", Role: config.RoleWorker, ProxmoxHost: "a"},
		{Name: "cr-w-2", Role: config.RoleWorker, ProxmoxHost: "b"},
		{Name: "cr-w-3", Role: config.RoleWorker, ProxmoxHost: "c"},
		{Name: "cr-w-4", Role: config.RoleWorker, ProxmoxHost: "d", GPUs: 1},
	}
	var names []string
	for _, n := range inv {
		names = append(names, n.Name)
		if err := k.AddNode(ctx, testenv.NodeSpec{Name: n.Name, ControlPlane: n.IsControlPlane(), GPUs: n.GPUs, Talos: "v1.11.3", Kubelet: "v1.34.1"}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { env.DeleteNodes(names...) })
	env.Deployment(t, ns, "web", 3, false)
	env.PDB(t, ns, "web", 2)
	env.Deployment(t, ns, "api", 4, true)
	env.PDB(t, ns, "api", 3)
	env.WaitReplicas(t, ns, "web", 3)
	env.WaitReplicas(t, ns, "api", 4)
	env.PDBSettled(t, ns, "web", 1)
	env.PDBSettled(t, ns, "api", 1)

	// Sample the real disruption controller's view throughout the run.
	var violations atomic.Int32
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, app := range []struct {
				name string
				min  int
			}{{"web", 2}, {"api", 3}} {
				if n, err := env.ReadyPods(ctx, ns, app.name); err == nil && n < app.min {
					violations.Add(1)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	from := version.Pair{Talos: version.MustParse("v1.11.3"), Kubernetes: version.MustParse("v1.34.1")}
	to := version.Pair{Talos: version.MustParse("v1.12.0"), Kubernetes: version.MustParse("v1.34.1")}
	// The workers: the control plane's etcd guard needs the Talos API,
	// which internal/cli's integration tests serve; here the budgets meet
	// production's drain.
	var workers []string
	for _, n := range inv[1:] {
		workers = append(workers, n.Name)
	}
	p := plan.Build(plan.Input{Nodes: inv, Strategy: version.Cattle, From: from, To: to, MaxParallelWorkers: 1, Only: workers})
	kc := client()
	hv := &testenv.Hypervisor{Kubelets: k, BootDelay: 300 * time.Millisecond}
	// The engine as the CLI assembles it, production's drain and polls
	// included; the configuration shortens the waits an operator can
	// (soaks, the gate's interval) and leaves out the checks the
	// simulated kubelets cannot answer.
	cfg := config.Defaults()
	cfg.Nodes = inv
	cfg.Health.Disable = withoutProbes.Disable
	cfg.Rollout.ControlPlaneSoak, cfg.Rollout.WorkerSoak, cfg.Rollout.HealthInterval = config.D(time.Second), config.D(time.Second), config.D(time.Second)
	cfg.Rollout.ReadyTimeout = config.D(time.Minute)
	eng := assemble.Engine(cfg, assemble.Adapters{Kube: env.Drover, Clock: clock.Real{}, Replacer: hv},
		assemble.Run{Journal: &journal.Memory{}, RunID: "it"})
	rep, err := eng.Run(ctx, p)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, n := range rep.Nodes {
		if !slices.Contains(workers, n.Name) {
			continue
		}
		if n.Outcome != rollout.OutcomeUpgraded {
			t.Errorf("%s: %s %s", n.Name, n.Outcome, n.Reason)
		}
		id, err := kc.Identity(ctx, n.Name)
		if err != nil || id.OSImage != "Talos (v1.12.0)" || !id.Ready || id.Unschedulable {
			t.Errorf("%s after the run: %+v %v", n.Name, id, err)
		}
	}
	if len(hv.Created) != 4 || len(hv.Destroyed) != 4 {
		t.Errorf("hypervisor created %v, destroyed %v", hv.Created, hv.Destroyed)
	}
	if v := violations.Load(); v != 0 {
		t.Fatalf("%d samples saw a budget violated", v)
	}
	t.Logf("4-worker cattle run against the real API server took %s", rep.Duration.Round(time.Millisecond))
}

// withoutProbes: the DNS and network probes and the GPU device plugin need
// a kubelet that runs containers, which this test's simulated kubelets do
// not; internal/health tests those checks on their own fixtures.
var withoutProbes = config.Health{Disable: []string{health.CheckDNS, health.CheckNetwork, health.CheckGPU}}

// TestARunnerPodIsDrainedLikeAnyControlledPod: a runner pod owned by a
// custom resource (an EphemeralRunner, as ARC's are) is evicted by a drain
// like any pod with a controller; at a hand-off, drover evicts the other
// runner pods of its scale set on its node, never its own.
func TestARunnerPodIsDrainedLikeAnyControlledPod(t *testing.T) {
	testenv.Require(t, env)
	k := testenv.NewKubelets(env.Client, "")
	defer k.Close()
	nodes(t, k, "v1.11.3", "runner-a", "runner-b")
	env.WaitSchedulable(t, "runner-a", "runner-b")
	ctx := context.Background()
	const ns = "runner-drain"
	self := env.RunnerPod(t, ns, "cattle-upgrade-self", "runner-b")
	env.RunnerPod(t, ns, "cattle-upgrade-idle-1", "runner-b")
	env.RunnerPod(t, ns, "cattle-upgrade-idle-2", "runner-a")
	c := client()
	evicted, err := c.EvictRunnerPeers(ctx, "runner-b", self)
	if err != nil || len(evicted) != 1 || evicted[0] != ns+"/cattle-upgrade-idle-1" {
		t.Fatalf("peers evicted %v, %v: want the idle runner on runner-b only", evicted, err)
	}
	testenv.Eventually(t, 30*time.Second, "the idle runner to leave runner-b", func() (bool, error) { return podsOn(t, ns, "runner-b") == 1, nil })
	if _, err := env.Client.CoreV1().Pods(ns).Get(ctx, self.Name, metav1.GetOptions{}); err != nil {
		t.Fatalf("drover's own pod went: %v", err)
	}
	if err := c.Cordon(ctx, "runner-a"); err != nil {
		t.Fatal(err)
	}
	if err := c.Drain(ctx, "runner-a", time.Minute, nil); err != nil {
		t.Fatalf("drain of a node with a runner pod: %v", err)
	}
	if n := podsOn(t, ns, "runner-a"); n != 0 {
		t.Fatalf("%d runner pods left on the drained node", n)
	}
}
