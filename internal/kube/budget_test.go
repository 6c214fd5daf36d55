package kube_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/prox-ops/drover/internal/lab"
	"github.com/prox-ops/drover/internal/testenv"
)

// TestBudgetLabAnswersEvictionsAsTheAPIServer is the lab-versus-API
// differential table: for each budget (minAvailable and maxUnavailable,
// integers and percentages, IfHealthyBudget and AlwaysAllow) over four
// pods of a ReplicaSet, some of them Running but unready, one pod is
// evicted through the real eviction subresource, and the lab's rule
// (lab.BudgetOf and lab.EvictionRefused, which the lab's eviction runs)
// must give the same answer: evicted or refused with 429.
func TestBudgetLabAnswersEvictionsAsTheAPIServer(t *testing.T) {
	testenv.Require(t, env)
	ctx := context.Background()
	k := testenv.NewKubelets(env.Client, "")
	t.Cleanup(k.Close)
	node := "budget-node"
	nodes(t, k, "v1.12.0", node)
	env.WaitSchedulable(t, node)

	pct := func(s string) *intstr.IntOrString { v := intstr.FromString(s); return &v }
	num := func(i int) *intstr.IntOrString { v := intstr.FromInt32(int32(i)); return &v }
	always := ptr.To(policyv1.AlwaysAllow)
	tests := []struct {
		name         string
		minAvail     *intstr.IntOrString
		maxUnavail   *intstr.IntOrString
		policy       *policyv1.UnhealthyPodEvictionPolicyType
		unready      int  // of the four pods, these are Running but unready
		evictUnready bool // evict an unready pod (else a ready one)
		wantRefused  bool
	}{
		{name: "minAvailable 3, all ready", minAvail: num(3), wantRefused: false},
		{name: "minAvailable 4, all ready", minAvail: num(4), wantRefused: true},
		{name: "unready pod, healthy budget", minAvail: num(3), unready: 1, evictUnready: true, wantRefused: false},
		{name: "unready pod, unhealthy budget", minAvail: num(4), unready: 1, evictUnready: true, wantRefused: true},
		{name: "unready pod, unhealthy budget, AlwaysAllow", minAvail: num(4), unready: 1, evictUnready: true, policy: always, wantRefused: false},
		{name: "ready pod beside an unready one", minAvail: num(3), unready: 1, wantRefused: true},
		{name: "maxUnavailable 1", maxUnavail: num(1), wantRefused: false},
		{name: "maxUnavailable 0", maxUnavail: num(0), wantRefused: true},
		{name: "maxUnavailable 25%, one unready", maxUnavail: pct("25%"), unready: 1, wantRefused: true},
		{name: "minAvailable 50%, two unready, a ready pod", minAvail: pct("50%"), unready: 2, wantRefused: true},
		{name: "minAvailable 50%, two unready, an unready pod", minAvail: pct("50%"), unready: 2, evictUnready: true, wantRefused: false},
		{name: "maxUnavailable 100%, none ready", maxUnavail: pct("100%"), unready: 4, evictUnready: true, wantRefused: true},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := env.Namespace(t, fmt.Sprintf("budget-%d", i))
			labels := map[string]string{"app": "web"}
			rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns}, Spec: appsv1.ReplicaSetSpec{
				Replicas: ptr.To(int32(4)), Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
					NodeName: node, TerminationGracePeriodSeconds: ptr.To(int64(0)),
					Containers: []corev1.Container{{Name: "web", Image: "registry.example/web:1"}},
				}},
			}}
			if _, err := env.Client.AppsV1().ReplicaSets(ns).Create(ctx, rs, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			testenv.Eventually(t, 30*time.Second, "four Ready pods", func() (bool, error) {
				n, err := env.ReadyPods(ctx, ns, "web")
				return n == 4, err
			})
			pods := podsOf(t, ns)
			for _, p := range pods[:tc.unready] {
				for j := range p.Status.Conditions {
					if c := &p.Status.Conditions[j]; c.Type == corev1.PodReady || c.Type == corev1.ContainersReady {
						c.Status = corev1.ConditionFalse
					}
				}
				if _, err := env.Client.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns}, Spec: policyv1.PodDisruptionBudgetSpec{
				MinAvailable: tc.minAvail, MaxUnavailable: tc.maxUnavail, UnhealthyPodEvictionPolicy: tc.policy,
				Selector: &metav1.LabelSelector{MatchLabels: labels},
			}}
			if _, err := env.Client.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, pdb, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			testenv.Eventually(t, 30*time.Second, "the disruption controller to count the budget", func() (bool, error) {
				got, err := env.Client.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, "web", metav1.GetOptions{})
				return err == nil && got.Status.ObservedGeneration == got.Generation && int(got.Status.CurrentHealthy) == 4-tc.unready, err
			})
			pods = podsOf(t, ns)
			victim := pods[len(pods)-1]
			if tc.evictUnready {
				victim = pods[0]
			}
			labBudget := lab.BudgetOf(pdb.Spec, 4, pods)
			labRefused := lab.EvictionRefused(victim, &labBudget) != ""

			err := env.Client.PolicyV1().Evictions(ns).Evict(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: victim.Name, Namespace: ns}})
			if err != nil && !apierrors.IsTooManyRequests(err) {
				t.Fatalf("the API server answered neither an eviction nor a refusal: %v", err)
			}
			apiRefused := err != nil
			if apiRefused != tc.wantRefused {
				t.Errorf("the API server refused=%v (%v), the table says %v", apiRefused, err, tc.wantRefused)
			}
			if labRefused != apiRefused {
				t.Errorf("the lab refused=%v, the API server refused=%v (%v)", labRefused, apiRefused, err)
			}
		})
	}
}

// podsOf are the namespace's live pods, unready ones first, by name.
func podsOf(t *testing.T, ns string) []*corev1.Pod {
	t.Helper()
	l, err := env.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*corev1.Pod
	for i := range l.Items {
		if l.Items[i].DeletionTimestamp == nil {
			out = append(out, &l.Items[i])
		}
	}
	ready := func(p *corev1.Pod) int {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return 1
			}
		}
		return 0
	}
	slices.SortFunc(out, func(a, b *corev1.Pod) int {
		if d := ready(a) - ready(b); d != 0 {
			return d
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}
