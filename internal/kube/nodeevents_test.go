package kube

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/prox-ops/drover/internal/rollout"
)

// TestNodeEventsFromSteps feeds the sink a node's steps (the fake
// clientset stands in for the API server; the real one is in the CLI's
// run as the runner's ServiceAccount) and reads back the Events and the
// annotation.
func TestNodeEventsFromSteps(t *testing.T) {
	ctx := context.Background()
	c := fake.NewSimpleClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "w-1", UID: "uid-1"}})
	// A step starting marks the node with the run.
	n := NewNodeEvents(c, "run-1", func(msg string) { t.Error(msg) })
	n.Event(rollout.Event{Kind: rollout.EventStep, Node: "w-1", Step: rollout.StepCordon, Status: rollout.StatusStarted})
	n.Close(ctx)
	if node, _ := c.CoreV1().Nodes().Get(ctx, "w-1", metav1.GetOptions{}); node.Annotations[RunAnnotation] != "run-1" {
		t.Fatalf("annotations %v", node.Annotations)
	}
	n = NewNodeEvents(c, "run-1", func(msg string) { t.Error(msg) })
	for _, e := range []rollout.Event{
		{Kind: rollout.EventStep, Node: "w-1", Step: rollout.StepCordon, Status: rollout.StatusDone},
		{Kind: rollout.EventStep, Node: "w-1", Step: rollout.StepDrain, Status: rollout.StatusStarted},
		{Kind: rollout.EventStep, Node: "w-1", Step: rollout.StepHealth, Status: rollout.StatusFailed, Message: "DNS Resolution failed"},
		{Kind: rollout.EventNodeDone, Node: "w-1", NodeReport: &rollout.NodeReport{Outcome: rollout.OutcomeRolledBack}},
	} {
		n.Event(e)
	}
	n.Close(ctx)
	evs, err := c.EventsV1().Events("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs.Items {
		got = append(got, e.Reason+"/"+e.Type)
		if e.ReportingController != "drover" || e.Regarding.UID != "uid-1" || !strings.Contains(e.Note, "run-1") {
			t.Errorf("event %+v", e)
		}
	}
	if strings.Join(got, " ") != "Cordoned/Normal Draining/Normal HealthFailed/Warning RolledBack/Warning" {
		t.Fatalf("events %v", got)
	}
	node, _ := c.CoreV1().Nodes().Get(ctx, "w-1", metav1.GetOptions{})
	if _, ok := node.Annotations[RunAnnotation]; ok {
		t.Fatalf("annotation left: %v", node.Annotations)
	}
}
