package kube_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/journal"
	"github.com/prox-ops/drover/internal/kube"
	"github.com/prox-ops/drover/internal/testenv"
)

// TestTheLockIsRenewedDuringADrainOf300Pods: the run lock renews through a
// client of its own (as the run's site gives it), so a drain's burst of
// 300 evictions and its polls, on the run's client at kubectl's rates,
// never starve it: the lock is never lost and no renewal comes later than
// its TTL.
func TestTheLockIsRenewedDuringADrainOf300Pods(t *testing.T) {
	testenv.Require(t, env)
	ctx := context.Background()
	ns := env.Namespace(t, "lock-drain")
	k := testenv.NewKubelets(env.Client, ns)
	t.Cleanup(k.Close)
	node := "lock-drain-w"
	// Tainted: pods other tests left behind do not land on it.
	own := corev1.Taint{Key: "drover.test/lock-drain", Effect: corev1.TaintEffectNoSchedule}
	if err := k.AddNode(ctx, testenv.NodeSpec{Name: node, Talos: "v1.12.0", Kubelet: "v1.34.1", Taints: []corev1.Taint{own}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.DeleteNodes(node) })
	labels := map[string]string{"app": "many"}
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "many", Namespace: ns}, Spec: appsv1.ReplicaSetSpec{
		Replicas: ptr.To(int32(300)), Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
			NodeName: node, TerminationGracePeriodSeconds: ptr.To(int64(0)),
			Tolerations: []corev1.Toleration{{Key: own.Key, Operator: corev1.TolerationOpExists, Effect: own.Effect}},
			Containers:  []corev1.Container{{Name: "many", Image: "registry.example/many:1"}},
		}},
	}}
	if _, err := env.Client.AppsV1().ReplicaSets(ns).Create(ctx, rs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 2*time.Minute, "300 Ready pods", func() (bool, error) {
		n, err := env.ReadyPods(ctx, ns, "many")
		return n == 300, err
	})
	// Once evicted, the replacements have nowhere to go.
	if err := env.Client.AppsV1().ReplicaSets(ns).Delete(ctx, "many", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationOrphan)}); err != nil {
		t.Fatal(err)
	}

	lockClient, err := kubernetes.NewForConfig(env.DroverConfig) // a client of its own, as clusterSite.LockClient
	if err != nil {
		t.Fatal(err)
	}
	var lost atomic.Value
	lock := &journal.LeaseLock{Client: lockClient, Clock: clock.Real{}, Namespace: ns, Name: "drover-upgrade", TTL: 3 * time.Second,
		OnLost: func(err error) { lost.Store(err) }}
	release, err := lock.Acquire(ctx, journal.Holder{Runner: "test", RunID: "lock-drain", Started: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	defer release()

	var gaps []time.Duration
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var last time.Time
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			l, err := env.Client.CoordinationV1().Leases(ns).Get(ctx, "drover-upgrade", metav1.GetOptions{})
			if err != nil || l.Spec.RenewTime == nil {
				continue
			}
			if rt := l.Spec.RenewTime.Time; rt.After(last) {
				if !last.IsZero() {
					gaps = append(gaps, rt.Sub(last))
				}
				last = rt
			}
		}
	}()
	kc := &kube.Client{Client: env.Drover, Clock: clock.Real{}} // the run's client, production's rates and delays
	if err := kc.Cordon(ctx, node); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := kc.Drain(ctx, node, 5*time.Minute, nil); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	close(stop)
	<-sampled
	if err, _ := lost.Load().(error); err != nil {
		t.Fatalf("the lock was lost during the drain: %v", err)
	}
	for _, g := range gaps {
		if g >= lock.TTL {
			t.Fatalf("a renewal came %s after the one before, past the lock's TTL of %s (renewal gaps %v)", g, lock.TTL, gaps)
		}
	}
	if len(gaps) < 2 {
		t.Fatalf("only %d renewals seen during a %s drain", len(gaps), took)
	}
	t.Logf("drained 300 pods in %s; %d renewals meanwhile", took.Round(time.Millisecond), len(gaps)+1)
}
