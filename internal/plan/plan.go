// Package plan orders nodes into batches: control plane first, one at a time,
// then workers in batches that never hold two VMs of one Proxmox host.
package plan

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/version"
)

// Node is a node in the plan.
type Node struct {
	config.Node
	// From is the node's current version.
	From version.Pair
	// Image is the installer image an in-place upgrade installs ("" when
	// it is not resolved: the adapter builds it from talos.installerImage).
	Image string
	// Schematic is the Image Factory schematic the node must boot after
	// its change, when known: its own, or the one talos.installerImages
	// gives it on purpose.
	Schematic string
}

// Batch is a set of nodes upgraded together.
type Batch struct {
	Nodes []Node
}

// Skipped is a node left out of the plan, and why.
type Skipped struct {
	Node   Node
	Reason string
}

// Plan is the ordered work of one run.
type Plan struct {
	Strategy version.Strategy
	From, To version.Pair
	Batches  []Batch
	Skipped  []Skipped
	// ETA is the expected duration of the run.
	ETA time.Duration
	// KubernetesPhase: after the nodes, Kubernetes itself is upgraded
	// (pets only: cattle nodes come back at the new Kubernetes version).
	KubernetesPhase bool
	// InFlight names the nodes a resumed run caught mid-step (cordoned,
	// destroyed, rebooting): run-level preflights leave them out.
	InFlight []string
	// RollbackETA is how long rolling one node back takes: drain, replace
	// or upgrade, health, and the templates first when they are rebuilt.
	RollbackETA time.Duration
	// Canary names the canary workers; the run pauses after the first
	// PauseAfter batches (the canary's, and for a cattle Kubernetes change
	// the control plane's before them), to be resumed once looked at.
	Canary     []string
	PauseAfter int
	// PauseFirst: the canary was done in an earlier attempt of this run
	// (a crash came before its pause): the run pauses before anything else.
	PauseFirst bool
	// CanaryNote says how the canary was chosen when it is not what
	// rollout.canary names (some are done or not selected).
	CanaryNote string
	// CanaryProblem says why the asked-for canary cannot be had (no
	// worker in the run, fewer than asked, nothing after it to pause for):
	// a run refuses it rather than go on without the pause.
	CanaryProblem string
	// Only, when set, is the --only selection the plan was limited to.
	Only []string
	// ETASource says what the ETA was computed from.
	ETASource string
	// NodeETA is how long each node is expected to take until its gate
	// passed (its soak excluded), for the report's planned against actual.
	NodeETA map[string]time.Duration
	// Self is the planned node drover runs on (its runner pod's node): it
	// goes last among the nodes of its role, in a batch of its own, and
	// drover hands the run to a runner on another node before it.
	Self string
	// Held are the planned nodes that pods hold, with those pods.
	Held map[string][]string `json:"held,omitempty"`
	// SelfInCanary: the canary would take drover's own node (a run must
	// refuse it: drover cannot drain the node it runs on).
	SelfInCanary bool
}

// Input is what a plan is built from.
type Input struct {
	Nodes    []config.Node
	Strategy version.Strategy
	From, To version.Pair
	// Current maps a node name to its versions as read from the cluster; a
	// node absent from it is assumed to be at From.
	Current            map[string]version.Pair
	MaxParallelWorkers int
	Steps              config.StepDurations
	ControlPlaneSoak   time.Duration
	// WorkerSoak is each worker's soak, in the background; MaxSoaking how
	// many may soak at once (0: no limit).
	WorkerSoak time.Duration
	MaxSoaking int
	// HealthPasses and HealthInterval shape one gate: passes in a row,
	// an interval apart.
	HealthPasses   int
	HealthInterval time.Duration
	// RebuildTemplates: templates are replaced in place, so a rollback
	// rebuilds the old ones first (terraform.templates: rebuild).
	RebuildTemplates bool
	// Only limits the plan to these nodes (--only); empty: every node.
	Only []string
	// Canary is how many workers go first, then the run pauses (--canary);
	// they are the first of CanaryNodes that need the change, else the
	// first workers of the plan.
	Canary      int
	CanaryNodes []string
	// CanaryOnly: the canary is CanaryNodes and no others (a resumed run
	// keeps its canary); CanaryDone: they are done, the pause is owed.
	CanaryOnly, CanaryDone bool
	// Measured are the medians of measured durations by kind
	// ("cattle/worker", "pets/controlplane", "cattle/templates"), with
	// their sample counts; a kind present here is used instead of Steps.
	Measured      map[string]time.Duration
	MeasuredCount map[string]int
	// Self is the node drover runs on, when it runs inside the cluster.
	Self string
	// Held are the nodes that pods hold (drover.dev/do-not-disrupt,
	// rollout.blockingPods), with those pods: each goes last in its phase,
	// so that the pods have the time of the others to finish.
	Held map[string][]string
	// Images are the installer image and the schematic of each node (by
	// name), resolved from the node's own image.
	Images map[string]NodeImage
}

// NodeImage is a node's resolved installer image and its schematic.
type NodeImage struct {
	Image, Schematic string
}

// Build makes the plan. It is deterministic: the same input gives the same
// plan, whatever the order of the inventory.
func Build(in Input) Plan {
	p := Plan{Strategy: in.Strategy, From: in.From, To: in.To}
	var cps, workers []Node
	for _, cn := range in.Nodes {
		n := Node{Node: cn, From: in.From}
		if v, ok := in.Current[cn.Name]; ok {
			n.From = v
		}
		if im, ok := in.Images[cn.Name]; ok {
			n.Image, n.Schematic = im.Image, im.Schematic
		}
		at := AtTarget(n.From, in.To)
		if in.Strategy == version.Pets {
			// In place, a node's Talos is upgraded; its kubelet follows in
			// the Kubernetes phase, for every node at once.
			at = n.From.Talos.Compare(in.To.Talos) >= 0
		}
		if in.Strategy == version.NoChange || at {
			p.Skipped = append(p.Skipped, Skipped{Node: n, Reason: skipReason(n, in)})
			continue
		}
		if len(in.Only) > 0 && !slices.Contains(in.Only, n.Name) {
			p.Skipped = append(p.Skipped, Skipped{Node: n, Reason: "not selected (--only)"})
			continue
		}
		if n.IsControlPlane() {
			cps = append(cps, n)
		} else {
			workers = append(workers, n)
		}
	}
	sortNodes(cps)
	sortNodes(workers)
	cps, workers = heldLast(cps, in.Held), heldLast(workers, in.Held)
	p.Held = heldOf(append(slices.Clone(cps), workers...), in.Held)
	cps, cpSelf := lastIfSelf(cps, in.Self)
	workers, workerSelf := lastIfSelf(workers, in.Self)
	sort.SliceStable(p.Skipped, func(i, j int) bool { return NaturalLess(p.Skipped[i].Node.Name, p.Skipped[j].Node.Name) })

	p.Only = in.Only
	var cpBatches []Batch
	for _, n := range cps {
		cpBatches = append(cpBatches, Batch{Nodes: []Node{n}})
	}
	if cpSelf != nil {
		cpBatches = append(cpBatches, Batch{Nodes: []Node{*cpSelf}})
		p.Self = cpSelf.Name
	}
	if workerSelf != nil {
		p.Self = workerSelf.Name
	}
	// drover's own worker is never a canary: it comes last, alone, and the
	// run hands off before it. A canary that would take it is flagged.
	pool := workers
	if workerSelf != nil {
		pool = append(slices.Clone(workers), *workerSelf)
	}
	canary, rest, note := pickCanary(pool, in.Canary, in.CanaryNodes, in.CanaryOnly)
	p.CanaryNote = note
	var tail []Batch
	if workerSelf != nil {
		if slices.ContainsFunc(canary, func(n Node) bool { return n.Name == workerSelf.Name }) {
			p.SelfInCanary = true
			workers = pool
		} else {
			rest = rest[:len(rest)-1]
			tail = []Batch{{Nodes: []Node{*workerSelf}}}
		}
	}
	size := max(1, in.MaxParallelWorkers)
	switch {
	case len(canary) == 0 || len(rest)+len(cps)+len(tail) == 0:
		// No canary, or nothing after it to pause for.
		p.Batches = append(append(cpBatches, batchWorkers(workers, size)...), tail...)
	case in.Strategy == version.Cattle && kubeChanges(in.From, in.To):
		// A replaced worker comes back with the new kubelet, which must
		// not be newer than the API servers: the control plane goes first.
		cb := batchWorkers(canary, size)
		p.Batches = append(append(append(cpBatches, cb...), batchWorkers(rest, size)...), tail...)
		p.PauseAfter = len(cpBatches) + len(cb)
	default:
		cb := batchWorkers(canary, size)
		p.Batches = append(append(append(cb, cpBatches...), batchWorkers(rest, size)...), tail...)
		p.PauseAfter = len(cb)
	}
	if p.PauseAfter > 0 {
		for _, n := range canary {
			p.Canary = append(p.Canary, n.Name)
		}
	}
	switch {
	case in.CanaryDone && len(p.Batches) > 0:
		p.PauseFirst, p.Canary = true, slices.Clone(in.CanaryNodes)
	case in.Canary > 0 && !in.CanaryOnly:
		p.CanaryProblem = canaryProblem(in.Canary, len(pool), p.PauseAfter > 0)
	}
	p.KubernetesPhase = in.Strategy == version.Pets && !in.From.Kubernetes.IsZero() && !in.To.Kubernetes.IsZero() && in.From.Kubernetes.Compare(in.To.Kubernetes) < 0
	p.ETA, p.ETASource = eta(&p, in)
	p.RollbackETA = rollbackETA(in)
	return p
}

// heldOf are the held nodes among ns, with their pods (nil: none).
func heldOf(ns []Node, held map[string][]string) map[string][]string {
	var out map[string][]string
	for _, n := range ns {
		if h := held[n.Name]; len(h) > 0 {
			if out == nil {
				out = map[string][]string{}
			}
			out[n.Name] = h
		}
	}
	return out
}

// heldLast puts the nodes that pods hold after the others, in order.
func heldLast(ns []Node, held map[string][]string) []Node {
	free := slices.DeleteFunc(slices.Clone(ns), func(n Node) bool { return len(held[n.Name]) > 0 })
	for _, n := range ns {
		if len(held[n.Name]) > 0 {
			free = append(free, n)
		}
	}
	return free
}

// lastIfSelf takes drover's own node out of ns, to be planned last.
func lastIfSelf(ns []Node, self string) (rest []Node, selfNode *Node) {
	if self == "" {
		return ns, nil
	}
	for i, n := range ns {
		if n.Name == self {
			return append(slices.Clone(ns[:i]), ns[i+1:]...), &n
		}
	}
	return ns, nil
}

// pickCanary takes n workers for the canary: the first of names that are
// among workers (in that order), then, unless only names may be taken,
// the first other workers. note says when names were not all had.
func pickCanary(workers []Node, n int, names []string, only bool) (canary, rest []Node, note string) {
	if n <= 0 {
		return nil, workers, ""
	}
	picked := map[string]bool{}
	take := func(w Node) {
		if len(canary) < n && !picked[w.Name] {
			canary = append(canary, w)
			picked[w.Name] = true
		}
	}
	var missing []string
	for _, name := range names {
		i := slices.IndexFunc(workers, func(w Node) bool { return w.Name == name })
		if i < 0 {
			missing = append(missing, name)
			continue
		}
		take(workers[i])
	}
	if !only {
		for _, w := range workers {
			take(w)
		}
	}
	for _, w := range workers {
		if !picked[w.Name] {
			rest = append(rest, w)
		}
	}
	if len(missing) > 0 && len(names) > 0 && !only {
		var chosen []string
		for _, c := range canary {
			chosen = append(chosen, c.Name)
		}
		note = fmt.Sprintf("rollout.canary names %s, which this run does not change (done, or not selected): the canary is %s",
			strings.Join(missing, ", "), strings.Join(chosen, ", "))
	}
	return canary, rest, note
}

// canaryProblem says why --canary n cannot pause as asked, or "".
func canaryProblem(n, workers int, pauses bool) string {
	switch {
	case workers == 0:
		return fmt.Sprintf("--canary %d: this run changes no worker (the canary is made of workers); leave out --canary", n)
	case workers < n:
		return fmt.Sprintf("--canary %d: this run changes only %d worker(s); ask for fewer", n, workers)
	case !pauses:
		return fmt.Sprintf("--canary %d: the canary would be the whole run, nothing is left to pause for; leave out --canary", n)
	}
	return ""
}

func kubeChanges(from, to version.Pair) bool {
	return !from.Kubernetes.IsZero() && !to.Kubernetes.IsZero() && from.Kubernetes.Compare(to.Kubernetes) < 0
}

// rollbackETA is how long rolling one node back takes: the node's change
// again, backwards. Like the ETA it takes the medians this cluster
// measured (the longest of a control-plane node's and a worker's) where
// there are enough, else rollout.stepDurations.
func rollbackETA(in Input) time.Duration {
	s := in.Steps
	templates := s.Template.Duration
	if d, ok := in.Measured[string(in.Strategy)+"/templates"]; ok {
		templates = d
	}
	var d time.Duration
	for _, role := range []config.Role{config.RoleControlPlane, config.RoleWorker} {
		if m, ok := in.Measured[string(in.Strategy)+"/"+string(role)]; ok {
			d = max(d, m)
		}
	}
	switch {
	case in.Strategy != version.Cattle && in.Strategy != version.Pets:
		return 0
	case d > 0:
	case in.Strategy == version.Cattle:
		d = s.Drain.Duration + s.Destroy.Duration + s.Create.Duration + s.Health.Duration
	default:
		d = s.Drain.Duration + s.Upgrade.Duration + s.Health.Duration
	}
	if in.Strategy == version.Cattle && in.RebuildTemplates {
		d += templates
	}
	return d
}

// skipReason says why a node needs no step of its own: it runs the
// target, or (pets) its Talos is at the target and its kubelet follows in
// the Kubernetes phase.
func skipReason(n Node, in Input) string {
	if in.Strategy == version.Pets && !n.From.Kubernetes.IsZero() && !in.To.Kubernetes.IsZero() && n.From.Kubernetes.Compare(in.To.Kubernetes) < 0 {
		return "already at Talos " + in.To.Talos.String() + "; its kubelet moves to Kubernetes " + in.To.Kubernetes.String() + " in the Kubernetes phase"
	}
	return "already at " + in.To.String()
}

// AtTarget reports whether a node at cur needs nothing to reach to. A zero
// Kubernetes version on either side means Kubernetes is not compared.
func AtTarget(cur, to version.Pair) bool {
	if cur.Talos.Compare(to.Talos) < 0 {
		return false
	}
	return cur.Kubernetes.IsZero() || to.Kubernetes.IsZero() || cur.Kubernetes.Compare(to.Kubernetes) >= 0
}

// batchWorkers fills each batch greedily in order with nodes whose Proxmox
// host is not yet in the batch, so a host never loses two VMs at once.
func batchWorkers(workers []Node, size int) []Batch {
	var batches []Batch
	left := workers
	for len(left) > 0 {
		var b Batch
		hosts := map[string]bool{}
		var rest []Node
		for _, n := range left {
			if len(b.Nodes) < size && !hosts[n.ProxmoxHost] {
				b.Nodes = append(b.Nodes, n)
				hosts[n.ProxmoxHost] = true
				continue
			}
			rest = append(rest, n)
		}
		batches = append(batches, b)
		left = rest
	}
	return batches
}

// eta adds up every wait of the run: the preflight gate, the templates,
// each batch (as long as its longest node: drain, replace or upgrade, the
// gate's passes and intervals), the control-plane soaks that hold the next
// node, the worker soaks as they overlap the next batches (and what
// maxSoaking makes the run wait for them), the last soak, the last look
// over the cluster, and a hand-off's continuation. Medians of measured
// durations replace the configured ones where enough runs were recorded;
// the source says which.
func eta(p *Plan, in Input) (time.Duration, string) {
	s := in.Steps
	gate := max(s.Health.Duration, time.Duration(max(0, in.HealthPasses-1))*in.HealthInterval)
	var total time.Duration
	if p.KubernetesPhase {
		total += s.Kubernetes.Duration
	}
	if len(p.Batches) == 0 {
		return total, "rollout.stepDurations"
	}
	total += gate // the preflight gate over the cluster
	used := map[string]bool{}
	measured := func(kind string, configured time.Duration) time.Duration {
		if d, ok := in.Measured[string(in.Strategy)+"/"+kind]; ok {
			used[kind] = true
			return d
		}
		return configured
	}
	var perNode time.Duration
	switch in.Strategy {
	case version.Cattle:
		perNode = s.Drain.Duration + s.Destroy.Duration + s.Create.Duration + gate
		total += measured("templates", s.Template.Duration)
	default:
		perNode = s.Drain.Duration + s.Upgrade.Duration + gate
	}
	p.NodeETA = map[string]time.Duration{}
	kubeChange := in.From.Kubernetes != in.To.Kubernetes
	// The run's clock, and when each soak going on in the background ends.
	now := total
	var soaks []time.Duration
	waitSoaks := func(limit int) {
		slices.Sort(soaks)
		for len(soaks) > 0 && (soaks[0] <= now || len(soaks) > limit) {
			now = max(now, soaks[0])
			soaks = soaks[1:]
		}
	}
	for i, b := range p.Batches {
		var longest time.Duration
		for _, n := range b.Nodes {
			d := measured(string(n.Role), perNode)
			p.NodeETA[n.Name] = d
			longest = max(longest, d)
		}
		cp := b.Nodes[0].IsControlPlane()
		switch {
		case cp:
			waitSoaks(0) // a control-plane node waits for every soak
		case b.Nodes[0].Name == p.Self:
			// The hand-off: the continuation's preflight gate, then the
			// nodes whose soak it took over are gated and soak anew.
			now += gate
			waitSoaks(len(soaks)) // those over are over
			for j := range soaks {
				now += gate
				soaks[j] = now + in.WorkerSoak
			}
		case in.MaxSoaking > 0:
			waitSoaks(max(0, in.MaxSoaking-len(b.Nodes)))
		}
		now += longest
		lastCP := cp && (i+1 == len(p.Batches) || !p.Batches[i+1].Nodes[0].IsControlPlane())
		switch {
		case cp && (!lastCP || kubeChange):
			now += in.ControlPlaneSoak // the next node waits for it
		case cp && in.ControlPlaneSoak > 0:
			soaks = append(soaks, now+in.ControlPlaneSoak)
		case !cp && in.WorkerSoak > 0:
			for range b.Nodes {
				soaks = append(soaks, now+in.WorkerSoak)
			}
		}
	}
	waitSoaks(0)       // the last soak
	total = now + gate // then the last look
	if len(used) == 0 {
		return total, "rollout.stepDurations (fewer than 3 measured runs of each kind)"
	}
	var parts []string
	for _, kind := range []string{"controlplane", "worker", "templates"} {
		if used[kind] {
			k := string(in.Strategy) + "/" + kind
			parts = append(parts, fmt.Sprintf("%s %s median %s over %d", in.Strategy, kind, in.Measured[k].Round(time.Second), in.MeasuredCount[k]))
		}
	}
	return total, "measured (" + strings.Join(parts, "; ") + "), the rest from rollout.stepDurations"
}

// Empty says there is nothing to do: no node and no Kubernetes phase.
func (p Plan) Empty() bool { return p.NodeCount() == 0 && !p.KubernetesPhase }

// NodeCount counts the planned nodes.
func (p Plan) NodeCount() int {
	n := 0
	for _, b := range p.Batches {
		n += len(b.Nodes)
	}
	return n
}

func sortNodes(ns []Node) {
	sort.SliceStable(ns, func(i, j int) bool { return NaturalLess(ns[i].Name, ns[j].Name) })
}

// NaturalLess orders names with numbers naturally: "k8s-work-2" before "k8s-work-10".
func NaturalLess(a, b string) bool {
	for a != "" && b != "" {
		ai, bi := digitPrefix(a), digitPrefix(b)
		if ai > 0 && bi > 0 {
			an, _ := strconv.Atoi(a[:ai])
			bn, _ := strconv.Atoi(b[:bi])
			if an != bn {
				return an < bn
			}
			a, b = a[ai:], b[bi:]
			continue
		}
		ia := strings.IndexAny(a, "0123456789")
		ib := strings.IndexAny(b, "0123456789")
		if ia < 0 {
			ia = len(a)
		}
		if ib < 0 {
			ib = len(b)
		}
		if a[:ia] != b[:ib] {
			return a[:ia] < b[:ib]
		}
		a, b = a[ia:], b[ib:]
	}
	return len(a) < len(b)
}

func digitPrefix(s string) int {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

// Has reports whether the plan changes the named node.
func (p Plan) Has(name string) bool {
	for _, b := range p.Batches {
		for _, n := range b.Nodes {
			if n.Name == name {
				return true
			}
		}
	}
	return false
}
