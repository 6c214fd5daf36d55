package run

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/prox-ops/drover/internal/kube"
	"github.com/prox-ops/drover/internal/rollout"
)

// Self is where drover runs, when it runs inside the cluster it upgrades
// (the kit's runner pod on one of the cluster's workers).
type Self struct {
	// Node is the node drover's pod runs on ("" outside the cluster).
	Node string `json:"node,omitempty"`
	// Namespace and Pod name drover's pod.
	Namespace string `json:"namespace,omitempty"`
	Pod       string `json:"pod,omitempty"`
	// Source says how drover knows (NODE_NAME, or its pod read back).
	Source string `json:"source,omitempty"`
	// Spec is drover's pod, when it could be read: what a new runner pod
	// asks of a node (requests, tolerations, selectors).
	Spec *corev1.Pod `json:"-"`
}

// String says where drover runs, for people.
func (s Self) String() string {
	if s.Node == "" {
		return "outside the cluster"
	}
	out := s.Node
	if s.Pod != "" {
		out += " (pod " + s.Namespace + "/" + s.Pod + ")"
	}
	return out
}

// onIt names drover's node as the node it runs on.
func (s Self) onIt() string {
	out := s.Node + ", the node drover runs on"
	if s.Pod != "" {
		out += " (its pod " + s.Namespace + "/" + s.Pod + ")"
	}
	return out
}

// findSelf finds drover's node like a pod would tell it: NODE_NAME and
// POD_NAME from the downward API (the kit's runner template sets both),
// else its own pod, $POD_NAMESPACE/$HOSTNAME, read back. Outside a pod (no
// namespace, or no such pod) drover runs outside the cluster.
func findSelf(ctx context.Context, kc kubernetes.Interface, getenv func(string) string) (Self, error) {
	get := func(k string) string {
		if getenv == nil {
			return ""
		}
		return strings.TrimSpace(getenv(k))
	}
	s := Self{Node: get("NODE_NAME"), Namespace: get("POD_NAMESPACE"), Pod: get("POD_NAME")}
	if s.Node != "" {
		s.Source = "NODE_NAME"
	}
	if s.Pod == "" {
		s.Pod = get("HOSTNAME")
	}
	if kc == nil || s.Namespace == "" || s.Pod == "" {
		if s.Node == "" {
			return Self{}, nil
		}
		return s, nil
	}
	pod, err := kc.CoreV1().Pods(s.Namespace).Get(ctx, s.Pod, metav1.GetOptions{})
	switch {
	case err == nil:
		s.Spec = pod
		if s.Node == "" {
			s.Node, s.Source = pod.Spec.NodeName, "its pod "+s.Namespace+"/"+s.Pod
		}
	case s.Node != "":
		// NODE_NAME says it; the pod's requests are unknown.
	case apierrors.IsNotFound(err):
		return Self{}, nil // not a pod of this cluster: drover runs outside it
	default:
		return Self{}, &rollout.BlockedError{Reason: fmt.Sprintf("drover runs in a pod (POD_NAMESPACE=%s) but cannot read it to learn its node; "+
			"pass NODE_NAME from the downward API (spec.nodeName), as the kit's runner template does", s.Namespace), Err: err}
	}
	return s, nil
}

// handOffRoom checks that a runner pod like drover's could start on
// another node once drover's own node is cordoned: otherwise the hand-off
// cannot succeed, and the run must not start.
func handOffRoom(ctx context.Context, kc kubernetes.Interface, self Self) error {
	nodes, err := kc.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list the nodes a runner could start on: %w", err)
	}
	pods, err := kc.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list the pods that take room on them: %w", err)
	}
	var ns []*corev1.Node
	for i := range nodes.Items {
		ns = append(ns, &nodes.Items[i])
	}
	var ps []*corev1.Pod
	for i := range pods.Items {
		if self.Spec != nil && pods.Items[i].UID == self.Spec.UID {
			continue // the new runner pod replaces this one
		}
		ps = append(ps, &pods.Items[i])
	}
	runner := &corev1.Pod{}
	if self.Spec != nil {
		runner = self.Spec.DeepCopy()
		runner.Spec.NodeName = ""
	}
	if at, why := kube.NewRoom(ns, ps).Place(runner, func(n string) bool { return n != self.Node }); at == "" {
		return &rollout.BlockedError{Reason: "drover runs on " + self.Node + " and must hand the run to a runner on another node before that node's turn, " +
			"but no other node could start a runner pod like its own: " + whyNot(why)}
	}
	return nil
}

// whyNot lists, shortly, why no node took a pod.
func whyNot(why map[string]string) string {
	if len(why) == 0 {
		return "there is no other node"
	}
	by := map[string][]string{}
	for n, r := range why {
		by[r] = append(by[r], n)
	}
	var parts []string
	for _, r := range slices.Sorted(maps.Keys(by)) {
		names := by[r]
		sort.Strings(names)
		if len(names) > 3 {
			names = append(names[:3], fmt.Sprintf("%d more", len(names)-3))
		}
		parts = append(parts, strings.Join(names, ", ")+": "+r)
	}
	return strings.Join(parts, "; ")
}
