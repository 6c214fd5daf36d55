package lab

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"k8s.io/kubectl/pkg/util/podutils"
)

// Budget is a PodDisruptionBudget's state as the disruption controller
// computes it: the pods it expects (the controller's scale for a
// percentage or maxUnavailable, the matching pods for an integer
// minAvailable) and those healthy now (Ready, not terminating).
type Budget struct {
	Spec     policyv1.PodDisruptionBudgetSpec
	Expected int
	Healthy  int
}

// BudgetOf is the budget spec over pods, those of a controller of scale
// replicas, as the disruption controller counts them.
func BudgetOf(spec policyv1.PodDisruptionBudgetSpec, scale int, pods []*corev1.Pod) Budget {
	b := Budget{Spec: spec, Expected: scale}
	if mi := spec.MinAvailable; mi != nil && mi.Type == intstr.Int {
		// An integer minAvailable expects the pods there are.
		b.Expected = 0
		for _, p := range pods {
			if p.DeletionTimestamp == nil {
				b.Expected++
			}
		}
	}
	for _, p := range pods {
		if p.DeletionTimestamp == nil && podutils.IsPodReady(p) {
			b.Healthy++
		}
	}
	return b
}

// Desired is how many pods the budget wants healthy.
func (b Budget) Desired() int {
	switch {
	case b.Spec.MaxUnavailable != nil:
		v, _ := intstr.GetScaledValueFromIntOrPercent(b.Spec.MaxUnavailable, b.Expected, true)
		return max(0, b.Expected-v)
	case b.Spec.MinAvailable != nil:
		v, _ := intstr.GetScaledValueFromIntOrPercent(b.Spec.MinAvailable, b.Expected, true)
		return v
	}
	return 0
}

// Allowed is the budget's disruptionsAllowed.
func (b Budget) Allowed() int { return max(0, b.Healthy-b.Desired()) }

// EvictionRefused answers an eviction of p as the eviction subresource
// does (kube-apiserver's rules, pkg/registry/core/pod/storage): a pod that
// is terminating, Pending, Succeeded or Failed is evicted whatever its
// budget; an unready pod is evicted when its budget's
// unhealthyPodEvictionPolicy is AlwaysAllow, or (IfHealthyBudget, the
// default) when the budget is healthy (as many healthy pods as it wants,
// and it wants some); any other pod needs a disruption allowed. The
// returned reason is the API server's 429 message; "" is an eviction.
func EvictionRefused(p *corev1.Pod, b *Budget) string {
	if b == nil || p.DeletionTimestamp != nil {
		return ""
	}
	switch p.Status.Phase {
	case corev1.PodPending, corev1.PodSucceeded, corev1.PodFailed:
		return ""
	}
	if !podutils.IsPodReady(p) {
		if pol := b.Spec.UnhealthyPodEvictionPolicy; pol != nil && *pol == policyv1.AlwaysAllow {
			return ""
		}
		if b.Healthy >= b.Desired() && b.Desired() > 0 {
			return ""
		}
	}
	if b.Allowed() < 1 {
		return fmt.Sprintf("Cannot evict pod as it would violate the pod's disruption budget. The disruption budget needs %d healthy pods and has %d currently", b.Desired(), b.Healthy)
	}
	return ""
}
