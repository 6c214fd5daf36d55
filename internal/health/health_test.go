package health

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/testenv"
	"github.com/prox-ops/drover/internal/version"
)

// The checks run against a real control plane, with the Flux and Rook
// CRDs installed. The module cache holds no upstream CRD files for them,
// so these are minimal CRDs of the same group, version and kind with a
// status subresource. The kubelets are simulated (testenv.Kubelets),
// including how a probe pod ends: a DNS probe resolves while kube-dns has
// ready endpoints.

var env *testenv.Env

func TestMain(m *testing.M) { os.Exit(testenv.Main(m, &env)) }

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// minimalCRD is a CRD of the same group, version and kind as upstream's,
// schema-less, with a status subresource.
func minimalCRD(group, version, kind, plural string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": plural + "." + group, "labels": map[string]any{"drover.prox-ops.io/minimal-crd": "true"}},
		"spec": map[string]any{
			"group": group, "scope": "Namespaced",
			"names": map[string]any{"kind": kind, "plural": plural, "singular": strings.ToLower(kind), "listKind": kind + "List"},
			"versions": []any{map[string]any{
				"name": version, "served": true, "storage": true,
				"subresources": map[string]any{"status": map[string]any{}},
				"schema":       map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
			}},
		},
	}}
}

type fixture struct {
	dyn dynamic.Interface
	k   *testenv.Kubelets
	g   *Gate
	gpu plan.Node
}

// shared is the package's one fixture: each test breaks what it needs and
// heals it again.
var shared *fixture

// healthyFixture: a GPU node with its device plugin, CoreDNS behind
// kube-dns, a HEALTH_OK CephCluster with its CSI pods, and Flux objects
// Ready at their generation.
func healthyFixture(t *testing.T) *fixture {
	t.Helper()
	testenv.Require(t, env)
	if shared != nil {
		shared.g.Settings.Custom, shared.g.Settings.CephAcceptWarn = nil, nil
		shared.heal(t)
		return shared
	}
	ctx := context.Background()
	dyn, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range [][4]string{
		{"ceph.rook.io", "v1", "CephCluster", "cephclusters"},
		{"kustomize.toolkit.fluxcd.io", "v1", "Kustomization", "kustomizations"},
		{"helm.toolkit.fluxcd.io", "v2", "HelmRelease", "helmreleases"},
	} {
		if _, err := dyn.Resource(crdGVR).Create(ctx, minimalCRD(c[0], c[1], c[2], c[3]), metav1.CreateOptions{}); err != nil && !strings.Contains(err.Error(), "already exists") {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 30*time.Second, "the CRDs to be served", func() (bool, error) {
		_, err := env.Client.Discovery().ServerResourcesForGroupVersion("helm.toolkit.fluxcd.io/v2")
		return err == nil, nil
	})
	k := testenv.NewKubelets(env.Client, "") // lives as long as the package's tests
	k.ProbeResult = func(p *corev1.Pod) (bool, string) {
		if p.Labels[ProbeLabel] == ProbeDNS {
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
		return true, ""
	}
	for _, n := range []testenv.NodeSpec{
		{Name: "h-cp-1", ControlPlane: true, Talos: "v1.12.0", Kubelet: "v1.34.1"},
		{Name: "h-gpu-1", Talos: "v1.12.0", Kubelet: "v1.34.1", GPUs: 1, Labels: map[string]string{"nvidia.com/gpu.present": "true"}},
		{Name: "h-w-1", Talos: "v1.12.0", Kubelet: "v1.34.1"},
	} {
		if err := k.AddNode(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	env.WaitSchedulable(t, "h-cp-1", "h-gpu-1", "h-w-1")

	for _, ns := range []string{"rook-ceph", "flux-system", "gpu"} {
		env.Namespace(t, ns)
	}
	// CoreDNS and the kube-dns Service (its EndpointSlices come from the
	// real endpointslice controller).
	env.Deployment(t, "kube-system", "coredns", 2, true)
	if _, err := env.Client.CoreV1().Services("kube-system").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-dns", Labels: map[string]string{"k8s-app": "kube-dns"}},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "coredns"}, Ports: []corev1.ServicePort{{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}}},
	}, metav1.CreateOptions{}); err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatal(err)
	}
	env.Deployment(t, "rook-ceph", "csi-rbdplugin-provisioner", 1, false)
	// The device plugin, pinned to the GPU node.
	plugin := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "nvidia-device-plugin-h-gpu-1", Namespace: "gpu"},
		Spec:       corev1.PodSpec{NodeName: "h-gpu-1", Containers: []corev1.Container{{Name: "plugin", Image: "registry.example/nvidia-device-plugin:1"}}},
	}
	if _, err := env.Client.CoreV1().Pods("gpu").Create(ctx, plugin, metav1.CreateOptions{}); err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatal(err)
	}
	env.WaitReplicas(t, "kube-system", "coredns", 2)
	env.WaitReplicas(t, "rook-ceph", "csi-rbdplugin-provisioner", 1)

	f := &fixture{dyn: dyn, k: k}
	f.put(t, health(CephClusterGVR, "rook-ceph", "rook-ceph", "CephCluster", "ceph.rook.io/v1"), map[string]any{
		"ceph": map[string]any{"health": "HEALTH_OK", "lastChecked": time.Now().UTC().Format(time.RFC3339), "details": map[string]any{}},
	})
	f.put(t, health(KustomizationGVR, "flux-system", "apps", "Kustomization", "kustomize.toolkit.fluxcd.io/v1"), fluxReady("True"))
	f.put(t, health(HelmReleaseGVR, "flux-system", "cilium", "HelmRelease", "helm.toolkit.fluxcd.io/v2"), fluxReady("True"))
	f.g = &Gate{Client: env.Client, Dynamic: dyn, Clock: clock.Real{}, Settings: config.Health{
		CriticalNamespaces: []string{"kube-system", "rook-ceph"}, CheckTimeout: config.D(15 * time.Second),
	}}
	f.gpu = plan.Node{Node: config.Node{Name: "h-gpu-1", Role: config.RoleWorker, GPUs: 1}}
	testenv.Eventually(t, 30*time.Second, "the device plugin and kube-dns endpoints", func() (bool, error) {
		res := f.g.Check(ctx, f.input())
		return res.Passed(), nil
	})
	shared = f
	return f
}

type obj struct {
	gvr                        schema.GroupVersionResource
	ns, name, kind, apiVersion string
}

func health(gvr schema.GroupVersionResource, ns, name, kind, apiVersion string) obj {
	return obj{gvr, ns, name, kind, apiVersion}
}

func fluxReady(status string) map[string]any {
	return map[string]any{"observedGeneration": int64(1), "conditions": []any{map[string]any{
		"type": "Ready", "status": status, "reason": "Test", "message": "reconciliation " + map[string]string{"True": "succeeded", "False": "failed: install retries exhausted"}[status],
		"lastTransitionTime": time.Now().UTC().Format(time.RFC3339),
	}}}
}

// put creates (once) and sets the status of a custom resource.
func (f *fixture) put(t *testing.T, o obj, status map[string]any) {
	t.Helper()
	ctx := context.Background()
	r := f.dyn.Resource(o.gvr).Namespace(o.ns)
	u, err := r.Get(ctx, o.name, metav1.GetOptions{})
	if err != nil {
		u = &unstructured.Unstructured{Object: map[string]any{"apiVersion": o.apiVersion, "kind": o.kind,
			"metadata": map[string]any{"name": o.name, "namespace": o.ns}, "spec": map[string]any{"interval": "10m"}}}
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

// heal puts the fixture back to healthy and waits until the gate says so.
func (f *fixture) heal(t *testing.T) {
	t.Helper()
	f.g.Settings.Custom, f.g.Settings.CephAcceptWarn = nil, nil
	f.put(t, health(CephClusterGVR, "rook-ceph", "rook-ceph", "CephCluster", "ceph.rook.io/v1"), map[string]any{
		"ceph": map[string]any{"health": "HEALTH_OK", "lastChecked": time.Now().UTC().Format(time.RFC3339), "details": map[string]any{}},
	})
	f.put(t, health(HelmReleaseGVR, "flux-system", "cilium", "HelmRelease", "helm.toolkit.fluxcd.io/v2"), fluxReady("True"))
	var last rollout.HealthResult
	testenv.Eventually(t, 60*time.Second, "the fixture to be healthy again", func() (bool, error) {
		last = f.g.Check(context.Background(), f.input())
		return last.Passed(), nil
	})
}

func (f *fixture) input() rollout.GateInput {
	return rollout.GateInput{Node: f.gpu, Want: version.Pair{Talos: version.MustParse("v1.12.0"), Kubernetes: version.MustParse("v1.34.1")}}
}

func TestHealthyFixturePassesTenTimesInARow(t *testing.T) {
	f := healthyFixture(t)
	for i := range 10 {
		res := f.g.Check(context.Background(), f.input())
		if !res.Passed() {
			t.Fatalf("run %d: %s\n%+v", i+1, res.Summary("h-gpu-1"), res.Checks)
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
		heal   func(t *testing.T, f *fixture)
		want   string
	}{
		{CheckDNS, func(t *testing.T, f *fixture) { scale(t, "kube-system", "coredns", 0) }, func(t *testing.T, f *fixture) { scale(t, "kube-system", "coredns", 2) }, "no ready endpoints"},
		{CheckFlux, func(t *testing.T, f *fixture) {
			f.put(t, health(HelmReleaseGVR, "flux-system", "cilium", "HelmRelease", "helm.toolkit.fluxcd.io/v2"), fluxReady("False"))
		}, func(t *testing.T, f *fixture) {
			f.put(t, health(HelmReleaseGVR, "flux-system", "cilium", "HelmRelease", "helm.toolkit.fluxcd.io/v2"), fluxReady("True"))
		}, "HelmRelease flux-system/cilium: Ready=False"},
		{CheckStorage, func(t *testing.T, f *fixture) {
			f.put(t, health(CephClusterGVR, "rook-ceph", "rook-ceph", "CephCluster", "ceph.rook.io/v1"), map[string]any{"ceph": map[string]any{
				"health": "HEALTH_WARN", "lastChecked": time.Now().UTC().Format(time.RFC3339),
				"details": map[string]any{"OSD_DOWN": map[string]any{"message": "1 osds down", "severity": "HEALTH_WARN"}}}})
		}, func(t *testing.T, f *fixture) { f.heal(t) }, "HEALTH_WARN: OSD_DOWN: 1 osds down"},
		{CheckGPU, func(t *testing.T, f *fixture) {
			if err := f.k.SetGPUs(context.Background(), "h-gpu-1", 0); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, f *fixture) { _ = f.k.SetGPUs(context.Background(), "h-gpu-1", 1) }, "allocatable nvidia.com/gpu 0"},
		{CheckPodHealth, func(t *testing.T, f *fixture) {
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "crasher", Namespace: "gpu"},
				Spec: corev1.PodSpec{NodeName: "h-gpu-1", Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}}}
			if _, err := env.Client.CoreV1().Pods("gpu").Create(ctx, p, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			testenv.Eventually(t, 10*time.Second, "crasher running", func() (bool, error) {
				p, err := env.Client.CoreV1().Pods("gpu").Get(ctx, "crasher", metav1.GetOptions{})
				return err == nil && p.Status.Phase == corev1.PodRunning, nil
			})
			p, _ = env.Client.CoreV1().Pods("gpu").Get(ctx, "crasher", metav1.GetOptions{})
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", RestartCount: 6, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}}
			if _, err := env.Client.CoreV1().Pods("gpu").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}, func(t *testing.T, f *fixture) {
			zero := int64(0)
			_ = env.Client.CoreV1().Pods("gpu").Delete(ctx, "crasher", metav1.DeleteOptions{GracePeriodSeconds: &zero})
		}, "pod gpu/crasher on h-gpu-1: container app is in CrashLoopBackOff"},
	}
	f := healthyFixture(t)
	for _, tc := range tests {
		t.Run(tc.check, func(t *testing.T) {
			tc.breaks(t, f)
			var res rollout.HealthResult
			testenv.Eventually(t, 30*time.Second, tc.check+" to fail", func() (bool, error) {
				res = f.g.Check(ctx, f.input())
				var diags string
				for _, c := range res.Checks {
					diags += strings.Join(c.Diagnostics, "\n")
				}
				return strings.Contains(diags, tc.want), nil
			})
			if got := res.Failed(); len(got) != 1 || got[0] != tc.check {
				t.Fatalf("failed %v, want only %s\n%s", got, tc.check, res.Summary("h-gpu-1"))
			}
			var diags string
			for _, c := range res.Checks {
				diags += strings.Join(c.Diagnostics, "\n")
			}
			if !strings.Contains(diags, tc.want) {
				t.Fatalf("diagnostics lack %q:\n%s", tc.want, diags)
			}
			if !strings.HasPrefix(res.Summary("h-gpu-1"), "❌ Node h-gpu-1: 6/7 health checks passed (failed: "+tc.check+")") {
				t.Errorf("summary %q", res.Summary("h-gpu-1"))
			}
			tc.heal(t, f)
			f.heal(t)
		})
	}
}

func TestCephWarnWithAnAcceptedReasonPasses(t *testing.T) {
	f := healthyFixture(t)
	f.put(t, health(CephClusterGVR, "rook-ceph", "rook-ceph", "CephCluster", "ceph.rook.io/v1"), map[string]any{"ceph": map[string]any{
		"health": "HEALTH_WARN", "lastChecked": time.Now().UTC().Format(time.RFC3339),
		"details": map[string]any{"MON_CLOCK_SKEW": map[string]any{"message": "clock skew detected on mon.b"}}}})
	f.g.Settings.CephAcceptWarn = []string{"MON_CLOCK_SKEW"}
	if res := f.g.Check(context.Background(), f.input()); !res.Passed() {
		t.Fatalf("%s", res.Summary("h-gpu-1"))
	}
	f.g.Settings.CephAcceptWarn = nil
	if res := f.g.Check(context.Background(), f.input()); res.Passed() {
		t.Fatal("HEALTH_WARN passed without an accepted reason")
	}
}

func TestSuspendedFluxObjectsAreListedNotFailed(t *testing.T) {
	f := healthyFixture(t)
	ctx := context.Background()
	r := f.dyn.Resource(HelmReleaseGVR).Namespace("flux-system")
	if _, err := r.Patch(ctx, "cilium", types.MergePatchType, []byte(`{"spec":{"suspend":true}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_, _ = r.Patch(ctx, "cilium", types.MergePatchType, []byte(`{"spec":{"suspend":false}}`), metav1.PatchOptions{})
	}()
	res := f.g.Check(ctx, f.input())
	for _, c := range res.Checks {
		if c.Name == CheckFlux && (!c.Passed || len(c.Notes) != 1 || !strings.Contains(c.Notes[0], "suspended")) {
			t.Fatalf("flux check %+v", c)
		}
	}
}

func TestCustomCELCheck(t *testing.T) {
	f := healthyFixture(t)
	f.g.Settings.Custom = []config.CustomCheck{
		{Name: "Ceph OK", APIVersion: "ceph.rook.io/v1", Kind: "CephCluster", Namespace: "rook-ceph", Expression: "status.ceph.health in ['HEALTH_OK']"},
		{Name: "Two CoreDNS", APIVersion: "apps/v1", Kind: "Deployment", Namespace: "kube-system", ObjectName: "coredns", Expression: "spec.replicas >= 3"},
	}
	res := f.g.Check(context.Background(), f.input())
	got := map[string]bool{}
	for _, c := range res.Checks {
		got[c.Name] = c.Passed
	}
	if !got["Ceph OK"] || got["Two CoreDNS"] {
		t.Fatalf("custom checks %v", got)
	}
}

func TestProbePodsAreCleanedUp(t *testing.T) {
	f := healthyFixture(t)
	_ = f.g.Check(context.Background(), f.input())
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

func scale(t *testing.T, ns, name string, n int32) {
	t.Helper()
	patch := []byte(`{"spec":{"replicas":` + string(rune('0'+n)) + `}}`)
	if _, err := env.Client.AppsV1().Deployments(ns).Patch(context.Background(), name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}
