package lab

import (
	"context"
	"fmt"
	"testing"
	"time"

	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/prox-ops/drover/internal/kube"
	"github.com/prox-ops/drover/internal/plan"
)

// These tests pin the simulated cluster's own semantics, which the
// engine's results depend on.

func newLab(t *testing.T) *Lab {
	t.Helper()
	l, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

func TestEvictionRespectsPDB(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	pods, err := l.Client.CoreV1().Pods("apps").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=web"})
	if err != nil || len(pods.Items) != 3 {
		t.Fatalf("web pods: %v, %d", err, len(pods.Items))
	}
	evict := func(name string) error {
		return l.Client.PolicyV1().Evictions("apps").Evict(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "apps"}})
	}
	// minAvailable 2 of 3: the first eviction is allowed, the second is
	// refused until the replacement is Ready.
	if err := evict(pods.Items[0].Name); err != nil {
		t.Fatalf("first eviction: %v", err)
	}
	if err := evict(pods.Items[1].Name); !apierrors.IsTooManyRequests(err) {
		t.Fatalf("second eviction: %v, want 429", err)
	}
	pdb, _ := l.Client.PolicyV1().PodDisruptionBudgets("apps").Get(ctx, "web", metav1.GetOptions{})
	if pdb.Status.DisruptionsAllowed != 0 || pdb.Status.CurrentHealthy != 2 || pdb.Status.DesiredHealthy != 2 {
		t.Fatalf("PDB status %+v", pdb.Status)
	}
	// The replacement starts on the clock; then the budget allows one again.
	if err := l.Clock.Sleep(ctx, l.opts.Durations.PodStart); err != nil {
		t.Fatal(err)
	}
	if err := evict(pods.Items[1].Name); err != nil {
		t.Fatalf("eviction after the replacement turned Ready: %v", err)
	}
	// An evicted pod terminates for its grace period (30s), as a kubelet
	// keeps it until its containers stopped, then goes.
	if p, err := l.Client.CoreV1().Pods("apps").Get(ctx, pods.Items[0].Name, metav1.GetOptions{}); err != nil || p.DeletionTimestamp == nil {
		t.Fatalf("the evicted pod, within its grace: %v %+v", err, p)
	}
	if err := l.Clock.Sleep(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Client.CoreV1().Pods("apps").Get(ctx, pods.Items[0].Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("evicted pod still there after its grace: %v", err)
	}
	if st := l.Stats(); st.PDBViolations != 0 || st.Evictions != 2 || st.EvictionsRefused != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestReplacedNodeRegistersAnew(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	k := &kube.Client{Client: l.Client, Clock: l.Clock}
	before, err := k.Identity(ctx, "k8s-work-2")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := l.Config().NodeByName("k8s-work-2")
	h := l.Hypervisor()
	if err := h.Destroy(ctx, []plan.Node{{Node: n}}); err != nil {
		t.Fatal(err)
	}
	if id, _ := k.Identity(ctx, "k8s-work-2"); id.Ready {
		t.Fatal("node still Ready after its VM was destroyed")
	}
	if err := k.DeleteNode(ctx, "k8s-work-2"); err != nil {
		t.Fatal(err)
	}
	if err := h.EnsureTemplates(ctx, minor); err != nil {
		t.Fatal(err)
	}
	if err := h.Create(ctx, []plan.Node{{Node: n}}, minor); err != nil {
		t.Fatal(err)
	}
	after, err := k.Identity(ctx, "k8s-work-2")
	if err != nil {
		t.Fatal(err)
	}
	if after.UID == before.UID || after.BootID == before.BootID || !after.Ready || after.OSImage != "Talos (v1.12.0)" {
		t.Fatalf("before %+v\nafter %+v", before, after)
	}
	if d := kube.DiffIdentity(before, after, nil); len(d.Lost) != 0 {
		t.Fatalf("replacement lost %v", d.Lost)
	}
}

func TestPetsUpgradeKeepsTheNodeObject(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	k := &kube.Client{Client: l.Client, Clock: l.Clock}
	before, _ := k.Identity(ctx, "k8s-work-4")
	n, _ := l.Config().NodeByName("k8s-work-4")
	if err := l.Talos().Upgrade(ctx, plan.Node{Node: n}, patch); err != nil {
		t.Fatal(err)
	}
	after, _ := k.Identity(ctx, "k8s-work-4")
	if after.UID != before.UID || after.BootID == before.BootID || after.OSImage != "Talos (v1.11.4)" {
		t.Fatalf("before %+v\nafter %+v", before, after)
	}
	if after.Allocatable[kube.GPUResource] != "1" {
		t.Fatalf("GPU lost: %v", after.Allocatable)
	}
}

// The fake tracker patches by read, merge and replace with no
// resourceVersion check; the lab's kubelets write the same Node. Writes
// through the API while the kubelet posts its status must lose neither,
// and the controllers' passes must not deadlock with them (a deadlock
// ends this test at the go test timeout).
func TestNodeWritesThroughTheAPILoseNoKubeletStatus(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	const name, writes = "k8s-work-3", 200
	done := make(chan error, 1)
	go func() {
		for i := range writes {
			patch := fmt.Sprintf(`{"metadata":{"annotations":{"test/%d":"x"}}}`, i)
			if _, err := l.Client.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for i := range writes {
		l.mu.Lock()
		l.setNodeReady(name, i%2 == 1, nil)
		l.mu.Unlock()
		l.controlLoop()
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	n, err := l.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !kube.IsReady(n) {
		t.Error("the kubelet's last status (Ready) was lost to a concurrent patch")
	}
	for i := range writes {
		if _, ok := n.Annotations[fmt.Sprintf("test/%d", i)]; !ok {
			t.Fatalf("annotation test/%d was lost to a concurrent status write", i)
		}
	}
}
