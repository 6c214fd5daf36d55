// Package kube implements the engine's cluster operations over client-go:
// cordon, drain (through k8s.io/kubectl/pkg/drain and the eviction API),
// wait Ready and node identity. The lab runs the same code against its
// simulated cluster.
package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/kubectl/pkg/drain"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/version"
)

// Client performs node operations. Waits go through Clock.
type Client struct {
	Client kubernetes.Interface
	Clock  clock.Clock
	// EvictRetryDelay is the pause after an eviction refused with 429
	// (a PodDisruptionBudget at its limit). Default 5s.
	EvictRetryDelay time.Duration
	// PollInterval is how often waits look again. Default 2s.
	PollInterval time.Duration
	// DeleteEmptyDirData lets drain evict pods with emptyDir volumes.
	DeleteEmptyDirData bool
	// ForceAfterTimeout deletes the pods a PodDisruptionBudget still
	// protects when the drain times out. Off by default: drover never
	// deletes pods around a budget unless the configuration says so.
	ForceAfterTimeout bool
	// OnEvict, when set, is told of each eviction attempt: err is nil when
	// it was accepted (tests count them).
	OnEvict func(node string, pod string, err error)
	// Reader, when set, is where the room check reads nodes and pods (the
	// run's informer cache).
	Reader RoomReader
	// BlockingPods are the label selectors of pods that hold their node
	// like a drover.dev/do-not-disrupt annotation (rollout.blockingPods).
	BlockingPods []labels.Selector
}

var _ rollout.Cluster = (*Client)(nil)

func (c *Client) retryDelay() time.Duration {
	if c.EvictRetryDelay > 0 {
		return c.EvictRetryDelay
	}
	return 5 * time.Second
}

func (c *Client) pollInterval() time.Duration {
	if c.PollInterval > 0 {
		return c.PollInterval
	}
	return 2 * time.Second
}

// Identity reads the node's identity.
func (c *Client) Identity(ctx context.Context, node string) (rollout.Identity, error) {
	n, err := c.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return rollout.Identity{}, fmt.Errorf("get node %s: %w", node, err)
	}
	return IdentityOf(n), nil
}

// IdentityOf snapshots a Node object.
func IdentityOf(n *corev1.Node) rollout.Identity {
	id := rollout.Identity{
		UID:            string(n.UID),
		BootID:         n.Status.NodeInfo.BootID,
		Created:        n.CreationTimestamp.Time,
		Ready:          IsReady(n),
		Unschedulable:  n.Spec.Unschedulable,
		OSImage:        n.Status.NodeInfo.OSImage,
		KubeletVersion: n.Status.NodeInfo.KubeletVersion,
		Labels:         maps.Clone(n.Labels),
		Annotations:    maps.Clone(n.Annotations),
		Allocatable:    map[string]string{},
	}
	for _, t := range n.Spec.Taints {
		if strings.HasPrefix(t.Key, "node.kubernetes.io/") {
			continue // condition taints (cordon, not-ready, unreachable) come and go by themselves
		}
		id.Taints = append(id.Taints, fmt.Sprintf("%s=%s:%s", t.Key, t.Value, t.Effect))
	}
	sort.Strings(id.Taints)
	for k, q := range n.Status.Allocatable {
		id.Allocatable[string(k)] = q.String()
	}
	return id
}

// IsReady reports whether the node's Ready condition is True.
func IsReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

var osImageVersionRE = regexp.MustCompile(`\((v?\d+\.\d+\.\d+[^)\s]*)\)`)

// TalosVersion reads the Talos version from an osImage such as "Talos (v1.11.3)".
func TalosVersion(osImage string) (version.Version, bool) {
	m := osImageVersionRE.FindStringSubmatch(osImage)
	if m == nil {
		return version.Version{}, false
	}
	v, err := version.Parse(m[1], true)
	return v, err == nil
}

// Cordon marks the node unschedulable; cordoning a cordoned node is a no-op.
func (c *Client) Cordon(ctx context.Context, node string) error {
	return c.setUnschedulable(ctx, node, true)
}

// Uncordon marks the node schedulable; uncordoning a schedulable node is a no-op.
func (c *Client) Uncordon(ctx context.Context, node string) error {
	return c.setUnschedulable(ctx, node, false)
}

func (c *Client) setUnschedulable(ctx context.Context, node string, desired bool) error {
	n, err := c.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get node %s: %w", node, err)
	}
	h := drain.NewCordonHelper(n)
	if !h.UpdateIfRequired(desired) {
		return nil
	}
	err, patchErr := h.PatchOrReplaceWithContext(ctx, c.Client, false)
	if err != nil {
		verb := map[bool]string{true: "cordon", false: "uncordon"}[desired]
		if patchErr != nil {
			err = errors.Join(err, patchErr)
		}
		return fmt.Errorf("%s %s: %w", verb, node, err)
	}
	return nil
}

// DeleteNode deletes the Node object; a missing node is not an error.
func (c *Client) DeleteNode(ctx context.Context, node string) error {
	err := c.Client.CoreV1().Nodes().Delete(ctx, node, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete node %s: %w", node, err)
	}
	return nil
}

// BlockedPod is a pod a drain could not evict.
type BlockedPod struct {
	Namespace string
	Pod       string
	// PDB names the PodDisruptionBudget that refused the eviction, if any.
	PDB    string
	Reason string
}

func (b BlockedPod) String() string {
	s := b.Namespace + "/" + b.Pod
	if b.PDB != "" {
		s += " (blocked by PodDisruptionBudget " + b.Namespace + "/" + b.PDB + ")"
	}
	if b.Reason != "" {
		s += ": " + b.Reason
	}
	return s
}

// DrainTimeoutError is a drain that did not finish in time. The node has
// been uncordoned again.
type DrainTimeoutError struct {
	Node    string
	Timeout time.Duration
	Blocked []BlockedPod
}

// blockedShown is how many blocked pods an error names; the rest are
// counted (the report and Node events hold every one).
const blockedShown = 10

func (e *DrainTimeoutError) Error() string {
	parts := make([]string, 0, min(len(e.Blocked), blockedShown)+1)
	for i, b := range e.Blocked {
		if i == blockedShown {
			parts = append(parts, fmt.Sprintf("and %d more", len(e.Blocked)-blockedShown))
			break
		}
		parts = append(parts, b.String())
	}
	return fmt.Sprintf("drain of %s timed out after %s with %d pod(s) still present: %s",
		e.Node, e.Timeout, len(e.Blocked), strings.Join(parts, "; "))
}

// Drain evicts every pod on the node that drain would delete (DaemonSet
// pods are left alone) through the eviction API, so PodDisruptionBudgets
// are honoured. A refused eviction (429) is retried every EvictRetryDelay
// until timeout; pods are never deleted around a PDB. On timeout the node is
// uncordoned and a *DrainTimeoutError names each remaining pod and its PDB.
//
// Pod selection and the eviction call come from k8s.io/kubectl/pkg/drain;
// the retry loop is drover's so that it waits through Clock.
//
// progress, when set, is told once per pod whose eviction a budget refuses:
// which pod, which budget, how many disruptions it allows, so a drain that
// waits on a budget is visible before it times out.
func (c *Client) Drain(ctx context.Context, node string, timeout time.Duration, progress func(msg string)) error {
	h := &drain.Helper{
		Ctx:                  ctx,
		Client:               c.Client,
		IgnoreAllDaemonSets:  true,
		DeleteEmptyDirData:   c.DeleteEmptyDirData,
		GracePeriodSeconds:   -1,
		Timeout:              timeout,
		EvictErrorRetryDelay: c.retryDelay(),
		Out:                  io.Discard,
		ErrOut:               io.Discard,
	}
	gv, err := drain.CheckEvictionSupport(c.Client)
	if err != nil {
		return fmt.Errorf("drain %s: discover the eviction API: %w", node, err)
	}
	if gv.Empty() {
		return fmt.Errorf("drain %s: the API server offers no eviction API; drover does not delete pods around PodDisruptionBudgets", node)
	}
	deadline := c.Clock.Now().Add(timeout)
	refused := map[string]string{}
	told := map[string]bool{}
	for {
		list, errs := h.GetPodsForDeletion(node)
		if len(errs) > 0 {
			return fmt.Errorf("drain %s: %w", node, errors.Join(errs...))
		}
		pods := list.Pods()
		if len(pods) == 0 {
			return nil
		}
		blocked := false
		for _, p := range pods {
			if p.DeletionTimestamp != nil {
				continue // already terminating
			}
			key := p.Namespace + "/" + p.Name
			err := h.EvictPod(p, gv)
			if c.OnEvict != nil {
				c.OnEvict(node, key, err)
			}
			switch {
			case err == nil || apierrors.IsNotFound(err):
				delete(refused, key)
			case apierrors.IsTooManyRequests(err):
				refused[key] = err.Error()
				blocked = true
				if progress != nil && !told[key] {
					told[key] = true
					progress(c.refusal(ctx, &p))
				}
			default:
				return fmt.Errorf("drain %s: evict %s: %w", node, key, err)
			}
		}
		wait := c.pollInterval()
		if blocked {
			wait = c.retryDelay()
		}
		left := deadline.Sub(c.Clock.Now())
		if left <= 0 {
			if c.ForceAfterTimeout {
				return c.forceDelete(ctx, h, node, pods)
			}
			return c.drainTimedOut(ctx, node, timeout, pods, refused)
		}
		if err := c.Clock.Sleep(ctx, min(wait, left)); err != nil {
			return err
		}
	}
}

// forceDelete deletes the pods left after the drain timeout, as configured,
// and waits for them to go.
func (c *Client) forceDelete(ctx context.Context, h *drain.Helper, node string, pods []corev1.Pod) error {
	for _, p := range pods {
		if err := h.DeletePod(p); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("drain %s: force-delete %s/%s after the timeout: %w", node, p.Namespace, p.Name, err)
		}
	}
	return clock.Poll(ctx, c.Clock, "force-deleted pods on "+node, c.pollInterval(), 2*time.Minute, func(context.Context) (bool, string, error) {
		list, errs := h.GetPodsForDeletion(node)
		if len(errs) > 0 {
			return false, "", errors.Join(errs...)
		}
		return len(list.Pods()) == 0, fmt.Sprintf("%d pods still terminating", len(list.Pods())), nil
	})
}

func (c *Client) drainTimedOut(ctx context.Context, node string, timeout time.Duration, pods []corev1.Pod, refused map[string]string) error {
	e := &DrainTimeoutError{Node: node, Timeout: timeout}
	for _, p := range pods {
		b := BlockedPod{Namespace: p.Namespace, Pod: p.Name, Reason: "still terminating"}
		if g := p.DeletionGracePeriodSeconds; g != nil && p.DeletionTimestamp != nil {
			grace := time.Duration(*g) * time.Second
			b.Reason = fmt.Sprintf("still terminating (its grace period is %s", grace)
			if grace > timeout {
				b.Reason += fmt.Sprintf(", longer than the drain timeout of %s: raise rollout.drainTimeout, or shorten its terminationGracePeriodSeconds", timeout)
			}
			b.Reason += ")"
		}
		if p.DeletionTimestamp == nil {
			b.Reason = "not evicted"
			if why := refused[p.Namespace+"/"+p.Name]; why != "" {
				b.Reason = "eviction refused: " + why
			}
			if pdbs, err := c.pdbsFor(ctx, &p); err == nil && len(pdbs) > 0 {
				b.PDB = strings.Join(pdbs, ",")
				b.Reason = "eviction refused by the disruption budget"
			}
		}
		e.Blocked = append(e.Blocked, b)
	}
	if err := c.Uncordon(ctx, node); err != nil {
		return errors.Join(e, err)
	}
	return e
}

// refusal says which budget refused a pod's eviction and what it allows.
func (c *Client) refusal(ctx context.Context, p *corev1.Pod) string {
	msg := fmt.Sprintf("eviction of %s/%s refused", p.Namespace, p.Name)
	list, err := c.Client.PolicyV1().PodDisruptionBudgets(p.Namespace).List(ctx, metav1.ListOptions{})
	if err == nil {
		for _, pdb := range list.Items {
			if PDBSelects(&pdb, p) {
				msg += fmt.Sprintf(" by PodDisruptionBudget %s/%s (disruptions allowed: %d, healthy %d of %d wanted)",
					pdb.Namespace, pdb.Name, pdb.Status.DisruptionsAllowed, pdb.Status.CurrentHealthy, pdb.Status.DesiredHealthy)
				break
			}
		}
	}
	return msg + fmt.Sprintf("; retrying every %s", c.retryDelay())
}

// pdbsFor names the PodDisruptionBudgets whose selector matches the pod.
func (c *Client) pdbsFor(ctx context.Context, p *corev1.Pod) ([]string, error) {
	list, err := c.Client.PolicyV1().PodDisruptionBudgets(p.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, pdb := range list.Items {
		if PDBSelects(&pdb, p) {
			out = append(out, pdb.Name)
		}
	}
	sort.Strings(out)
	return out, nil
}

// PDBSelects reports whether the PDB's selector matches the pod. A nil
// selector matches nothing, an empty one everything (as in policy/v1).
func PDBSelects(pdb *policyv1.PodDisruptionBudget, p *corev1.Pod) bool {
	if pdb.Namespace != p.Namespace || pdb.Spec.Selector == nil {
		return false
	}
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil {
		return false
	}
	return sel.Matches(labels.Set(p.Labels))
}

// notReadyYet explains why a node does not yet count as back.
func notReadyYet(n *corev1.Node, want rollout.ReadyWant) string {
	if want.NotUID != "" && string(n.UID) == want.NotUID {
		return "only the old Node object is present (same UID); waiting for the new node to register"
	}
	if !IsReady(n) {
		return "node is not Ready"
	}
	if v, ok := TalosVersion(n.Status.NodeInfo.OSImage); !ok || v.Compare(want.Talos) != 0 {
		return fmt.Sprintf("node reports osImage %q, want Talos %s", n.Status.NodeInfo.OSImage, want.Talos)
	}
	if !want.Kubelet.IsZero() {
		if v, err := version.Parse(n.Status.NodeInfo.KubeletVersion, true); err != nil || v.Compare(want.Kubelet) != 0 {
			return fmt.Sprintf("node reports kubelet %q, want %s", n.Status.NodeInfo.KubeletVersion, want.Kubelet)
		}
	}
	return ""
}

// NodeNotReadyError is a node that did not come back in time.
type NodeNotReadyError struct {
	Node    string
	Timeout time.Duration
	Why     string
}

func (e *NodeNotReadyError) Error() string {
	return fmt.Sprintf("node %s not back within %s: %s", e.Node, e.Timeout, e.Why)
}

// WaitReady waits until the node is Ready, is not the Node object with
// want.NotUID, and reports the wanted Talos and kubelet versions. It watches
// the node and also looks again every PollInterval on the clock, so a lost
// watch event only delays it; the timeout runs on the clock too.
func (c *Client) WaitReady(ctx context.Context, node string, want rollout.ReadyWant, timeout time.Duration) (rollout.Identity, error) {
	wake, stop := c.watchNode(ctx, node)
	defer stop()
	deadline := c.Clock.Now().Add(timeout)
	why := ""
	for {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			why = "node has not registered yet"
		case err != nil:
			why = err.Error() // API hiccups are retried until the timeout
		default:
			if why = notReadyYet(n, want); why == "" {
				return IdentityOf(n), nil
			}
		}
		left := deadline.Sub(c.Clock.Now())
		if left <= 0 {
			return rollout.Identity{}, &NodeNotReadyError{Node: node, Timeout: timeout, Why: why}
		}
		if err := c.sleepOrWake(ctx, min(left, c.pollInterval()), wake); err != nil {
			return rollout.Identity{}, err
		}
	}
}

// watchNode watches one Node object; the channel gets a value after each
// change. Without a watch (an API that refuses it) the channel stays silent
// and WaitReady falls back to polling.
func (c *Client) watchNode(ctx context.Context, node string) (<-chan struct{}, func()) {
	wake := make(chan struct{}, 1)
	w, err := c.Client.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", node).String()})
	if err != nil {
		return wake, func() {}
	}
	go func() {
		for range w.ResultChan() {
			select {
			case wake <- struct{}{}:
			default:
			}
		}
	}()
	return wake, w.Stop
}

// sleepOrWake waits d on the clock, or less if wake fires first.
func (c *Client) sleepOrWake(ctx context.Context, d time.Duration, wake <-chan struct{}) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-wake:
			cancel()
		case <-sctx.Done():
		}
	}()
	err := c.Clock.Sleep(sctx, d)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// ScaleSetLabel is the label ARC puts on a runner scale set's pods.
const ScaleSetLabel = "actions.github.com/scale-set-name"

// EvictRunnerPeers evicts, through the eviction API, the other pods of
// self's runner scale set on node (idle runners waiting for a job), so that
// a job queued next cannot be picked up on node. It names what it evicted;
// a pod without the scale set's label has no peers.
func (c *Client) EvictRunnerPeers(ctx context.Context, node string, self *corev1.Pod) ([]string, error) {
	set := self.Labels[ScaleSetLabel]
	if set == "" {
		return nil, nil
	}
	list, err := c.Client.CoreV1().Pods(self.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: ScaleSetLabel + "=" + set, FieldSelector: "spec.nodeName=" + node,
	})
	if err != nil {
		return nil, fmt.Errorf("list the runner pods on %s: %w", node, err)
	}
	h := &drain.Helper{Ctx: ctx, Client: c.Client, GracePeriodSeconds: -1, Out: io.Discard, ErrOut: io.Discard}
	gv, err := drain.CheckEvictionSupport(c.Client)
	if err != nil {
		return nil, fmt.Errorf("evict the runner pods on %s: %w", node, err)
	}
	if gv.Empty() {
		return nil, fmt.Errorf("evict the runner pods on %s: the API server serves no eviction API", node)
	}
	var evicted []string
	var errs []error
	for _, p := range list.Items {
		if p.UID == self.UID || p.Name == self.Name || p.DeletionTimestamp != nil {
			continue
		}
		if err := h.EvictPod(p, gv); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("evict %s/%s: %w", p.Namespace, p.Name, err))
			continue
		}
		evicted = append(evicted, p.Namespace+"/"+p.Name)
	}
	return evicted, errors.Join(errs...)
}
