package kube

import (
	"context"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/prox-ops/drover/internal/rollout"
)

// DoNotDisrupt is the annotation of a pod that holds its node: drover
// leaves the node until the pod finished (Karpenter's do-not-disrupt, in
// drover's name).
const DoNotDisrupt = "drover.dev/do-not-disrupt"

var _ rollout.HoldingPodReader = (*Client)(nil)

// Holds says whether a pod holds its node: it runs (not finished, not
// terminating) and is annotated drover.dev/do-not-disrupt: "true" or
// matches one of the blocking selectors (rollout.blockingPods).
func Holds(p *corev1.Pod, blocking []labels.Selector) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return false
	}
	if p.Annotations[DoNotDisrupt] == "true" {
		return true
	}
	for _, s := range blocking {
		if s.Matches(labels.Set(p.Labels)) {
			return true
		}
	}
	return false
}

// HoldingPods are the pods that hold the node, as namespace/name, sorted.
func (c *Client) HoldingPods(ctx context.Context, node string) ([]string, error) {
	pods, err := c.Client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		return nil, fmt.Errorf("list the pods on %s: %w", node, err)
	}
	var out []string
	for i := range pods.Items {
		if p := &pods.Items[i]; Holds(p, c.BlockingPods) {
			out = append(out, p.Namespace+"/"+p.Name)
		}
	}
	sort.Strings(out)
	return out, nil
}
