// Package health implements the engine's health gate: named checks that
// read the cluster API and say what is wrong and where.
package health

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/kube"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/version"
)

// Check names.
const (
	CheckNodeReadiness = "Node Readiness"
	CheckPodHealth     = "Pod Health"
)

// maxDiagnostics bounds each failure's explanation.
const maxDiagnostics = 10

// Gate runs every check concurrently and collects their results.
type Gate struct {
	Client kubernetes.Interface
	Clock  clock.Clock
	// CriticalNamespaces must have every pod Running and Ready (or Succeeded).
	CriticalNamespaces []string
	// PendingGrace is how long a pod may be Pending anywhere. Default 5m.
	PendingGrace time.Duration
}

var _ rollout.HealthGate = (*Gate)(nil)

// DefaultCriticalNamespaces are checked when none are configured.
var DefaultCriticalNamespaces = []string{"kube-system", "flux-system", "rook-ceph"}

type check struct {
	name string
	run  func(ctx context.Context, in rollout.GateInput) (diags []string, err error)
}

func (g *Gate) checks() []check {
	return []check{
		{CheckNodeReadiness, g.nodeReadiness},
		{CheckPodHealth, g.podHealth},
	}
}

// Check runs every check once.
func (g *Gate) Check(ctx context.Context, in rollout.GateInput) rollout.HealthResult {
	cs := g.checks()
	res := make([]rollout.CheckResult, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() { // the checks only read the API: no clock waits inside
			defer wg.Done()
			start := time.Now()
			diags, err := c.run(ctx, in)
			if err != nil {
				diags = append([]string{"check could not run: " + err.Error()}, diags...)
			}
			res[i] = rollout.CheckResult{Name: c.name, Passed: len(diags) == 0, Attempts: 1, Diagnostics: clip(diags), Duration: time.Since(start)}
		}()
	}
	wg.Wait()
	return rollout.HealthResult{Checks: res}
}

func clip(d []string) []string {
	if len(d) <= maxDiagnostics {
		return d
	}
	out := append([]string(nil), d[:maxDiagnostics-1]...)
	return append(out, fmt.Sprintf("... and %d more", len(d)-maxDiagnostics+1))
}

func (g *Gate) nodeReadiness(ctx context.Context, in rollout.GateInput) ([]string, error) {
	n, err := g.Client.CoreV1().Nodes().Get(ctx, in.Node.Name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	var d []string
	if !kube.IsReady(n) {
		d = append(d, fmt.Sprintf("node %s is not Ready", n.Name))
	}
	if n.Spec.Unschedulable {
		d = append(d, fmt.Sprintf("node %s is still cordoned", n.Name))
	}
	if v, ok := kube.TalosVersion(n.Status.NodeInfo.OSImage); !ok || v.Compare(in.Want.Talos) != 0 {
		d = append(d, fmt.Sprintf("node %s runs %q, want Talos %s", n.Name, n.Status.NodeInfo.OSImage, in.Want.Talos))
	}
	if !in.Want.Kubernetes.IsZero() {
		if v, err := version.Parse(n.Status.NodeInfo.KubeletVersion, true); err != nil || v.Compare(in.Want.Kubernetes) != 0 {
			d = append(d, fmt.Sprintf("node %s runs kubelet %s, want %s", n.Name, n.Status.NodeInfo.KubeletVersion, in.Want.Kubernetes))
		}
	}
	if in.Before != nil {
		for _, l := range kube.DiffIdentity(*in.Before, kube.IdentityOf(n)).Lost {
			d = append(d, "node "+n.Name+": "+l)
		}
	}
	return d, nil
}

var badWaiting = map[string]bool{"CrashLoopBackOff": true, "ImagePullBackOff": true, "ErrImagePull": true, "CreateContainerConfigError": true}

func (g *Gate) podHealth(ctx context.Context, in rollout.GateInput) ([]string, error) {
	var d []string
	onNode, err := g.Client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", in.Node.Name).String(),
	})
	if err != nil {
		return nil, err
	}
	for _, p := range onNode.Items {
		if p.Spec.NodeName != in.Node.Name {
			continue
		}
		if why := brokenPod(&p); why != "" {
			d = append(d, fmt.Sprintf("pod %s/%s on %s: %s", p.Namespace, p.Name, in.Node.Name, why))
		}
	}
	all, err := g.Client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	grace := g.PendingGrace
	if grace <= 0 {
		grace = 5 * time.Minute
	}
	critical := map[string]bool{}
	nss := g.CriticalNamespaces
	if nss == nil {
		nss = DefaultCriticalNamespaces
	}
	for _, ns := range nss {
		critical[ns] = true
	}
	now := g.Clock.Now()
	for _, p := range all.Items {
		if p.Status.Phase == corev1.PodPending && now.Sub(p.CreationTimestamp.Time) > grace {
			d = append(d, fmt.Sprintf("pod %s/%s Pending for %s", p.Namespace, p.Name, now.Sub(p.CreationTimestamp.Time).Round(time.Second)))
			continue
		}
		if critical[p.Namespace] && p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && !(p.Status.Phase == corev1.PodRunning && podReady(&p)) {
			d = append(d, fmt.Sprintf("critical pod %s/%s is %s and not Ready (node %s)", p.Namespace, p.Name, p.Status.Phase, p.Spec.NodeName))
		}
	}
	sort.Strings(d)
	return d, nil
}

// brokenPod says why a pod is broken, or "".
func brokenPod(p *corev1.Pod) string {
	for _, cs := range append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if w := cs.State.Waiting; w != nil && badWaiting[w.Reason] {
			return fmt.Sprintf("container %s is in %s (%d restarts)", cs.Name, w.Reason, cs.RestartCount)
		}
		if t := cs.State.Terminated; t != nil && t.Reason == "Error" && p.Status.Phase != corev1.PodSucceeded {
			return fmt.Sprintf("container %s terminated with Error (exit %d)", cs.Name, t.ExitCode)
		}
	}
	if p.Status.Phase == corev1.PodFailed {
		return "pod Failed: " + p.Status.Reason
	}
	return ""
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
