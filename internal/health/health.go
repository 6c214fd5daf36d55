// Package health implements the engine's health gate: named checks that
// read the cluster API (and, for DNS, the network and scheduling, run a
// short-lived probe pod on the node) and say, in at most ten lines, what is
// wrong and where. A check reports findings with stable keys, so the gate
// can tell what changed since the run began (the baseline) from what was
// already wrong.
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
	"k8s.io/apimachinery/pkg/labels"
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
	CheckScheduling    = "Scheduling"
	CheckGPU           = "GPU Availability"
	CheckAlerts        = "Alerts"
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
	// Inventory are the configured nodes: a whole-cluster gate checks the
	// GPUs of every GPU node.
	Inventory []config.Node
	// Namespace, when set, is where probe pods run: the namespace drover
	// runs in ($POD_NAMESPACE in the runner pod). Otherwise
	// health.probeNamespace.
	Namespace string
	// Alerts, when set, reads the alerts that fire (health.alertmanager).
	Alerts AlertSource
	// Images, when set, reads what a node booted (schematic, extensions;
	// the Talos API), to compare with what it booted before.
	Images rollout.ImageReader
	// Network, when set, reads a node's network links (the Talos API), to
	// compare with the links it had before its change.
	Network rollout.LinkReader
	// Reader, when set, is where nodes and pods are read: a run's Cache,
	// the lab's index. Otherwise paginated lists through Client.
	Reader Reader
}

func (g *Gate) reader() Reader {
	if g.Reader != nil {
		return g.Reader
	}
	return Lists{Client: g.Client}
}

var _ rollout.HealthGate = (*Gate)(nil)

// DefaultCriticalNamespaces are checked when none are configured.
var DefaultCriticalNamespaces = []string{"kube-system", "flux-system", "rook-ceph"}

// outcome is what one check found.
type outcome struct {
	findings []rollout.Finding
	notes    []string
	skipped  string
}

// fail records a finding: key names it stably, node is what it is about.
func (o *outcome) fail(key, node string, critical bool, format string, args ...any) {
	o.findings = append(o.findings, rollout.Finding{Key: key, Node: node, Critical: critical, Text: fmt.Sprintf(format, args...)})
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
	if g.Namespace != "" {
		s.ProbeNamespace = g.Namespace
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
		{CheckScheduling, g.scheduling},
		{CheckGPU, g.gpu},
	}
	if g.Alerts != nil {
		cs = append(cs, check{CheckAlerts, g.alerts})
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
	for i, c := range cs {
		if clusterWide(c.name) {
			run := c.run
			cs[i].run = func(ctx context.Context, in rollout.GateInput) (outcome, error) {
				if in.NodeOnly {
					return outcome{skipped: "cluster-wide: while other nodes change, the gates of the nodes in flight and the last look over the cluster judge it"}, nil
				}
				return run(ctx, in)
			}
		}
	}
	return cs
}

// clusterWide says whether a check judges the cluster rather than one
// node: a soak (GateInput.NodeOnly) leaves it to the nodes in flight.
func clusterWide(name string) bool {
	switch name {
	case CheckNodeReadiness, CheckPodHealth, CheckDNS, CheckNetwork, CheckScheduling, CheckGPU:
		return false
	}
	return true
}

// probing says whether a check starts probe pods (and so waits on the clock).
func probing(name string) bool {
	return name == CheckDNS || name == CheckNetwork || name == CheckScheduling
}

// Check runs every check once, concurrently, each within CheckTimeout. A
// finding fails its check unless it is known: in the baseline, or, in the
// preflight, not critical.
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
				// A check that cannot run fails, critically: nothing is known.
				o.findings = append([]rollout.Finding{{Key: "could-not-run", Critical: true, Text: "check could not run: " + err.Error()}}, o.findings...)
			}
			res[i] = judge(c.name, o, in, time.Since(start))
		}
		// Probes wait on the clock, so they run through it (a virtual clock
		// must account for every goroutine that waits on it); the other
		// checks only read the API.
		if probing(c.name) {
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

// judge turns a check's findings into its result.
func judge(name string, o outcome, in rollout.GateInput, took time.Duration) rollout.CheckResult {
	var failing, known []string
	nodes := map[string]bool{}
	for _, f := range o.findings {
		if in.Preflight && !f.Critical || in.Baseline.Has(name, f.Key) {
			known = append(known, f.Text)
			continue
		}
		failing = append(failing, f.Text)
		if f.Node != "" {
			nodes[f.Node] = true
		}
	}
	var failedNodes []string
	for n := range nodes {
		failedNodes = append(failedNodes, n)
	}
	sort.Strings(failedNodes)
	return rollout.CheckResult{
		Name: name, Passed: len(failing) == 0 && o.skipped == "", Skipped: o.skipped != "" && len(failing) == 0, SkipReason: o.skipped,
		Attempts: 1, Diagnostics: clip(failing), Known: clip(known), Notes: clip(o.notes), FailedNodes: failedNodes,
		Findings: o.findings, Duration: took, DurationMs: took.Milliseconds(),
	}
}

func clip(d []string) []string {
	if len(d) <= maxDiagnostics {
		return d
	}
	out := append([]string(nil), d[:maxDiagnostics-1]...)
	return append(out, fmt.Sprintf("... and %d more", len(d)-maxDiagnostics+1))
}

// nodeReadiness: the node (or, for the whole cluster, every node) is Ready
// and schedulable; a changed node runs the wanted versions and lost
// nothing of its identity.
func (g *Gate) nodeReadiness(ctx context.Context, in rollout.GateInput) (outcome, error) {
	var o outcome
	if in.Node.Name == "" {
		nodes, err := g.reader().Nodes(ctx)
		if err != nil {
			return outcome{}, err
		}
		for _, n := range nodes {
			if slices.Contains(in.Exclude, n.Name) {
				continue // caught mid-step by a resumed run: down or cordoned on purpose
			}
			if !kube.IsReady(n) {
				o.fail("not-ready/"+n.Name, n.Name, false, "node %s is not Ready", n.Name)
			}
			if n.Spec.Unschedulable {
				o.fail("cordoned/"+n.Name, n.Name, false, "node %s is cordoned", n.Name)
			}
		}
		return o, nil
	}
	n, err := g.reader().Node(ctx, in.Node.Name)
	if err != nil {
		return outcome{}, err
	}
	if !kube.IsReady(n) {
		o.fail("not-ready/"+n.Name, n.Name, false, "node %s is not Ready", n.Name)
	}
	if n.Spec.Unschedulable {
		o.fail("cordoned/"+n.Name, n.Name, false, "node %s is still cordoned", n.Name)
	}
	if !in.Want.Talos.IsZero() {
		if v, ok := kube.TalosVersion(n.Status.NodeInfo.OSImage); !ok || v.Compare(in.Want.Talos) != 0 {
			o.fail("talos/"+n.Name, n.Name, false, "node %s runs %q, want Talos %s", n.Name, n.Status.NodeInfo.OSImage, in.Want.Talos)
		}
	}
	if !in.Want.Kubernetes.IsZero() {
		if v, err := version.Parse(n.Status.NodeInfo.KubeletVersion, true); err != nil || v.Compare(in.Want.Kubernetes) != 0 {
			o.fail("kubelet/"+n.Name, n.Name, false, "node %s runs kubelet %s, want %s", n.Name, n.Status.NodeInfo.KubeletVersion, in.Want.Kubernetes)
		}
	}
	if in.Before != nil {
		after := kube.IdentityOf(n)
		if in.Before.Links != nil && g.Network != nil {
			links, err := g.Network.Links(ctx, in.Node)
			if err != nil {
				o.fail("links/"+n.Name, n.Name, false, "node %s: its network links cannot be read: %v", n.Name, err)
			}
			after.Links = links
		}
		if in.Before.Schematic != "" && g.Images != nil {
			img, err := g.Images.NodeImage(ctx, in.Node)
			if err != nil {
				o.fail("image/"+n.Name, n.Name, false, "node %s: what it booted cannot be read: %v", n.Name, err)
			}
			after.Schematic, after.Extensions = img.Schematic, img.Extensions
		}
		for _, l := range kube.DiffIdentity(*in.Before, after, g.settings().IdentityIgnore).Lost {
			o.fail("lost/"+n.Name+"/"+l, n.Name, false, "node %s: %s", n.Name, l)
		}
	}
	return o, nil
}

var badWaiting = map[string]bool{"CrashLoopBackOff": true, "ImagePullBackOff": true, "ErrImagePull": true, "CreateContainerConfigError": true}

// podHealth: no pod on the node (every node, for the whole cluster) is
// broken or restarting; nothing is Pending past the grace; every pod of a
// critical namespace is Running and Ready.
func (g *Gate) podHealth(ctx context.Context, in rollout.GateInput) (outcome, error) {
	s := g.settings()
	r := g.reader()
	// The node's pods (every pod, for the whole cluster) for the pod
	// rules; only the unsettled pods for the cluster-wide rules.
	pods, err := r.PodsOn(ctx, in.Node.Name)
	if err != nil {
		return outcome{}, err
	}
	var unsettled []*corev1.Pod
	if in.Node.Name == "" {
		for _, p := range pods {
			if !Settled(p) {
				unsettled = append(unsettled, p)
			}
		}
	} else if !in.NodeOnly {
		if unsettled, err = r.Unsettled(ctx); err != nil {
			return outcome{}, err
		}
	}
	var o outcome
	critical := map[string]bool{}
	for _, ns := range s.CriticalNamespaces {
		critical[ns] = true
	}
	skip := func(p *corev1.Pod) bool { return isProbe(p) || slices.Contains(in.Exclude, p.Spec.NodeName) }
	for _, p := range pods {
		if skip(p) || p.Spec.NodeName == "" {
			continue
		}
		id := p.Namespace + "/" + p.Name
		if why, reason := brokenPod(p); why != "" {
			o.fail("pod/"+id+"/"+reason, p.Spec.NodeName, critical[p.Namespace], "pod %s on %s: %s", id, p.Spec.NodeName, why)
		}
		restarts(&o, in.Memory, p)
	}
	now := g.Clock.Now()
	for _, p := range unsettled {
		if skip(p) {
			continue
		}
		id := p.Namespace + "/" + p.Name
		if p.Status.Phase == corev1.PodPending {
			// The preflight notes every Pending pod, so one that crosses
			// the grace during the run is known, not blamed on a node.
			if age := now.Sub(p.CreationTimestamp.Time); in.Preflight || age > s.PendingGrace.Duration {
				o.fail("pending/"+id, p.Spec.NodeName, critical[p.Namespace], "pod %s Pending for %s", id, age.Round(time.Second))
			}
			continue
		}
		if critical[p.Namespace] && p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && !(p.Status.Phase == corev1.PodRunning && podReady(p)) {
			o.fail("critical/"+id, p.Spec.NodeName, true, "critical pod %s is %s and not Ready (node %s)", id, p.Status.Phase, orNone(p.Spec.NodeName))
		}
	}
	if err := movedVolumes(ctx, r, in, &o); err != nil {
		return outcome{}, err
	}
	sort.Slice(o.findings, func(i, j int) bool { return o.findings[i].Text < o.findings[j].Text })
	return o, nil
}

// movedVolumes fails a node whose drained pods with volumes do not run
// again: a pod of each claim that left the node must be Running and Ready
// wherever it runs now (a volume still attached elsewhere keeps it in
// ContainerCreating). A claim no pod uses any more is not judged.
func movedVolumes(ctx context.Context, r Reader, in rollout.GateInput, o *outcome) error {
	for _, claim := range in.Claims {
		ns, name, ok := strings.Cut(claim, "/")
		if !ok {
			continue
		}
		pods, err := r.PodsIn(ctx, ns, labels.Everything())
		if err != nil {
			return err
		}
		var users []*corev1.Pod
		for _, p := range pods {
			if p.DeletionTimestamp == nil && slices.ContainsFunc(p.Spec.Volumes, func(v corev1.Volume) bool {
				return v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == name
			}) {
				users = append(users, p)
			}
		}
		if len(users) == 0 || slices.ContainsFunc(users, Settled) {
			continue
		}
		p := users[0]
		state := string(p.Status.Phase)
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil && w.Reason != "" {
				state += " (" + w.Reason + ")"
				break
			}
		}
		o.fail("moved-volume/"+claim, in.Node.Name, false, "pod %s/%s with volume claim %s, moved off %s, is %s on %s and not Ready: its volume must attach where it runs now",
			p.Namespace, p.Name, claim, in.Node.Name, state, orNone(p.Spec.NodeName))
	}
	return nil
}

// restarts fails a pod whose containers restarted since the gate's
// previous run, even if the pod is Running now: a container that
// crash-loops between polls cannot pass by being caught up each time.
func restarts(o *outcome, mem *rollout.Memory, p *corev1.Pod) {
	for _, cs := range append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		key := "restarts/" + p.Namespace + "/" + p.Name + "/" + cs.Name
		prev, seen := mem.Swap(key, int64(cs.RestartCount))
		if seen && int64(cs.RestartCount) > prev {
			o.fail(key, p.Spec.NodeName, false, "pod %s/%s on %s: container %s restarted %d times since the previous run of the gate",
				p.Namespace, p.Name, p.Spec.NodeName, cs.Name, int64(cs.RestartCount)-prev)
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// brokenPod says why a pod is broken, or "", and a stable reason.
func brokenPod(p *corev1.Pod) (why, reason string) {
	for _, cs := range append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if w := cs.State.Waiting; w != nil && badWaiting[w.Reason] {
			return fmt.Sprintf("container %s is in %s (%d restarts)", cs.Name, w.Reason, cs.RestartCount), w.Reason
		}
		if t := cs.State.Terminated; t != nil && t.Reason == "Error" && p.Status.Phase != corev1.PodSucceeded {
			return fmt.Sprintf("container %s terminated with Error (exit %d)", cs.Name, t.ExitCode), "Error"
		}
	}
	if p.Status.Phase == corev1.PodFailed {
		return "pod Failed: " + p.Status.Reason, "Failed"
	}
	return "", ""
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// gpu: the node (every inventory GPU node, for the whole cluster) offers
// its GPUs and runs the NVIDIA device plugin.
func (g *Gate) gpu(ctx context.Context, in rollout.GateInput) (outcome, error) {
	var nodes []config.Node
	switch {
	case in.Node.Name != "" && in.Node.GPUs <= 0:
		return outcome{skipped: "no GPUs in the inventory for this node"}, nil
	case in.Node.Name != "":
		nodes = []config.Node{in.Node.Node}
	default:
		for _, n := range g.Inventory {
			if n.GPUs > 0 && !slices.Contains(in.Exclude, n.Name) {
				nodes = append(nodes, n)
			}
		}
		if len(nodes) == 0 {
			return outcome{skipped: "no GPU node in the inventory"}, nil
		}
	}
	var o outcome
	for _, want := range nodes {
		n, err := g.reader().Node(ctx, want.Name)
		if err != nil {
			return outcome{}, err
		}
		q := n.Status.Allocatable[kube.GPUResource]
		if q.Value() < int64(want.GPUs) {
			o.fail("gpu/"+n.Name, n.Name, false, "node %s has allocatable %s %s, the inventory says %d", n.Name, kube.GPUResource, q.String(), want.GPUs)
		}
		pods, err := g.reader().PodsOn(ctx, n.Name)
		if err != nil {
			return outcome{}, err
		}
		running := false
		for _, p := range pods {
			if p.Spec.NodeName == n.Name && strings.Contains(p.Name, "nvidia-device-plugin") && p.Status.Phase == corev1.PodRunning {
				running = true
			}
		}
		if !running {
			o.fail("gpu-plugin/"+n.Name, n.Name, false, "no NVIDIA device plugin pod Running on %s", n.Name)
		}
	}
	return o, nil
}
