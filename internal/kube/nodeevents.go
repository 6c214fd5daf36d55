package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/prox-ops/drover/internal/rollout"
)

// RunAnnotation marks a Node drover is working on, with the run's id.
const RunAnnotation = "drover.prox-ops.io/run"

// NodeEvents makes a run visible in the cluster: each node step becomes a
// Kubernetes Event on the Node (events.k8s.io/v1, reportingController
// drover: `kubectl describe node`, `kubectl events`), and the node carries
// RunAnnotation while drover works on it. It never holds the run up: the
// engine's events go through a queue, and a failed call costs only that
// event (it is logged).
type NodeEvents struct {
	client   kubernetes.Interface
	runID    string
	instance string
	log      func(string)

	q    chan rollout.Event
	done chan struct{}
	once sync.Once
	// uids caches each Node's UID (kubectl describe node matches on it);
	// a replaced node registers with a new one.
	uids map[string]types.UID
}

// NewNodeEvents starts recording; Close flushes and stops it. Give it a
// client of its own: its calls then never wait behind the run's in the
// client's rate limiter.
func NewNodeEvents(client kubernetes.Interface, runID string, log func(string)) *NodeEvents {
	host, _ := os.Hostname()
	n := &NodeEvents{
		client: client, runID: runID, instance: "drover-" + host, log: log,
		q: make(chan rollout.Event, 1024), done: make(chan struct{}), uids: map[string]types.UID{},
	}
	go func() {
		defer close(n.done)
		for e := range n.q {
			n.handle(e)
		}
	}()
	return n
}

// Event queues an engine event; when the queue is full it is dropped.
func (n *NodeEvents) Event(e rollout.Event) {
	if e.Node == "" || (e.Kind != rollout.EventStep && e.Kind != rollout.EventNodeDone) {
		return
	}
	select {
	case n.q <- e:
	default:
		n.logf("node events: queue full, the event of %s dropped", e.Node)
	}
}

// Close records what is queued and stops, waiting at most until ctx ends.
func (n *NodeEvents) Close(ctx context.Context) {
	n.once.Do(func() { close(n.q) })
	select {
	case <-n.done:
	case <-ctx.Done():
	}
}

func (n *NodeEvents) logf(format string, args ...any) {
	if n.log != nil {
		n.log(fmt.Sprintf(format, args...))
	}
}

// eventFor is the reason, action and type of a step's transition, or ok
// false for one that is not worth an Event.
func eventFor(e rollout.Event) (reason, action, typ string, ok bool) {
	if e.Kind == rollout.EventNodeDone {
		if e.NodeReport == nil {
			return "", "", "", false
		}
		switch e.NodeReport.Outcome {
		case rollout.OutcomeUpgraded:
			return "Upgraded", "Upgrade", corev1.EventTypeNormal, true
		case rollout.OutcomeRolledBack:
			return "RolledBack", "Rollback", corev1.EventTypeWarning, true
		case rollout.OutcomeFailed:
			return "UpgradeFailed", "Upgrade", corev1.EventTypeWarning, true
		case rollout.OutcomeInterrupted:
			return "UpgradeInterrupted", "Upgrade", corev1.EventTypeWarning, true
		}
		return "", "", "", false
	}
	if e.Status == rollout.StatusFailed {
		return stepReason(e.Step) + "Failed", stepAction(e.Step), corev1.EventTypeWarning, true
	}
	type key struct {
		s  rollout.Step
		st rollout.Status
	}
	m := map[key][3]string{
		{rollout.StepEtcdGuard, rollout.StatusDone}:   {"EtcdGuarded", "EtcdGuard", corev1.EventTypeNormal},
		{rollout.StepCordon, rollout.StatusDone}:      {"Cordoned", "Cordon", corev1.EventTypeNormal},
		{rollout.StepDrain, rollout.StatusStarted}:    {"Draining", "Drain", corev1.EventTypeNormal},
		{rollout.StepDrain, rollout.StatusDone}:       {"Drained", "Drain", corev1.EventTypeNormal},
		{rollout.StepDestroy, rollout.StatusStarted}:  {"Replacing", "Replace", corev1.EventTypeNormal},
		{rollout.StepCreate, rollout.StatusDone}:      {"Replaced", "Replace", corev1.EventTypeNormal},
		{rollout.StepUpgrade, rollout.StatusStarted}:  {"Upgrading", "Upgrade", corev1.EventTypeNormal},
		{rollout.StepWaitReady, rollout.StatusDone}:   {"BackAtNewVersion", "WaitReady", corev1.EventTypeNormal},
		{rollout.StepUncordon, rollout.StatusDone}:    {"Uncordoned", "Uncordon", corev1.EventTypeNormal},
		{rollout.StepHealth, rollout.StatusDone}:      {"HealthPassed", "HealthGate", corev1.EventTypeNormal},
		{rollout.StepRollback, rollout.StatusStarted}: {"RollingBack", "Rollback", corev1.EventTypeWarning},
	}
	if v, ok := m[key{e.Step, e.Status}]; ok {
		return v[0], v[1], v[2], true
	}
	return "", "", "", false
}

func stepReason(s rollout.Step) string {
	switch s {
	case rollout.StepHealth:
		return "Health"
	case rollout.StepWaitReady:
		return "WaitReady"
	case rollout.StepEtcdGuard:
		return "EtcdGuard"
	}
	return stepAction(s)
}

func stepAction(s rollout.Step) string {
	b := []byte(s)
	out := make([]byte, 0, len(b))
	upper := true
	for _, c := range b {
		if c == '-' {
			upper = true
			continue
		}
		if upper && c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		upper = false
		out = append(out, c)
	}
	return string(out)
}

func (n *NodeEvents) handle(e rollout.Event) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	switch {
	case e.Kind == rollout.EventNodeDone:
		n.annotate(ctx, e.Node, nil)
	case e.Status == rollout.StatusStarted:
		// Again on every step: a replaced node registers as a new Node.
		n.annotate(ctx, e.Node, &n.runID)
	}
	reason, action, typ, ok := eventFor(e)
	if !ok {
		return
	}
	if e.Step == rollout.StepCreate || e.Step == rollout.StepWaitReady {
		delete(n.uids, e.Node)
	}
	uid, ok := n.uids[e.Node]
	if !ok {
		if node, err := n.client.CoreV1().Nodes().Get(ctx, e.Node, metav1.GetOptions{}); err == nil {
			uid = node.UID
			n.uids[e.Node] = uid
		}
	}
	note := fmt.Sprintf("drover run %s: %s %s", n.runID, e.Step, e.Status)
	if e.Kind == rollout.EventNodeDone {
		note = fmt.Sprintf("drover run %s: %s", n.runID, e.NodeReport.Outcome)
	}
	if e.Message != "" {
		note += ": " + e.Message
	}
	if len(note) > 1000 {
		note = note[:1000]
	}
	now := metav1.NowMicro()
	ev := &eventsv1.Event{
		// Named as client-go's recorder names events: object, then time.
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", e.Node, now.UnixNano()), Namespace: metav1.NamespaceDefault},
		EventTime:  now, ReportingController: "drover", ReportingInstance: n.instance,
		Action: action, Reason: reason, Type: typ, Note: note,
		Regarding: corev1.ObjectReference{APIVersion: "v1", Kind: "Node", Name: e.Node, UID: uid},
	}
	if _, err := n.client.EventsV1().Events(metav1.NamespaceDefault).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		n.logf("node events: %s on %s: %v", reason, e.Node, err)
	}
}

// annotate sets (run non-nil) or removes the run annotation; a node that
// is not there (its VM replaced) is left alone.
func (n *NodeEvents) annotate(ctx context.Context, node string, run *string) {
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{RunAnnotation: run}}})
	if _, err := n.client.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "drover"}); err != nil && !apierrors.IsNotFound(err) {
		n.logf("node events: annotate %s: %v", node, err)
	}
}
