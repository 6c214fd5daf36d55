package kube_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/prox-ops/drover/internal/kube"
	"github.com/prox-ops/drover/internal/testenv"
)

// TestABatchWithoutRoomIsRefusedBeforeAnyCordon: the pods a batch's drain
// would evict must fit on the nodes that remain, as the scheduler's
// filters decide: CPU requests against what is free, GPUs where there are
// some, taints tolerated. A pod that fits nowhere is named with why, and
// nothing is cordoned.
func TestABatchWithoutRoomIsRefusedBeforeAnyCordon(t *testing.T) {
	testenv.Require(t, env)
	ctx := context.Background()
	tests := []struct {
		name    string
		gpus    int  // on the batch's node
		taint   bool // the other node is tainted NoSchedule
		request corev1.ResourceList
		fits    bool
		wantWhy string
	}{
		{name: "fits", request: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}, fits: true},
		{name: "cpu", request: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("3")}, wantWhy: "insufficient cpu: wants 3, 2 free"},
		{name: "gpu", gpus: 1, request: corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("1")}, wantWhy: "insufficient nvidia.com/gpu: none"},
		{name: "taint", taint: true, request: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}, wantWhy: "taint dedicated=db:NoSchedule not tolerated"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := env.Namespace(t, fmt.Sprintf("room-%d", i))
			k := testenv.NewKubelets(env.Client, ns)
			t.Cleanup(k.Close)
			leaving, staying := fmt.Sprintf("room-%d-a", i), fmt.Sprintf("room-%d-b", i)
			spec := testenv.NodeSpec{Name: staying, Talos: "v1.12.0", Kubelet: "v1.34.1"}
			if tc.taint {
				spec.Taints = []corev1.Taint{{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule}}
			}
			if err := k.AddNode(ctx, testenv.NodeSpec{Name: leaving, Talos: "v1.12.0", Kubelet: "v1.34.1", GPUs: tc.gpus}); err != nil {
				t.Fatal(err)
			}
			if err := k.AddNode(ctx, spec); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { env.DeleteNodes(leaving, staying) })
			env.WaitSchedulable(t, leaving)
			pod := func(name, node string, req corev1.ResourceList) {
				p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: corev1.PodSpec{NodeName: node,
					Containers: []corev1.Container{{Name: "c", Image: "registry.example/" + name + ":1", Resources: corev1.ResourceRequirements{Requests: req, Limits: limits(req)}}}}}
				if _, err := env.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			pod("busy", staying, corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")})
			pod("mover", leaving, tc.request)
			kc := client()
			err := kc.CheckRoom(ctx, []string{leaving})
			var nr *kube.NoRoomError
			switch {
			case tc.fits && err != nil:
				t.Fatalf("the pod fits on %s: %v", staying, err)
			case !tc.fits && (!errors.As(err, &nr) || len(nr.Homeless) != 1 || nr.Homeless[0].Pod != ns+"/mover" || !strings.Contains(nr.Homeless[0].Why, tc.wantWhy)):
				t.Fatalf("want %s/mover refused for %q, got %v", ns, tc.wantWhy, err)
			}
			if n, err := env.Client.CoreV1().Nodes().Get(ctx, leaving, metav1.GetOptions{}); err != nil || n.Spec.Unschedulable {
				t.Fatalf("the check cordoned %s (%v)", leaving, err)
			}
		})
	}
}

// limits mirror the requests of extended resources, which must be equal.
func limits(req corev1.ResourceList) corev1.ResourceList {
	out := corev1.ResourceList{}
	for name, q := range req {
		if strings.Contains(string(name), "/") {
			out[name] = q
		}
	}
	return out
}
