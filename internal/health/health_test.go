package health

import (
	"context"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/kube"
	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/testenv"
	"github.com/prox-ops/drover/internal/version"
)

// The checks run against a real control plane (API server, controllers
// and scheduler), with the Flux and Rook CRDs installed. The module cache
// holds no upstream CRD files for them, so these are minimal CRDs of the
// same group, version and kind with a status subresource. The kubelets are
// simulated (testenv.Kubelets), including how a probe pod ends: a DNS
// probe resolves while kube-dns has ready endpoints and its node's DNS is
// not broken.
//
// Each test builds its own healthy slice of the cluster (nodes, namespace,
// Flux and Ceph objects named after it) and breaks what it needs; nothing
// is shared but CoreDNS and the CRDs.

var env *testenv.Env

func TestMain(m *testing.M) { os.Exit(testenv.Main(m, &env)) }

var sharedOnce sync.Once

// shared installs what every fixture uses: the CRDs, CoreDNS and the
// kube-dns Service (its EndpointSlices come from the real controller).
func shared(t *testing.T, dyn dynamic.Interface) {
	t.Helper()
	sharedOnce.Do(func() {
		ctx := context.Background()
		// The upstream CRDs, schemas and all (hack/crds.sh): an object the
		// gate reads must be one Flux or Rook would accept.
		env.InstallUpstreamCRDs(t, "ceph.rook.io_cephclusters.yaml", "kustomize.toolkit.fluxcd.io_kustomizations.yaml", "helm.toolkit.fluxcd.io_helmreleases.yaml")
		testenv.Eventually(t, 30*time.Second, "the CRDs to be served", func() (bool, error) {
			_, err := env.Client.Discovery().ServerResourcesForGroupVersion("helm.toolkit.fluxcd.io/v2")
			return err == nil, nil
		})
		env.Deployment(t, "kube-system", "coredns", 2, true)
		if _, err := env.Client.CoreV1().Services("kube-system").Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "kube-dns", Labels: map[string]string{"k8s-app": "kube-dns"}},
			Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "coredns"}, Ports: []corev1.ServicePort{{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}}},
		}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	})
}

type fixture struct {
	name string // the test's nodes, namespace and objects carry it
	dyn  dynamic.Interface
	k    *testenv.Kubelets
	g    *Gate
	gpu  plan.Node
	// brokenDNS names nodes whose DNS probes fail.
	mu        sync.Mutex
	brokenDNS map[string]bool
}

// newFixture builds a healthy slice of the cluster for one test: a
// control-plane node, a GPU node with its device plugin and a worker, a
// HEALTH_OK CephCluster with its CSI pods, Flux objects Ready at their
// generation, all in the namespace name; and waits until the gate passes.
func newFixture(t *testing.T, name string) *fixture {
	t.Helper()
	testenv.Require(t, env)
	ctx := context.Background()
	dyn, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	shared(t, dyn)
	f := &fixture{name: name, dyn: dyn, brokenDNS: map[string]bool{}}
	f.k = testenv.NewKubelets(env.Client, "") // only the pods on its nodes
	f.k.ProbeResult = f.probeResult
	nodes := []string{name + "-cp", name + "-gpu", name + "-w"}
	t.Cleanup(func() {
		f.k.Close()
		env.DeleteNodes(nodes...)
		for _, o := range []obj{f.ceph(), f.helmRelease(), f.kustomization()} {
			_ = dyn.Resource(o.gvr).Namespace(o.ns).Delete(context.Background(), o.name, metav1.DeleteOptions{})
		}
		purge(name)
	})
	for _, n := range []testenv.NodeSpec{
		{Name: nodes[0], ControlPlane: true, Talos: "v1.12.0", Kubelet: "v1.34.1"},
		{Name: nodes[1], Talos: "v1.12.0", Kubelet: "v1.34.1", GPUs: 1, Labels: map[string]string{"nvidia.com/gpu.present": "true"}},
		{Name: nodes[2], Talos: "v1.12.0", Kubelet: "v1.34.1"},
	} {
		if err := f.k.AddNode(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	env.WaitSchedulable(t, nodes...)
	// CoreDNS pods left on an earlier test's (deleted) nodes move here now,
	// not whenever the pod garbage collector gets to them.
	if pods, err := env.Client.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "app=coredns"}); err == nil {
		for _, p := range pods.Items {
			if !strings.HasPrefix(p.Spec.NodeName, name+"-") {
				_ = env.Client.CoreV1().Pods("kube-system").Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(0))})
			}
		}
	}
	env.Namespace(t, name)
	env.Deployment(t, name, "csi-rbdplugin-provisioner", 1, false)
	plugin := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "nvidia-device-plugin-" + nodes[1], Namespace: name},
		Spec:       corev1.PodSpec{NodeName: nodes[1], Containers: []corev1.Container{{Name: "plugin", Image: "registry.example/nvidia-device-plugin:1"}}},
	}
	if _, err := env.Client.CoreV1().Pods(name).Create(ctx, plugin, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.put(t, f.ceph(), cephStatus("HEALTH_OK", nil))
	f.put(t, f.kustomization(), fluxReady("True"))
	f.put(t, f.helmRelease(), fluxReady("True"))
	// The gate gets the client drover builds; the fixtures keep theirs.
	droverDyn, err := dynamic.NewForConfig(env.DroverConfig)
	if err != nil {
		t.Fatal(err)
	}
	f.g = &Gate{Client: env.Drover, Dynamic: droverDyn, Clock: clock.Real{}, Settings: config.Health{
		CriticalNamespaces: []string{"kube-system", name}, CheckTimeout: config.D(15 * time.Second),
	}, Inventory: []config.Node{{Name: nodes[1], GPUs: 1}}}
	f.gpu = plan.Node{Node: config.Node{Name: nodes[1], Role: config.RoleWorker, GPUs: 1}}
	f.waitHealthy(t)
	return f
}

// probeResult is the simulated kubelet running a probe: a DNS probe
// resolves while kube-dns has ready endpoints and the node's DNS works.
func (f *fixture) probeResult(p *corev1.Pod) (bool, string) {
	if p.Labels[ProbeLabel] != ProbeDNS {
		return true, ""
	}
	f.mu.Lock()
	broken := f.brokenDNS[p.Spec.NodeName]
	f.mu.Unlock()
	if broken {
		return false, ";; connection timed out; no servers could be reached"
	}
	slices, _ := env.Client.DiscoveryV1().EndpointSlices("kube-system").List(context.Background(), metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=kube-dns"})
	for _, s := range slices.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && *e.Conditions.Ready {
				return true, ""
			}
		}
	}
	return false, ";; connection timed out; no servers could be reached"
}

// purge removes a namespace and, at once, its pods (their nodes are gone,
// so no kubelet would finish their termination). A controller whose cache
// lags can still create a ReplicaSet or a pod after the first deletion,
// and testenv runs no namespace controller to sweep it: purge deletes
// until no pod is left and every controller is being deleted, so no
// leftover reaches another test's whole-cluster check.
func purge(ns string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	orphan := metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationOrphan)}
	now := metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(0))}
	clean := 0 // polls in a row that found nothing left
	_ = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_ = env.Client.AppsV1().Deployments(ns).DeleteCollection(ctx, orphan, metav1.ListOptions{})
		_ = env.Client.AppsV1().ReplicaSets(ns).DeleteCollection(ctx, orphan, metav1.ListOptions{})
		_ = env.Client.CoreV1().Pods(ns).DeleteCollection(ctx, now, metav1.ListOptions{})
		pods, err := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil || len(pods.Items) > 0 {
			clean = 0
			return false, nil
		}
		sets, err := env.Client.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			clean = 0
			return false, nil
		}
		for _, rs := range sets.Items {
			if rs.DeletionTimestamp == nil {
				clean = 0
				return false, nil
			}
		}
		clean++
		return clean >= 2, nil
	})
	_ = env.Client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
}

// useCache makes the fixture's gate read through a run's informer cache,
// as an upgrade's gate does, instead of one-shot paginated lists.
func (f *fixture) useCache(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c := NewCache(env.Drover)
	if err := c.Start(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	f.g.Reader = c
	f.waitHealthy(t)
}

func (f *fixture) waitHealthy(t *testing.T) {
	t.Helper()
	var last rollout.HealthResult
	testenv.Eventually(t, 60*time.Second, "the fixture to be healthy", func() (bool, error) {
		last = f.g.Check(context.Background(), f.input())
		return last.Passed(), nil
	})
}

type obj struct {
	gvr                        schema.GroupVersionResource
	ns, name, kind, apiVersion string
}

func (f *fixture) ceph() obj {
	return obj{CephClusterGVR, f.name, "rook-ceph", "CephCluster", "ceph.rook.io/v1"}
}

func (f *fixture) helmRelease() obj {
	return obj{HelmReleaseGVR, f.name, "cilium", "HelmRelease", "helm.toolkit.fluxcd.io/v2"}
}

func (f *fixture) kustomization() obj {
	return obj{KustomizationGVR, f.name, "apps", "Kustomization", "kustomize.toolkit.fluxcd.io/v1"}
}

func cephStatus(health string, details map[string]any) map[string]any {
	if details == nil {
		details = map[string]any{}
	}
	return map[string]any{"ceph": map[string]any{"health": health, "lastChecked": time.Now().UTC().Format(time.RFC3339), "details": details}}
}

func fluxReady(status string) map[string]any {
	return map[string]any{"observedGeneration": int64(1), "conditions": []any{map[string]any{
		"type": "Ready", "status": status, "reason": "Test", "message": "reconciliation " + map[string]string{"True": "succeeded", "False": "failed: install retries exhausted"}[status],
		"lastTransitionTime": time.Now().UTC().Format(time.RFC3339),
	}}}
}

// specOf is a spec the upstream schema of kind accepts, as prox-ops has.
func specOf(kind string) map[string]any {
	switch kind {
	case "Kustomization":
		return map[string]any{"interval": "10m", "path": "./kubernetes/apps", "prune": true,
			"sourceRef": map[string]any{"kind": "GitRepository", "name": "flux-system", "namespace": "flux-system"}}
	case "HelmRelease":
		return map[string]any{"interval": "30m", "chartRef": map[string]any{"kind": "OCIRepository", "name": "cilium"}}
	case "CephCluster":
		return map[string]any{"cephVersion": map[string]any{"image": "quay.io/ceph/ceph:v19.2.3"}, "dataDirHostPath": "/var/lib/rook",
			"mon": map[string]any{"count": int64(3)}}
	}
	return map[string]any{}
}

// put creates (once) and sets the status of a custom resource.
func (f *fixture) put(t *testing.T, o obj, status map[string]any) {
	t.Helper()
	ctx := context.Background()
	r := f.dyn.Resource(o.gvr).Namespace(o.ns)
	u, err := r.Get(ctx, o.name, metav1.GetOptions{})
	if err != nil {
		u = &unstructured.Unstructured{Object: map[string]any{"apiVersion": o.apiVersion, "kind": o.kind,
			"metadata": map[string]any{"name": o.name, "namespace": o.ns}, "spec": specOf(o.kind)}}
		if u, err = r.Create(ctx, u, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := status["observedGeneration"]; ok {
		status["observedGeneration"] = u.GetGeneration() // a Flux controller reconciled this generation
	}
	u.Object["status"] = status
	if _, err := r.UpdateStatus(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) input() rollout.GateInput {
	return rollout.GateInput{Node: f.gpu, Want: version.Pair{Talos: version.MustParse("v1.12.0"), Kubernetes: version.MustParse("v1.34.1")}}
}

// crashLooping creates a pod on node in ns whose container crash-loops.
func crashLooping(t *testing.T, ns, name, node string, restarts int32) {
	t.Helper()
	ctx := context.Background()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}}}
	if _, err := env.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, name+" running", func() (bool, error) {
		p, err := env.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning, nil
	})
	setRestarts(t, ns, name, restarts, true)
}

// setRestarts sets a pod's container restart count; crashing puts it in
// CrashLoopBackOff, otherwise it is Running (caught up between crashes).
func setRestarts(t *testing.T, ns, name string, restarts int32, crashing bool) {
	t.Helper()
	ctx := context.Background()
	p, err := env.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}
	if crashing {
		st = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}
	}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", RestartCount: restarts, Ready: !crashing, State: st}}
	if _, err := env.Client.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func diagnostics(res rollout.HealthResult) string {
	var b strings.Builder
	for _, c := range res.Checks {
		for _, d := range c.Diagnostics {
			b.WriteString(d + "\n")
		}
	}
	return b.String()
}

func TestHealthyFixturePassesTenTimesInARow(t *testing.T) {
	f := newFixture(t, "h-healthy")
	for i := range 10 {
		if i == 5 {
			f.useCache(t) // and the same through a run's cache
		}
		res := f.g.Check(context.Background(), f.input())
		if !res.Passed() {
			t.Fatalf("run %d: %s\n%s", i+1, res.Summary(f.gpu.Name), diagnostics(res))
		}
		for _, c := range res.Checks {
			if c.Skipped {
				t.Fatalf("run %d: %s skipped (%s): the fixture must exercise every check", i+1, c.Name, c.SkipReason)
			}
		}
	}
}

// Each check fails on its broken fixture, with diagnostics that say where.
func TestEachCheckFailsOnItsBrokenFixture(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		check  string
		breaks func(t *testing.T, f *fixture)
		want   string
	}{
		{CheckDNS, func(t *testing.T, f *fixture) {
			f.mu.Lock()
			f.brokenDNS[f.gpu.Name] = true
			f.mu.Unlock()
		}, "does not resolve from a pod on h-dns-gpu"},
		{CheckFlux, func(t *testing.T, f *fixture) { f.put(t, f.helmRelease(), fluxReady("False")) }, "HelmRelease h-flux/cilium: Ready=False"},
		{CheckStorage, func(t *testing.T, f *fixture) {
			f.put(t, f.ceph(), cephStatus("HEALTH_WARN", map[string]any{"OSD_DOWN": map[string]any{"message": "1 osds down", "severity": "HEALTH_WARN"}}))
		}, "HEALTH_WARN: OSD_DOWN: 1 osds down"},
		{CheckGPU, func(t *testing.T, f *fixture) {
			if err := f.k.SetGPUs(ctx, f.gpu.Name, 0); err != nil {
				t.Fatal(err)
			}
		}, "allocatable nvidia.com/gpu 0"},
		{CheckPodHealth, func(t *testing.T, f *fixture) { crashLooping(t, f.name, "crasher", f.gpu.Name, 6) },
			"pod h-pod/crasher on h-pod-gpu: container app is in CrashLoopBackOff"},
		{CheckScheduling, func(t *testing.T, f *fixture) {
			// Tainted NoSchedule: only the scheduler minds it (probes on
			// the node tolerate everything; this one does not).
			node, err := env.Client.CoreV1().Nodes().Get(ctx, f.gpu.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			node.Spec.Taints = append(node.Spec.Taints, corev1.Taint{Key: "example.com/broken", Effect: corev1.TaintEffectNoSchedule})
			if _, err := env.Client.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}, "could not be scheduled onto h-sched-gpu"},
	}
	names := map[string]string{CheckDNS: "h-dns", CheckFlux: "h-flux", CheckStorage: "h-ceph", CheckGPU: "h-gpu", CheckPodHealth: "h-pod", CheckScheduling: "h-sched"}
	for _, tc := range tests {
		t.Run(tc.check, func(t *testing.T) {
			f := newFixture(t, names[tc.check])
			f.useCache(t) // what an upgrade's gate reads through
			tc.breaks(t, f)
			var res rollout.HealthResult
			testenv.Eventually(t, 45*time.Second, tc.check+" to fail", func() (bool, error) {
				res = f.g.Check(ctx, f.input())
				return strings.Contains(diagnostics(res), tc.want), nil
			})
			if got := res.Failed(); len(got) != 1 || got[0] != tc.check {
				t.Fatalf("failed %v, want only %s\n%s", got, tc.check, diagnostics(res))
			}
			if !strings.HasPrefix(res.Summary(f.gpu.Name), "❌ Node "+f.gpu.Name+": 7/8 health checks passed (failed: "+tc.check+")") {
				t.Errorf("summary %q", res.Summary(f.gpu.Name))
			}
		})
	}
}

func TestCephWarnWithAnAcceptedReasonPassesAndHealthErrIsCritical(t *testing.T) {
	f := newFixture(t, "h-cephwarn")
	ctx := context.Background()
	f.put(t, f.ceph(), cephStatus("HEALTH_WARN", map[string]any{"MON_CLOCK_SKEW": map[string]any{"message": "clock skew detected on mon.b", "severity": "HEALTH_WARN"}}))
	f.g.Settings.CephAcceptWarn = []string{"MON_CLOCK_SKEW"}
	if res := f.g.Check(ctx, f.input()); !res.Passed() {
		t.Fatalf("%s", res.Summary(f.gpu.Name))
	}
	f.g.Settings.CephAcceptWarn = nil
	res := f.g.Check(ctx, f.input())
	if res.Passed() {
		t.Fatal("HEALTH_WARN passed without an accepted reason")
	}
	// Before the run, a warning is known, not blocking.
	if res := f.g.Check(ctx, rollout.GateInput{Preflight: true}); !res.Passed() || len(res.Known()) == 0 {
		t.Fatalf("preflight with HEALTH_WARN: %s", res.Summary(""))
	}
	// HEALTH_ERR blocks even before the run, and says why from status.ceph.details.
	f.put(t, f.ceph(), cephStatus("HEALTH_ERR", map[string]any{"MON_DOWN": map[string]any{"message": "1/3 mons down, quorum a,b", "severity": "HEALTH_ERR"}}))
	res = f.g.Check(ctx, rollout.GateInput{Preflight: true})
	if res.Passed() || !strings.Contains(diagnostics(res), `health is "HEALTH_ERR": MON_DOWN: 1/3 mons down, quorum a,b`) {
		t.Fatalf("preflight with HEALTH_ERR: %s\n%s", res.Summary(""), diagnostics(res))
	}
}

func TestSuspendedFluxObjectsAreListedNotFailed(t *testing.T) {
	f := newFixture(t, "h-suspend")
	ctx := context.Background()
	r := f.dyn.Resource(HelmReleaseGVR).Namespace(f.name)
	if _, err := r.Patch(ctx, "cilium", types.MergePatchType, []byte(`{"spec":{"suspend":true}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	res := f.g.Check(ctx, f.input())
	var flux *rollout.CheckResult
	for i, c := range res.Checks {
		if c.Name == CheckFlux {
			flux = &res.Checks[i]
		}
	}
	if flux == nil || !flux.Passed || len(flux.Notes) != 1 || !strings.Contains(flux.Notes[0], "HelmRelease h-suspend/cilium is suspended") {
		t.Fatalf("flux check %+v", flux)
	}
}

func TestCustomCELCheck(t *testing.T) {
	f := newFixture(t, "h-cel")
	f.g.Settings.Custom = []config.CustomCheck{
		{Name: "Ceph OK", APIVersion: "ceph.rook.io/v1", Kind: "CephCluster", Namespace: f.name, Expression: "status.ceph.health in ['HEALTH_OK']"},
		{Name: "Two CoreDNS", APIVersion: "apps/v1", Kind: "Deployment", Namespace: "kube-system", ObjectName: "coredns", Expression: "spec.replicas >= 3"},
	}
	res := f.g.Check(context.Background(), f.input())
	got := map[string]bool{}
	for _, c := range res.Checks {
		got[c.Name] = c.Passed
	}
	if len(got) != 10 || !got["Ceph OK"] || got["Two CoreDNS"] {
		t.Fatalf("custom checks %v", got)
	}
}

func TestProbePodsAreCleanedUp(t *testing.T) {
	f := newFixture(t, "h-cleanup")
	res := f.g.Check(context.Background(), f.input())
	ran := 0
	for _, c := range res.Checks {
		if probing(c.Name) && c.Passed {
			ran++
		}
	}
	if ran != 3 {
		t.Fatalf("%d probes passed, want DNS, network and scheduling", ran)
	}
	pods, err := env.Client.CoreV1().Pods("drover").List(context.Background(), metav1.ListOptions{LabelSelector: ProbeLabel})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			t.Errorf("probe pod %s left behind", p.Name)
		}
	}
}

// TestRestartsSinceThePreviousRunFail: a container that crash-loops
// between polls, caught Running each time, fails the run after its restart
// count rose, and passes once it holds.
func TestRestartsSinceThePreviousRunFail(t *testing.T) {
	f := newFixture(t, "h-flap")
	ctx := context.Background()
	crashLooping(t, f.name, "flapper", f.gpu.Name, 2)
	setRestarts(t, f.name, "flapper", 2, false)
	in := f.input()
	in.Memory = rollout.NewMemory()
	if res := f.g.Check(ctx, in); !res.Passed() {
		t.Fatalf("first run, nothing to compare with: %s\n%s", res.Summary(f.gpu.Name), diagnostics(res))
	}
	setRestarts(t, f.name, "flapper", 3, false) // crashed and came back between the runs
	res := f.g.Check(ctx, in)
	if res.Passed() || !strings.Contains(diagnostics(res), "container app restarted 1 times since the previous run of the gate") {
		t.Fatalf("a restart between runs passed: %s\n%s", res.Summary(f.gpu.Name), diagnostics(res))
	}
	if res := f.g.Check(ctx, in); !res.Passed() {
		t.Fatalf("no restart since: %s\n%s", res.Summary(f.gpu.Name), diagnostics(res))
	}
}

// TestTheBaselineKnowsWhatWasWrongBefore: a pod Pending before the run
// (under the grace then) crosses the grace during the run: against the
// baseline it is known, listed, and fails nothing; without it, it fails.
func TestTheBaselineKnowsWhatWasWrongBefore(t *testing.T) {
	f := newFixture(t, "h-baseline")
	ctx := context.Background()
	f.g.Settings.PendingGrace = config.D(2 * time.Second)
	stuck := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "stuck", Namespace: "default"},
		Spec: corev1.PodSpec{NodeSelector: map[string]string{"example.com/nowhere": "true"}, Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}}}
	if _, err := env.Client.CoreV1().Pods("default").Create(ctx, stuck, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Client.CoreV1().Pods("default").Delete(context.Background(), "stuck", metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(0))})
	})
	pre := f.g.Check(ctx, rollout.GateInput{Preflight: true})
	if !pre.Passed() || !strings.Contains(strings.Join(pre.Known(), "\n"), "pod default/stuck Pending") {
		t.Fatalf("preflight: %s, known %v", pre.Summary(""), pre.Known())
	}
	testenv.Eventually(t, 10*time.Second, "the pod to cross its grace", func() (bool, error) {
		return !f.g.Check(ctx, f.input()).Passed(), nil
	})
	in := f.input()
	in.Baseline = rollout.BaselineOf(pre)
	res := f.g.Check(ctx, in)
	if !res.Passed() || !strings.Contains(res.Summary(f.gpu.Name), "1 known before the run") {
		t.Fatalf("against the baseline: %s\n%s", res.Summary(f.gpu.Name), diagnostics(res))
	}
	// Something new still fails.
	crashLooping(t, f.name, "newcomer", f.gpu.Name, 1)
	if res := f.g.Check(ctx, in); res.Passed() {
		t.Fatal("a new crash-looping pod passed against the baseline")
	}
}

// TestTheWholeClusterChecksEveryNode: without a node the gate still looks
// at the pods on every node and the GPUs of every GPU node, and names the
// nodes that fail.
func TestTheWholeClusterChecksEveryNode(t *testing.T) {
	f := newFixture(t, "h-whole")
	ctx := context.Background()
	env.Namespace(t, "h-whole-apps")
	t.Cleanup(func() { purge("h-whole-apps") })
	crashLooping(t, "h-whole-apps", "crasher", f.name+"-w", 4)
	if err := f.k.SetGPUs(ctx, f.gpu.Name, 0); err != nil {
		t.Fatal(err)
	}
	res := f.g.Check(ctx, rollout.GateInput{})
	sum := res.Summary("")
	if res.Passed() || !strings.Contains(sum, "(failed: Pod Health, GPU Availability on h-whole-gpu, h-whole-w)") {
		t.Fatalf("summary %q\n%s", sum, diagnostics(res))
	}
	// Before the run neither is critical: both are known.
	if pre := f.g.Check(ctx, rollout.GateInput{Preflight: true}); !pre.Passed() || len(pre.Known()) != 2 {
		t.Fatalf("preflight %s, known %v", pre.Summary(""), pre.Known())
	}
	// A broken pod in a critical namespace blocks the run before any change.
	crashLooping(t, f.name, "critical-crasher", f.name+"-w", 4)
	if pre := f.g.Check(ctx, rollout.GateInput{Preflight: true}); pre.Passed() {
		t.Fatalf("a crash-looping pod of a critical namespace passed the preflight: %s", pre.Summary(""))
	}
}

// TestAProbeThatCannotRunSaysWhy: without the permission to create pods in
// its namespace, the probes fail with the verb, resource and namespace
// missing, critically (the preflight blocks).
func TestAProbeThatCannotRunSaysWhy(t *testing.T) {
	f := newFixture(t, "h-forbidden")
	ctx := context.Background()
	reader := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "h-forbidden-reader"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"nodes", "pods", "namespaces"}, Verbs: []string{"get", "list"}},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list"}},
		{APIGroups: []string{"ceph.rook.io", "kustomize.toolkit.fluxcd.io", "helm.toolkit.fluxcd.io"}, Resources: []string{"*"}, Verbs: []string{"list"}},
	}}
	if _, err := env.Client.RbacV1().ClusterRoles().Create(ctx, reader, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	kubeconfig := env.ServiceAccountKubeconfig(t, "h-forbidden-sa", "reader")
	if _, err := env.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "h-forbidden-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "h-forbidden-reader"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "h-forbidden-sa", Name: "reader"}},
	}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(rc)
	g := &Gate{Client: cs, Dynamic: f.dyn, Clock: clock.Real{}, Settings: f.g.Settings, Inventory: f.g.Inventory}
	res := g.Check(ctx, rollout.GateInput{Preflight: true})
	want := `drover may not create pods in namespace drover (grant create, get and delete on pods there; the kit's runner Role does)`
	if res.Passed() || !strings.Contains(diagnostics(res), want) || !strings.Contains(diagnostics(res), `cannot create resource "pods"`) {
		t.Fatalf("%s\n%s", res.Summary(""), diagnostics(res))
	}
}

// countingTransport counts the LIST requests that reach the API server.
type countingTransport struct {
	mu    sync.Mutex
	lists map[string]int
	next  http.RoundTripper
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodGet && r.URL.Query().Get("watch") != "true" && (strings.HasSuffix(r.URL.Path, "/pods") || strings.HasSuffix(r.URL.Path, "/nodes")) {
		c.mu.Lock()
		c.lists[r.URL.Path]++
		c.mu.Unlock()
	}
	return c.next.RoundTrip(r)
}

func (c *countingTransport) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.lists {
		n += v
	}
	return n
}

// TestAWarmCacheGateListsNothing: once a run's cache is warm, a node's gate
// sends no list of pods or nodes to the API server: its cost no longer
// grows with the cluster. One-shot lists say the same as the cache.
func TestAWarmCacheGateListsNothing(t *testing.T) {
	f := newFixture(t, "h-warm")
	ctx := context.Background()
	crashLooping(t, f.name, "crasher", f.gpu.Name, 6)
	cfg := rest.CopyConfig(env.DroverConfig)
	counter := &countingTransport{lists: map[string]int{}}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { counter.next = rt; return counter })
	client := kubernetes.NewForConfigOrDie(cfg)
	cache := NewCache(client)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := cache.Start(cctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	g := *f.g
	g.Client, g.Reader = client, cache
	g.Settings.Disable = []string{CheckDNS, CheckNetwork, CheckScheduling} // probes create pods: another cost
	lists := Lists{Client: env.Drover}
	var viaCache, viaLists rollout.HealthResult
	testenv.Eventually(t, 30*time.Second, "the cache to see the crash-looping pod", func() (bool, error) {
		viaCache = g.Check(ctx, f.input())
		return strings.Contains(diagnostics(viaCache), "crasher"), nil
	})
	warm := counter.count()
	for range 5 {
		viaCache = g.Check(ctx, f.input())
	}
	if n := counter.count() - warm; n != 0 {
		t.Fatalf("five gates on a warm cache sent %d lists of pods or nodes: %v", n, counter.lists)
	}
	g.Client, g.Reader = env.Drover, lists
	viaLists = g.Check(ctx, f.input())
	if a, b := viaCache.Summary(f.gpu.Name), viaLists.Summary(f.gpu.Name); a != b || diagnostics(viaCache) != diagnostics(viaLists) {
		t.Fatalf("the cache says\n%s\n%s\nthe lists say\n%s\n%s", a, diagnostics(viaCache), b, diagnostics(viaLists))
	}
}

// TestPodSecurityRestrictedProbesPass: the test API server admits pods
// as Talos does (enforce baseline, warn and audit restricted); in a probe
// namespace that enforces "restricted", every probe is admitted, runs and
// passes, and the API server has nothing to warn about.
func TestPodSecurityRestrictedProbesPass(t *testing.T) {
	f := newFixture(t, "h-psa")
	ctx := context.Background()
	ns := env.Namespace(t, "h-psa-probes")
	nsObj, err := env.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nsObj.Labels = map[string]string{"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/warn": "restricted"}
	if _, err := env.Client.CoreV1().Namespaces().Update(ctx, nsObj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	var warnings []string
	rc, _, err := (kube.Access{Kubeconfig: env.Kubeconfig, Warn: func(w string) { warnings = append(warnings, w) }}).RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	g := *f.g
	g.Client = kubernetes.NewForConfigOrDie(rc)
	g.Settings.ProbeNamespace = ns
	res := g.Check(ctx, f.input())
	ran := 0
	for _, c := range res.Checks {
		if probing(c.Name) && c.Passed {
			ran++
		}
	}
	if ran != 3 {
		t.Fatalf("%d probes passed under restricted, want 3\n%s", ran, diagnostics(res))
	}
	if len(warnings) > 0 {
		t.Fatalf("the API server warned about drover's probe pods: %q", warnings)
	}
}

// TestPodSecurityRefusalIsNamed: a pod that does not meet the namespace's
// policy is refused by admission, and drover says so (not RBAC); under
// Talos's default "warn: restricted", the API server's warning reaches
// drover's own output once, however many pods draw it.
func TestPodSecurityRefusalIsNamed(t *testing.T) {
	testenv.Require(t, env)
	ctx := context.Background()
	enforced := env.Namespace(t, "h-psa-enforced")
	nsObj, err := env.Client.CoreV1().Namespaces().Get(ctx, enforced, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nsObj.Labels = map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}
	if _, err := env.Client.CoreV1().Namespaces().Update(ctx, nsObj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	bare := func(name string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox:1.37"}}}}
	}
	var warnings []string
	rc, _, err := (kube.Access{Kubeconfig: env.Kubeconfig, Warn: func(w string) { warnings = append(warnings, w) }}).RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(rc)
	_, err = cs.CoreV1().Pods(enforced).Create(ctx, bare("refused"), metav1.CreateOptions{})
	if err == nil {
		t.Fatal("a pod without a security context was admitted under enforce: restricted")
	}
	pe := &ProbeError{Namespace: enforced, Err: err}
	if pe.Admission() != `Pod Security "restricted:latest"` || !strings.Contains(pe.Error(), "admission refused the probe pod") || strings.Contains(pe.Error(), "grant create") {
		t.Fatalf("the refusal reads: %v", pe)
	}
	warned := env.Namespace(t, "h-psa-warned") // Talos's defaults: warn restricted
	for _, name := range []string{"w-1", "w-2", "w-3"} {
		if _, err := cs.CoreV1().Pods(warned).Create(ctx, bare(name), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], `would violate PodSecurity "restricted:latest"`) {
		t.Fatalf("warnings heard: %q, want the one warning once", warnings)
	}
}

// TestAMovedPodWithAVolumeMustRunAgain: the claims whose volumes left the
// node after its drain (GateInput.Claims) fail the gate while their pod
// waits in ContainerCreating elsewhere (a volume still attached to the
// old node: Multi-Attach), and pass once it runs; a claim no pod uses any
// more is not judged.
func TestAMovedPodWithAVolumeMustRunAgain(t *testing.T) {
	f := newFixture(t, "h-moved")
	ctx := context.Background()
	// Bound to a node no simulated kubelet serves: the test alone says
	// how the pod stands (a kubelet would start it again).
	where := f.name + "-elsewhere"
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "home-assistant-0", Namespace: f.name},
		Spec: corev1.PodSpec{NodeName: where, Containers: []corev1.Container{{Name: "app", Image: "registry.example/ha:1"}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "config"}}}}}}
	created, err := env.Client.CoreV1().Pods(f.name).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created.Status.Phase = corev1.PodRunning
	created.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	created.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
	if _, err := env.Client.CoreV1().Pods(f.name).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	in := f.input()
	in.Claims = []string{f.name + "/config", f.name + "/nobody-uses-this"}
	testenv.Eventually(t, 10*time.Second, "the gate to pass with the moved pod running", func() (bool, error) {
		return f.g.Check(ctx, in).Passed(), nil
	})
	// Its volume cannot attach where it runs now.
	got, err := env.Client.CoreV1().Pods(f.name).Get(ctx, p.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got.Status.Phase = corev1.PodPending
	got.Status.Conditions = nil
	got.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}}
	if _, err := env.Client.CoreV1().Pods(f.name).UpdateStatus(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	var res rollout.HealthResult
	testenv.Eventually(t, 10*time.Second, "the gate to see the pod waiting", func() (bool, error) {
		res = f.g.Check(ctx, in)
		return !res.Passed(), nil
	})
	want := "pod " + f.name + "/home-assistant-0 with volume claim " + f.name + "/config, moved off " + f.gpu.Name + ", is Pending (ContainerCreating) on " + where + " and not Ready"
	if !strings.Contains(diagnostics(res), want) {
		t.Fatalf("want %q in:\n%s", want, diagnostics(res))
	}
}
