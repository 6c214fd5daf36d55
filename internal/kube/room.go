package kube

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	resourcehelper "k8s.io/component-helpers/resource"
	schedulinghelper "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"k8s.io/klog/v2"
)

// Room says whether pods fit on nodes, as the scheduler's filters would
// decide: the node is Ready and schedulable; the pod's requests (CPU,
// memory and extended resources such as nvidia.com/gpu) fit in what is
// allocatable minus what the node's pods already request; every NoSchedule
// and NoExecute taint is tolerated; the node selector and the required
// node affinity match. It leaves out what it cannot see from the API alone
// (pod affinity, topology spread, volumes' zones), so a "fits" is
// necessary, not sufficient. Place reserves what it places, so the pods of
// one batch are placed one after the other, not each on the same free room.
type Room struct {
	nodes []*corev1.Node
	// used is what the pods on each node request.
	used map[string]corev1.ResourceList
	// pods counts the pods on each node (the "pods" resource).
	pods map[string]int64
}

// NewRoom is the room on nodes, with pods where they run. Finished pods
// take no room.
func NewRoom(nodes []*corev1.Node, pods []*corev1.Pod) *Room {
	r := &Room{used: map[string]corev1.ResourceList{}, pods: map[string]int64{}}
	r.nodes = slices.Clone(nodes)
	sort.Slice(r.nodes, func(i, j int) bool { return r.nodes[i].Name < r.nodes[j].Name })
	for _, p := range pods {
		if p.Spec.NodeName == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if asks(p) {
			r.add(p.Spec.NodeName, Requests(p))
		} else {
			r.pods[p.Spec.NodeName]++
		}
	}
	return r
}

// asks says whether a pod requests anything (most pods of a lab do not):
// the requests of those that do not are not computed.
func asks(p *corev1.Pod) bool {
	if p.Spec.Overhead != nil {
		return true
	}
	for _, cs := range [][]corev1.Container{p.Spec.Containers, p.Spec.InitContainers} {
		for _, c := range cs {
			if len(c.Resources.Requests) > 0 || len(c.Resources.Limits) > 0 {
				return true
			}
		}
	}
	return false
}

// Requests is what a pod asks of its node (init containers, sidecars and
// overhead counted as the scheduler counts them).
func Requests(p *corev1.Pod) corev1.ResourceList {
	return resourcehelper.PodRequests(p, resourcehelper.PodResourcesOptions{})
}

func (r *Room) add(node string, req corev1.ResourceList) {
	u := r.used[node]
	if u == nil {
		u = corev1.ResourceList{}
		r.used[node] = u
	}
	for name, q := range req {
		cur := u[name]
		cur.Add(q)
		u[name] = cur
	}
	r.pods[node]++
}

// Place finds a node for p among the nodes allowed (nil: all), reserves
// the room it takes and names it. When no node fits, why says, per node,
// the first reason it did not.
func (r *Room) Place(p *corev1.Pod, allowed func(node string) bool) (node string, why map[string]string) {
	why = map[string]string{}
	req := Requests(p)
	for _, n := range r.nodes {
		if allowed != nil && !allowed(n.Name) {
			continue
		}
		if reason := r.unfit(p, req, n); reason != "" {
			why[n.Name] = reason
			continue
		}
		r.add(n.Name, req)
		return n.Name, nil
	}
	return "", why
}

// unfit is why p does not fit on n, or "".
func (r *Room) unfit(p *corev1.Pod, req corev1.ResourceList, n *corev1.Node) string {
	if n.Spec.Unschedulable {
		return "cordoned"
	}
	if !IsReady(n) {
		return "not Ready"
	}
	noSchedule := func(t *corev1.Taint) bool {
		return t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute
	}
	if t, bad := schedulinghelper.FindMatchingUntoleratedTaint(klog.Background(), n.Spec.Taints, p.Spec.Tolerations, noSchedule, false); bad {
		return "taint " + taintString(t) + " not tolerated"
	}
	if ok, err := nodeaffinity.GetRequiredNodeAffinity(p).Match(n); err != nil || !ok {
		return "node selector or required node affinity does not match"
	}
	if r.pods[n.Name]+1 > n.Status.Allocatable.Pods().Value() && !n.Status.Allocatable.Pods().IsZero() {
		return "too many pods"
	}
	var short []string
	for _, name := range slices.Sorted(maps.Keys(req)) {
		want := req[name]
		if want.IsZero() {
			continue
		}
		alloc, ok := n.Status.Allocatable[name]
		if !ok {
			short = append(short, fmt.Sprintf("%s: none", name))
			continue
		}
		free := alloc.DeepCopy()
		if u, ok := r.used[n.Name][name]; ok {
			free.Sub(u)
		}
		if free.Cmp(want) < 0 {
			left := nonNegative(free)
			short = append(short, fmt.Sprintf("%s: wants %s, %s free", name, want.String(), left.String()))
		}
	}
	if len(short) > 0 {
		return "insufficient " + strings.Join(short, ", ")
	}
	return ""
}

func nonNegative(q resource.Quantity) resource.Quantity {
	if q.Sign() < 0 {
		return resource.Quantity{}
	}
	return q
}

func taintString(t corev1.Taint) string {
	s := t.Key
	if t.Value != "" {
		s += "=" + t.Value
	}
	return s + ":" + string(t.Effect)
}
