package kube

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/prox-ops/drover/internal/rollout"
)

var _ rollout.RoomChecker = (*Client)(nil)

// Homeless is a pod a batch's drain would evict that fits on no node
// left, and why not, per reason with the nodes it holds for.
type Homeless struct {
	Pod      string
	Requests string
	Why      string
}

// NoRoomError says which pods of a batch would find no node: draining it
// would leave them Pending. The run stops before the batch (exit 4).
type NoRoomError struct {
	Nodes    []string
	Homeless []Homeless
}

// NoRoom marks the error for the engine: the batch does not start.
func (e *NoRoomError) NoRoom() bool { return true }

func (e *NoRoomError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d pod(s) on %s would find no other node to run on:", len(e.Homeless), strings.Join(e.Nodes, ", "))
	for i, h := range e.Homeless {
		if i == 10 {
			fmt.Fprintf(&b, "\n  and %d more", len(e.Homeless)-10)
			break
		}
		fmt.Fprintf(&b, "\n  %s (requests %s): %s", h.Pod, h.Requests, h.Why)
	}
	b.WriteString("\nmake room (uncordon or add a node, free GPUs), or run this batch later")
	return b.String()
}

// CheckRoom places, as the scheduler's filters would, the pods a drain of
// nodes would evict (not DaemonSets', not mirror pods, not finished) on
// the schedulable nodes that remain, one after the other. A pod that fits
// nowhere makes a *NoRoomError.
func (c *Client) CheckRoom(ctx context.Context, nodes []string) error {
	leaving := func(node string) bool { return slices.Contains(nodes, node) }
	// The pods that move first: when none of them requests anything, the
	// other nodes' pods need not be read (what they request cannot stop a
	// pod that requests nothing; the pod-count limit is then left out).
	var moving []*corev1.Pod
	asking := false
	for _, n := range nodes {
		ps, err := c.podsOn(ctx, n)
		if err != nil {
			return err
		}
		for _, p := range ps {
			if EvictedByDrain(p) {
				moving = append(moving, p)
				asking = asking || asks(p)
			}
		}
	}
	if len(moving) == 0 {
		return nil
	}
	ns, all, err := c.roomView(ctx, asking)
	if err != nil {
		return err
	}
	var staying []*corev1.Pod
	for _, p := range all {
		if !leaving(p.Spec.NodeName) {
			staying = append(staying, p)
		}
	}
	room := NewRoom(ns, staying)
	e := &NoRoomError{Nodes: nodes}
	for _, p := range moving {
		moved := p.DeepCopy()
		moved.Spec.NodeName = ""
		if at, why := room.Place(moved, func(n string) bool { return !leaving(n) }); at == "" {
			e.Homeless = append(e.Homeless, Homeless{Pod: p.Namespace + "/" + p.Name, Requests: requestString(Requests(p)), Why: shortWhy(why)})
		}
	}
	if len(e.Homeless) > 0 {
		return e
	}
	return nil
}

// RoomReader is where the room check reads the nodes and pods: the run's
// informer cache (or the lab's index) rather than a list of every pod
// for every batch.
type RoomReader interface {
	Nodes(ctx context.Context) ([]*corev1.Node, error)
	PodsOn(ctx context.Context, node string) ([]*corev1.Pod, error)
}

// podsOn are the pods on node, from the Reader when set.
func (c *Client) podsOn(ctx context.Context, node string) ([]*corev1.Pod, error) {
	if c.Reader != nil {
		return c.Reader.PodsOn(ctx, node)
	}
	pl, err := c.Client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		return nil, fmt.Errorf("room check: list the pods on %s: %w", node, err)
	}
	out := make([]*corev1.Pod, len(pl.Items))
	for i := range pl.Items {
		out[i] = &pl.Items[i]
	}
	return out, nil
}

// roomView reads every node, and every pod when withPods, from the Reader
// when set.
func (c *Client) roomView(ctx context.Context, withPods bool) ([]*corev1.Node, []*corev1.Pod, error) {
	if c.Reader != nil {
		ns, err := c.Reader.Nodes(ctx)
		if err != nil || !withPods {
			return ns, nil, err
		}
		ps, err := c.Reader.PodsOn(ctx, "")
		if err != nil {
			return nil, nil, fmt.Errorf("room check: read the pods: %w", err)
		}
		return ns, ps, nil
	}
	nl, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("room check: list the nodes: %w", err)
	}
	var ns []*corev1.Node
	for i := range nl.Items {
		ns = append(ns, &nl.Items[i])
	}
	if !withPods {
		return ns, nil, nil
	}
	var all []*corev1.Pod
	opts := metav1.ListOptions{Limit: 500}
	for {
		pl, err := c.Client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, opts)
		if err != nil {
			return nil, nil, fmt.Errorf("room check: list the pods: %w", err)
		}
		for i := range pl.Items {
			all = append(all, &pl.Items[i])
		}
		if pl.Continue == "" {
			return ns, all, nil
		}
		opts.Continue = pl.Continue
	}
}

// EvictedByDrain says whether a drain evicts the pod: not a DaemonSet's,
// not a static pod's mirror, not finished, not already terminating.
func EvictedByDrain(p *corev1.Pod) bool {
	if _, mirror := p.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
		return false
	}
	if ref := metav1.GetControllerOf(p); ref != nil && ref.Kind == "DaemonSet" {
		return false
	}
	return p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

func requestString(req corev1.ResourceList) string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(req)) {
		if q := req[name]; !q.IsZero() {
			parts = append(parts, fmt.Sprintf("%s=%s", name, q.String()))
		}
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}

// shortWhy groups the nodes by why they did not take a pod.
func shortWhy(why map[string]string) string {
	if len(why) == 0 {
		return "no other node"
	}
	by := map[string][]string{}
	for n, r := range why {
		by[r] = append(by[r], n)
	}
	var parts []string
	for _, r := range slices.Sorted(maps.Keys(by)) {
		ns := slices.Sorted(slices.Values(by[r]))
		parts = append(parts, fmt.Sprintf("%s (%s)", r, strings.Join(ns, ", ")))
	}
	return strings.Join(parts, "; ")
}
