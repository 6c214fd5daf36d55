package health

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/version"
)

// BenchmarkGate measures drover's side of one gate run (listing and judging
// every node, pod and custom resource) on clusters of 15 nodes / 300 pods
// and 1000 nodes / 30,000 pods, served from memory by a fake clientset. The
// DNS and network probes are left out: their cost is a pod start on the
// cluster, the same whatever its size. Targets: under 2 s and under 15 s,
// at most 300 MB RSS; docs/development.md reports the figures.
func BenchmarkGate(b *testing.B) {
	for _, size := range []struct{ nodes, pods int }{{15, 300}, {1000, 30000}} {
		b.Run(fmt.Sprintf("%dnodes-%dpods", size.nodes, size.pods), func(b *testing.B) {
			g, in := benchCluster(b, size.nodes, size.pods)
			fixture := peakRSS()
			ctx := context.Background()
			b.ResetTimer()
			for b.Loop() {
				if res := g.Check(ctx, in); !res.Passed() {
					b.Fatalf("%s: %+v", res.Summary(in.Node.Name), res.Checks)
				}
			}
			b.StopTimer()
			// The in-memory API holds the fixture; the gate's own share is the rest.
			b.ReportMetric(float64(fixture)/(1<<20), "fixture-RSS-MB")
			b.ReportMetric(float64(peakRSS())/(1<<20), "peak-RSS-MB")
		})
	}
}

func benchCluster(b *testing.B, nodes, pods int) (*Gate, rollout.GateInput) {
	b.Helper()
	var objs []runtime.Object
	for i := range nodes {
		alloc := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8"), "nvidia.com/gpu": resource.MustParse("1")}
		objs = append(objs, &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("n-%d", i), Labels: map[string]string{"kubernetes.io/hostname": fmt.Sprintf("n-%d", i)}},
			Status: corev1.NodeStatus{Allocatable: alloc, Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
				NodeInfo: corev1.NodeSystemInfo{OSImage: "Talos (v1.12.0)", KubeletVersion: "v1.34.1"}},
		})
	}
	ready := []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	for i := range pods {
		ns := []string{"apps", "kube-system", "rook-ceph", "flux-system"}[i%4]
		name := fmt.Sprintf("p-%d", i)
		if i%nodes == 0 {
			name = "nvidia-device-plugin-" + strconv.Itoa(i)
		}
		objs = append(objs, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.Now()},
			Spec:       corev1.PodSpec{NodeName: fmt.Sprintf("n-%d", i%nodes), Containers: []corev1.Container{{Name: "c"}}},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning, Conditions: ready, ContainerStatuses: []corev1.ContainerStatus{{Name: "c", Ready: true}}},
		})
	}
	objs = append(objs, &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "kube-dns-1", Labels: map[string]string{discoveryv1.LabelServiceName: "kube-dns"}},
		Endpoints:  []discoveryv1.Endpoint{{Addresses: []string{"10.244.0.2"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
	})
	client := fake.NewSimpleClientset(objs...)
	now := time.Now().UTC().Format(time.RFC3339)
	ceph := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "ceph.rook.io/v1", "kind": "CephCluster",
		"metadata": map[string]any{"namespace": "rook-ceph", "name": "rook-ceph"},
		"status":   map[string]any{"ceph": map[string]any{"health": "HEALTH_OK", "lastChecked": now}}}}
	var dyn []runtime.Object
	dyn = append(dyn, ceph)
	for i := range 50 {
		for _, k := range []struct{ apiVersion, kind string }{{"kustomize.toolkit.fluxcd.io/v1", "Kustomization"}, {"helm.toolkit.fluxcd.io/v2", "HelmRelease"}} {
			dyn = append(dyn, &unstructured.Unstructured{Object: map[string]any{"apiVersion": k.apiVersion, "kind": k.kind,
				"metadata": map[string]any{"namespace": "flux-system", "name": fmt.Sprintf("x-%d", i), "generation": int64(1)},
				"status":   map[string]any{"observedGeneration": int64(1), "conditions": []any{map[string]any{"type": "Ready", "status": "True", "reason": "ok", "message": "ok"}}}}})
		}
	}
	d := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		CephClusterGVR: "CephClusterList", KustomizationGVR: "KustomizationList", HelmReleaseGVR: "HelmReleaseList",
	}, dyn...)
	g := &Gate{Client: client, Dynamic: d, Clock: clock.Real{}, Settings: config.Health{
		CriticalNamespaces: []string{"kube-system", "rook-ceph", "flux-system"},
		Disable:            []string{CheckDNS, CheckNetwork},
	}}
	in := rollout.GateInput{Node: plan.Node{Node: config.Node{Name: "n-0", GPUs: 1}}, Want: version.Pair{Talos: version.MustParse("v1.12.0"), Kubernetes: version.MustParse("v1.34.1")}}
	return g, in
}

// peakRSS reads the process's peak resident set size (VmHWM) on Linux.
func peakRSS() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
