// Package health implements the engine's health gate: named checks that
// read the cluster API (and, for DNS and the network, run a short-lived
// probe pod) and say, in at most ten lines, what is wrong and where.
package health

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/kube"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/version"
)

// Check names, as they appear in reports.
const (
	CheckNodeReadiness = "Node Readiness"
	CheckPodHealth     = "Pod Health"
	CheckStorage       = "Storage Health"
	CheckFlux          = "Flux Reconciliation"
	CheckDNS           = "DNS Resolution"
	CheckNetwork       = "Network Connectivity"
	CheckGPU           = "GPU Availability"
)

// maxDiagnostics bounds each failure's explanation.
const maxDiagnostics = 10

// Gate runs every check concurrently and collects their results.
type Gate struct {
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	Clock   clock.Clock
	// Settings are health: from drover.yaml; zero values take the defaults.
	Settings config.Health
	// Resolve, when set, resolves a name from where drover runs (inside a
	// pod); otherwise DNS is tested by a probe pod on the node.
	Resolve func(ctx context.Context, host string) error
}

var _ rollout.HealthGate = (*Gate)(nil)

// DefaultCriticalNamespaces are checked when none are configured.
var DefaultCriticalNamespaces = []string{"kube-system", "flux-system", "rook-ceph"}

// outcome is what one check found.
type outcome struct {
	diags   []string
	notes   []string
	skipped string
}

type check struct {
	name string
	run  func(ctx context.Context, in rollout.GateInput) (outcome, error)
}

func (g *Gate) settings() config.Health {
	s := g.Settings
	d := config.Defaults().Health
	if s.CriticalNamespaces == nil {
		s.CriticalNamespaces = d.CriticalNamespaces
	}
	if s.PendingGrace.Duration <= 0 {
		s.PendingGrace = d.PendingGrace
	}
	if s.CheckTimeout.Duration <= 0 {
		s.CheckTimeout = d.CheckTimeout
	}
	if s.CephCheckInterval.Duration <= 0 {
		s.CephCheckInterval = d.CephCheckInterval
	}
	if s.ProbeImage == "" {
		s.ProbeImage = d.ProbeImage
	}
	if s.ProbeNamespace == "" {
		s.ProbeNamespace = d.ProbeNamespace
	}
	return s
}

func (g *Gate) checks() []check {
	cs := []check{
		{CheckNodeReadiness, g.nodeReadiness},
		{CheckPodHealth, g.podHealth},
		{CheckStorage, g.storage},
		{CheckFlux, g.flux},
		{CheckDNS, g.dns},
		{CheckNetwork, g.network},
		{CheckGPU, g.gpu},
	}
	s := g.settings()
	for i, c := range cs {
		if slices.Contains(s.Disable, c.name) {
			cs[i].run = func(context.Context, rollout.GateInput) (outcome, error) {
				return outcome{skipped: "disabled in the configuration (health.disable)"}, nil
			}
		}
	}
	for _, c := range s.Custom {
		cs = append(cs, check{c.Name, g.custom(c)})
	}
	return cs
}

// Check runs every check once, concurrently, each within CheckTimeout.
func (g *Gate) Check(ctx context.Context, in rollout.GateInput) rollout.HealthResult {
	cs := g.checks()
	timeout := g.settings().CheckTimeout.Duration
	res := make([]rollout.CheckResult, len(cs))
	var wg sync.WaitGroup
	var probes []func()
	for i, c := range cs {
		run := func() {
			start := time.Now()
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			o, err := c.run(cctx, in)
			if err != nil {
				o.diags = append([]string{"check could not run: " + err.Error()}, o.diags...)
			}
			took := time.Since(start)
			res[i] = rollout.CheckResult{
				Name: c.name, Passed: len(o.diags) == 0 && o.skipped == "", Skipped: o.skipped != "" && len(o.diags) == 0, SkipReason: o.skipped,
				Attempts: 1, Diagnostics: clip(o.diags), Notes: clip(o.notes), Duration: took, DurationMs: took.Milliseconds(),
			}
		}
		// Probes wait on the clock, so they run through it (a virtual clock
		// must account for every goroutine that waits on it); the other
		// checks only read the API.
		if c.name == CheckDNS || c.name == CheckNetwork {
			probes = append(probes, run)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			run()
		}()
	}
	clock.Parallel(g.Clock, probes...)
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

func (g *Gate) nodeReadiness(ctx context.Context, in rollout.GateInput) (outcome, error) {
	if in.Node.Name == "" {
		// The whole cluster: every node Ready and schedulable.
		nodes, err := g.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return outcome{}, err
		}
		var d []string
		for _, n := range nodes.Items {
			if slices.Contains(in.Exclude, n.Name) {
				continue // caught mid-step by a resumed run: down or cordoned on purpose
			}
			if !kube.IsReady(&n) {
				d = append(d, fmt.Sprintf("node %s is not Ready", n.Name))
			}
			if n.Spec.Unschedulable {
				d = append(d, fmt.Sprintf("node %s is cordoned", n.Name))
			}
		}
		return outcome{diags: d}, nil
	}
	n, err := g.Client.CoreV1().Nodes().Get(ctx, in.Node.Name, metav1.GetOptions{})
	if err != nil {
		return outcome{}, err
	}
	var d []string
	if !kube.IsReady(n) {
		d = append(d, fmt.Sprintf("node %s is not Ready", n.Name))
	}
	if n.Spec.Unschedulable {
		d = append(d, fmt.Sprintf("node %s is still cordoned", n.Name))
	}
	if !in.Want.Talos.IsZero() {
		if v, ok := kube.TalosVersion(n.Status.NodeInfo.OSImage); !ok || v.Compare(in.Want.Talos) != 0 {
			d = append(d, fmt.Sprintf("node %s runs %q, want Talos %s", n.Name, n.Status.NodeInfo.OSImage, in.Want.Talos))
		}
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
	return outcome{diags: d}, nil
}

var badWaiting = map[string]bool{"CrashLoopBackOff": true, "ImagePullBackOff": true, "ErrImagePull": true, "CreateContainerConfigError": true}

func (g *Gate) podHealth(ctx context.Context, in rollout.GateInput) (outcome, error) {
	s := g.settings()
	// One list serves both the node's pods and the cluster-wide rules.
	all, err := g.Client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return outcome{}, err
	}
	var d []string
	for i := range all.Items {
		p := &all.Items[i]
		if in.Node.Name == "" || p.Spec.NodeName != in.Node.Name || isProbe(p) {
			continue
		}
		if why := brokenPod(p); why != "" {
			d = append(d, fmt.Sprintf("pod %s/%s on %s: %s", p.Namespace, p.Name, in.Node.Name, why))
		}
	}
	critical := map[string]bool{}
	for _, ns := range s.CriticalNamespaces {
		critical[ns] = true
	}
	now := g.Clock.Now()
	var more []string
	for i := range all.Items {
		p := &all.Items[i]
		if isProbe(p) {
			continue
		}
		if p.Status.Phase == corev1.PodPending && now.Sub(p.CreationTimestamp.Time) > s.PendingGrace.Duration {
			more = append(more, fmt.Sprintf("pod %s/%s Pending for %s", p.Namespace, p.Name, now.Sub(p.CreationTimestamp.Time).Round(time.Second)))
			continue
		}
		if critical[p.Namespace] && p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && !(p.Status.Phase == corev1.PodRunning && podReady(p)) &&
			!slices.Contains(in.Exclude, p.Spec.NodeName) {
			more = append(more, fmt.Sprintf("critical pod %s/%s is %s and not Ready (node %s)", p.Namespace, p.Name, p.Status.Phase, orNone(p.Spec.NodeName)))
		}
	}
	sort.Strings(more)
	return outcome{diags: append(d, more...)}, nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
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

func (g *Gate) gpu(ctx context.Context, in rollout.GateInput) (outcome, error) {
	if in.Node.Name == "" {
		return outcome{skipped: "needs a node"}, nil
	}
	if in.Node.GPUs <= 0 {
		return outcome{skipped: "no GPUs in the inventory for this node"}, nil
	}
	n, err := g.Client.CoreV1().Nodes().Get(ctx, in.Node.Name, metav1.GetOptions{})
	if err != nil {
		return outcome{}, err
	}
	var d []string
	q := n.Status.Allocatable[kube.GPUResource]
	if q.Value() < int64(in.Node.GPUs) {
		d = append(d, fmt.Sprintf("node %s has allocatable %s %s, the inventory says %d", n.Name, kube.GPUResource, q.String(), in.Node.GPUs))
	}
	pods, err := g.Client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", in.Node.Name).String(),
	})
	if err != nil {
		return outcome{}, err
	}
	running := false
	for _, p := range pods.Items {
		if p.Spec.NodeName == in.Node.Name && strings.Contains(p.Name, "nvidia-device-plugin") && p.Status.Phase == corev1.PodRunning {
			running = true
		}
	}
	if !running {
		d = append(d, fmt.Sprintf("no NVIDIA device plugin pod Running on %s", n.Name))
	}
	return outcome{diags: d}, nil
}
