package run

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/prox-ops/drover/internal/assemble"
	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/journal"
	"github.com/prox-ops/drover/internal/kube"
	"github.com/prox-ops/drover/internal/observe"
	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/terraform"
	"github.com/prox-ops/drover/internal/version"
)

// Inputs are what a run is asked to do, besides where: the configuration,
// the claimed version change, the nodes to take.
type Inputs struct {
	Config *config.Config
	// ConfigPath is the file Config was read from ("" for the lab's own):
	// no output of the run may be written over it.
	ConfigPath string
	// Claim is what the flags and the variables file say the change is.
	Claim observe.Claim
	// Only limits the run to these nodes (--only); Canary takes that many
	// workers first and pauses (--canary).
	Only   []string
	Canary int
	// AllowSkipMinor allows a change across more than one minor.
	AllowSkipMinor bool
	// Resume, when set, continues the run of a journal.
	Resume *ResumeInputs
	// LockNamespace is the run lock's namespace (a ConfigMap journal
	// without one lives there too).
	LockNamespace string
}

// ResumeInputs say which run to continue.
type ResumeInputs struct {
	// Journal is where the run's journal is (a file, or configmap[:...]).
	Journal string
	// RetryNodes are halted nodes to try again.
	RetryNodes []string
	// read, when set, reads the journal instead of Journal (a hand-off's
	// continuation in the same process).
	read func(ctx context.Context) ([]rollout.Entry, error)
}

// Planned is a run decided and planned, before any change: what the
// nodes run and who said so, the change, the strategy and the plan.
type Planned struct {
	Site     Site
	Config   *config.Config
	Claim    observe.Claim
	Change   version.Change
	Decision version.Decision
	Plan     plan.Plan
	// Observed are the node versions read from the cluster, by node.
	Observed map[string]rollout.Observed
	// Hops and KubernetesHops are the minors the change passes through.
	Hops, KubernetesHops []string
	// InventorySources says where each node's host and VM id came from,
	// when some were read from the Terraform state.
	InventorySources map[string]string
	// Resume is the journal of the run being resumed, read before planning.
	Resume *rollout.ResumeState
	// ResumeJournal is where that journal is.
	ResumeJournal string
	// Self is where drover runs (its pod's node, inside the cluster).
	Self Self
	// Images are each node's image and the one it is upgraded with.
	Images map[string]NodeImage
	// Refusal, when set, is why an upgrade of this plan must not start
	// (a *rollout.BlockedError): plan shows it, upgrade refuses it.
	Refusal error
	// Warnings are what may hold the run without refusing it: pods on
	// the planned nodes whose grace period is longer than the drain
	// timeout.
	Warnings []string

	in  Inputs
	env Env
	// measured are the medians of measured durations, with sample counts.
	measured  map[string]time.Duration
	measuredN map[string]int
	// held are the nodes pods hold (do-not-disrupt), with those pods.
	held map[string][]string
}

// Plan reads what the nodes run, checks the claimed versions against it,
// decides the strategy and builds the plan. It changes nothing. The site
// stays open: close it with the Planned's Site.
func Plan(ctx context.Context, site Site, in Inputs, env Env) (*Planned, error) {
	p, err := planRun(ctx, site, in, env)
	if err != nil && ctx.Err() != nil {
		// A stop (SIGINT/SIGTERM) cut the reads short: it is a stop.
		return nil, rollout.StoppedBeforeStart(ctx)
	}
	return p, err
}

func planRun(ctx context.Context, site Site, in Inputs, env Env) (*Planned, error) {
	cfg := in.Config
	env.learn(cfg.SecretEnvNames())
	if err := checkTarget(cfg, in.Only, in.Canary); err != nil {
		return nil, err
	}
	p := &Planned{Site: site, Config: cfg, Claim: in.Claim, in: in, env: env}
	if in.Resume != nil {
		if err := p.readResume(ctx); err != nil {
			return nil, err
		}
	}
	if err := p.observe(ctx); err != nil {
		return nil, err
	}
	if err := p.checkNotOlder(); err != nil {
		return nil, err
	}
	if p.Decision.Strategy != version.NoChange {
		if err := p.checkVersions(); err != nil {
			return nil, err
		}
	}
	self, err := site.Self(ctx, env)
	if err != nil {
		return nil, err
	}
	p.Self = self
	// Discovery is best effort for planning: a plan from a PR job without
	// Terraform still shows, with the values it lacks.
	sources, err := site.CompleteInventory(ctx, cfg, p.Change, env)
	if err != nil {
		env.warn("could not complete the inventory from the Terraform state: %v", err)
	}
	p.InventorySources = sources
	p.loadMeasured(ctx)
	var imageRefusal error
	if p.Decision.Strategy != version.NoChange {
		p.Images, imageRefusal = resolveImages(cfg, p.readImages(ctx), p.nodeLabels(ctx), p.Change.To.Talos, p.Decision.Strategy)
	}
	pods := p.bound(ctx)
	p.held = p.holdingPods(pods)
	p.buildPlan()
	if p.Plan.CanaryProblem != "" {
		return nil, Usage(errors.New(p.Plan.CanaryProblem))
	}
	if ls, ok := site.(*labSite); ok && ls.crashNode != "" && !p.Plan.Has(ls.crashNode) {
		return nil, Usage(fmt.Errorf("--lab-crash-at %s: %s is not changed by this run (not selected, or at the target already): the crash would never come", ls.spec.CrashAt, ls.crashNode))
	}
	p.Refusal = p.checkSelf(ctx)
	if p.Refusal == nil {
		p.Refusal = imageRefusal
	}
	p.Warnings = append(p.longGraces(pods), p.roomWarnings(ctx)...)
	return p, nil
}

// roomChecksMax bounds how many batches the plan checks for room (each
// check reads the cluster's pods); the run checks every batch before it
// cordons it anyway.
const roomChecksMax = 100

// roomWarnings checks, for each batch of the plan, whether the pods its
// drain evicts would fit on the nodes that remain as the cluster stands
// now: a batch without room stops the run there (exit 4), so the plan
// says so beforehand.
func (p *Planned) roomWarnings(ctx context.Context) []string {
	kc := p.Site.Client()
	if kc == nil || len(p.Plan.Batches) == 0 {
		return nil
	}
	room := assemble.KubeClient(*p.Config, assemble.Adapters{Kube: kc, Clock: p.Site.Clock()})
	var out []string
	for i, b := range p.Plan.Batches {
		if i == roomChecksMax {
			out = append(out, fmt.Sprintf("room to move was checked for the first %d batches only; the run checks each batch before its cordon", roomChecksMax))
			break
		}
		names := make([]string, len(b.Nodes))
		for j, n := range b.Nodes {
			names[j] = n.Name
		}
		var nr *kube.NoRoomError
		if err := room.CheckRoom(ctx, names); errors.As(err, &nr) {
			var pods []string
			for _, h := range nr.Homeless {
				pods = append(pods, h.Pod+" ("+h.Why+")")
			}
			out = append(out, fmt.Sprintf("when %s is drained, %d pod(s) would find no other node as the cluster stands now: %s; the run stops before that batch (exit 4) unless room is made first",
				strings.Join(names, ", "), len(nr.Homeless), strings.Join(clip(pods, 3), "; ")))
		}
	}
	return out
}

// clip keeps at most n items, saying how many more there were.
func clip(items []string, n int) []string {
	if len(items) <= n {
		return items
	}
	return append(append([]string(nil), items[:n]...), fmt.Sprintf("and %d more", len(items)-n))
}

// bound lists, once for the plan, the pods bound to a node, when the
// checks that read them are on (do-not-disrupt, long grace periods).
func (p *Planned) bound(ctx context.Context) []*corev1.Pod {
	kc := p.Site.Client()
	r := p.Config.Rollout
	if kc == nil || r.BlockingTimeout.Duration <= 0 && r.DrainTimeout.Duration <= 0 {
		return nil
	}
	var out []*corev1.Pod
	opts := metav1.ListOptions{Limit: 500}
	for {
		list, err := kc.CoreV1().Pods(metav1.NamespaceAll).List(ctx, opts)
		if err != nil {
			p.env.warn("list the pods, to find those that hold their node (do-not-disrupt) or outlast the drain timeout: %v", err)
			return out
		}
		for i := range list.Items {
			if list.Items[i].Spec.NodeName != "" {
				out = append(out, &list.Items[i])
			}
		}
		if list.Continue == "" {
			return out
		}
		opts.Continue = list.Continue
	}
}

// holdingPods finds the nodes that pods hold (drover.dev/do-not-disrupt,
// rollout.blockingPods): the plan takes each last in its phase, and the
// run waits for them before it touches the node.
func (p *Planned) holdingPods(pods []*corev1.Pod) map[string][]string {
	if p.Config.Rollout.BlockingTimeout.Duration <= 0 {
		return nil
	}
	selectors := p.Config.Rollout.BlockingSelectors()
	out := map[string][]string{}
	for _, pod := range pods {
		if kube.Holds(pod, selectors) {
			out[pod.Spec.NodeName] = append(out[pod.Spec.NodeName], pod.Namespace+"/"+pod.Name)
		}
	}
	return out
}

// longGraces finds the pods on the planned nodes that a drain evicts and
// whose terminationGracePeriodSeconds is longer than the drain timeout:
// unless they stop sooner on SIGTERM, the drain of their node times out.
func (p *Planned) longGraces(pods []*corev1.Pod) []string {
	timeout := p.Config.Rollout.DrainTimeout.Duration
	if timeout <= 0 {
		return nil
	}
	planned := map[string]bool{}
	for _, b := range p.Plan.Batches {
		for _, n := range b.Nodes {
			planned[n.Name] = true
		}
	}
	var out []string
	for _, pod := range pods {
		g := pod.Spec.TerminationGracePeriodSeconds
		if !planned[pod.Spec.NodeName] || g == nil || time.Duration(*g)*time.Second <= timeout || !kube.EvictedByDrain(pod) {
			continue
		}
		out = append(out, fmt.Sprintf("pod %s/%s on %s has a termination grace period of %s, longer than rollout.drainTimeout (%s): if it takes it, each drain attempt there times out",
			pod.Namespace, pod.Name, pod.Spec.NodeName, time.Duration(*g)*time.Second, timeout))
	}
	return out
}

// checkSelf refuses what drover cannot do from the node it runs on: drain
// that node for --only or --canary (only a full run hands off), or hand
// off when no other node could start a runner pod.
func (p *Planned) checkSelf(ctx context.Context) error {
	self := p.Self.Node
	switch {
	case self == "":
		return nil
	case p.Resume == nil && slices.Contains(p.in.Only, self):
		return &rollout.BlockedError{Reason: "--only " + self + " would drain " + p.Self.onIt() + "; " +
			"run it from a runner on another node, or leave it out of --only"}
	case p.Plan.SelfInCanary:
		return &rollout.BlockedError{Reason: fmt.Sprintf("--canary %d would take %s into the canary; "+
			"ask for fewer canary workers, or name others in rollout.canary", p.in.Canary, p.Self.onIt())}
	case p.Plan.Self == "" || p.Site.Client() == nil:
		return nil
	}
	return handOffRoom(ctx, p.Site.Client(), p.Self)
}

// checkTarget refuses --only names that are not in the inventory and a
// negative canary.
func checkTarget(cfg *config.Config, only []string, canary int) error {
	for _, n := range only {
		if _, ok := cfg.NodeByName(n); !ok {
			return Usage(fmt.Errorf("--only %s: no such node in %s", n, cfg.Cluster.Name))
		}
	}
	if canary < 0 {
		return Usage(fmt.Errorf("--canary %d: want a number of workers, 1 or more", canary))
	}
	return nil
}

// observe reads the Node objects and the Talos API of the control plane;
// for an in-place (pets) change the Talos API of every node, then decides
// again.
func (p *Planned) observe(ctx context.Context) error {
	reader := p.Site.Versions()
	for _, inPlace := range []bool{false, true} {
		if reader != nil {
			obs, err := reader.All(ctx, p.Config.Nodes, inPlace)
			if err != nil {
				return p.accessError(err)
			}
			p.Observed = obs
		}
		var err error
		if p.Change, err = resolve(p.Claim, p.Observed); err != nil {
			return err
		}
		if err := p.resumeChange(); err != nil {
			return err
		}
		if p.Decision, err = decide(p.Config, p.Change); err != nil {
			return err
		}
		if p.Decision.Strategy != version.Pets || reader == nil || reader.Talos == nil {
			return nil
		}
	}
	return nil
}

// checkVersions checks the minor hops, the version skew and the support
// table, before any change.
func (p *Planned) checkVersions() error {
	ch := p.Change
	skip := p.in.AllowSkipMinor
	if err := version.CheckHops(ch.From.Talos, ch.To.Talos, skip); err != nil {
		return &rollout.BlockedError{Reason: "Talos minor hops", Err: err}
	}
	if err := version.CheckKubernetesHops(ch.From.Kubernetes, ch.To.Kubernetes, skip); err != nil {
		return &rollout.BlockedError{Reason: "Kubernetes minor hops", Err: err}
	}
	if err := version.CheckSkew(ch.To.Kubernetes, p.kubelets()); err != nil {
		return &rollout.BlockedError{Reason: "Kubernetes version skew", Err: err}
	}
	p.KubernetesHops = version.KubernetesHops(ch.From.Kubernetes, ch.To.Kubernetes)
	warn, err := version.CheckCompatibility(ch.To)
	if err != nil {
		return &rollout.BlockedError{Reason: "unsupported Talos and Kubernetes pair", Err: err}
	}
	if warn != "" {
		p.env.warn("%s", warn)
	}
	p.Hops = version.Hops(ch.From.Talos, ch.To.Talos)
	return nil
}

// checkNotOlder refuses a target older than what a selected node runs:
// drover does not downgrade, and "nothing to do" would not be true.
func (p *Planned) checkNotOlder() error {
	to := p.Change.To
	var newer []string
	for _, name := range slices.Sorted(maps.Keys(p.Observed)) {
		if len(p.in.Only) > 0 && !slices.Contains(p.in.Only, name) {
			continue
		}
		cur := p.Observed[name].Versions
		switch {
		case !to.Talos.IsZero() && !cur.Talos.IsZero() && cur.Talos.Compare(to.Talos) > 0:
			newer = append(newer, fmt.Sprintf("%s runs Talos %s", name, cur.Talos))
		case !to.Kubernetes.IsZero() && !cur.Kubernetes.IsZero() && cur.Kubernetes.Compare(to.Kubernetes) > 0:
			newer = append(newer, fmt.Sprintf("%s runs Kubernetes %s", name, cur.Kubernetes))
		}
	}
	if len(newer) == 0 {
		return nil
	}
	if len(newer) > 3 {
		newer = append(newer[:3], fmt.Sprintf("and %d more", len(newer)-3))
	}
	return Usage(fmt.Errorf("the target %s is older than what the nodes run (%s): drover does not downgrade; check the version you asked for", to, strings.Join(newer, ", ")))
}

// accessError says why the cluster could not be read: exit 4, nothing
// was touched.
func (p *Planned) accessError(err error) error {
	var ae *observe.AccessError
	if ep, ok := p.Site.(interface{ Endpoint() string }); ok && errors.As(err, &ae) {
		ae.Endpoint = ep.Endpoint()
	}
	return &rollout.BlockedError{Reason: "read what the nodes run", Err: err}
}

// durations is the history of measured durations, in the run lock's
// namespace; nil without a cluster.
func (p *Planned) durations() *journal.Durations {
	kc := p.Site.Client()
	if kc == nil {
		return nil
	}
	return &journal.Durations{Client: kc, Namespace: p.lockNamespace()}
}

// lockNamespace is the run lock's namespace: the flag, $POD_NAMESPACE,
// else drover.
func (p *Planned) lockNamespace() string {
	return LockNamespace(p.in.LockNamespace, p.env.Getenv)
}

// LockNamespace is the run lock's namespace: the one given,
// $POD_NAMESPACE, else drover.
func LockNamespace(given string, getenv func(string) string) string {
	if given != "" {
		return given
	}
	if getenv != nil {
		if ns := getenv("POD_NAMESPACE"); ns != "" {
			return ns
		}
	}
	return "drover"
}

// loadMeasured reads the medians of measured durations for the ETA; a
// history that cannot be read leaves the configured durations.
func (p *Planned) loadMeasured(ctx context.Context) {
	d := p.durations()
	if d == nil {
		return
	}
	samples, err := d.Load(ctx)
	if err != nil {
		p.env.warn("%v; the ETA uses rollout.stepDurations", err)
		return
	}
	p.measured, p.measuredN = journal.Medians(samples)
}

// resumeChange: a resumed run keeps the versions its journal started with
// (its nodes may all be past the start by now); a different target is
// refused.
func (p *Planned) resumeChange() error {
	if p.Resume == nil || p.Resume.Finished {
		return nil
	}
	h := p.Resume.Header
	from, err := version.ParsePair(h.From)
	if err != nil {
		return Usage(&rollout.JournalError{Why: "its run header: " + err.Error()})
	}
	to, err := version.ParsePair(h.To)
	if err != nil {
		return Usage(&rollout.JournalError{Why: "its run header: " + err.Error()})
	}
	if to != p.Change.To {
		return Usage(&rollout.JournalError{Why: fmt.Sprintf("the journal's run goes to %s, this run to %s: resume with the same target", to, p.Change.To)})
	}
	p.Change.From = from
	return nil
}

// buildPlan builds the plan from what the nodes run; the nodes a resumed
// run caught mid-step are planned from the run's start whatever they report
// (a node at the target still owes its checks).
func (p *Planned) buildPlan() {
	current := map[string]version.Pair{}
	var inFlight []string
	if p.Resume != nil {
		inFlight = p.Resume.InFlight()
	}
	for k, o := range p.Observed {
		if !slices.Contains(inFlight, k) {
			current[k] = o.Versions
		}
	}
	r := p.Config.Rollout
	only := p.in.Only
	if p.Resume != nil && p.Resume.Header.Only != "" {
		only = strings.Split(p.Resume.Header.Only, ",")
	}
	canary, canaryNodes, canaryOnly, canaryDone := p.in.Canary, r.Canary, false, false
	if p.Resume != nil {
		// A resumed run keeps its canary: until it paused, it pauses after
		// the canary's nodes that are left, or at once when none is.
		canary, canaryNodes = 0, nil
		if h := p.Resume.Header.Canary; h != "" && !p.Resume.CanaryPaused {
			names := strings.Split(h, ",")
			var left []string
			for _, n := range names {
				if ns := p.Resume.Nodes[n]; ns == nil || !ns.Done {
					left = append(left, n)
				}
			}
			canary, canaryNodes, canaryOnly, canaryDone = len(left), left, true, len(left) == 0
			if canaryDone {
				canaryNodes = names
			}
		}
	}
	p.Plan = plan.Build(plan.Input{
		Nodes: p.Config.Nodes, Strategy: p.Decision.Strategy, From: p.Change.From, To: p.Change.To,
		Current: current, MaxParallelWorkers: r.MaxParallelWorkers, Steps: r.StepDurations, ControlPlaneSoak: r.ControlPlaneSoak.Duration,
		WorkerSoak: r.WorkerSoak.Duration, MaxSoaking: r.MaxSoaking, HealthPasses: r.HealthPasses, HealthInterval: r.HealthInterval.Duration,
		RebuildTemplates: p.Config.Terraform.Templates == config.TemplatesRebuild,
		Only:             only, Canary: canary, CanaryNodes: canaryNodes, CanaryOnly: canaryOnly, CanaryDone: canaryDone,
		Measured: p.measured, MeasuredCount: p.measuredN, Self: p.selfToHandOff(), Images: planImages(p.Images), Held: p.held,
	})
	p.Plan.InFlight = inFlight
}

// selfToHandOff is drover's node when the run must hand off before it: a
// node already at the target (a resumed node caught after its change, with
// only its gate or soak left) is not drained again, and needs none.
func (p *Planned) selfToHandOff() string {
	self := p.Self.Node
	if o, ok := p.Observed[self]; ok && plan.AtTarget(o.Versions, p.Change.To) {
		return ""
	}
	return self
}

// kubelets are the kubelet versions the nodes run, as observed.
func (p *Planned) kubelets() map[string]version.Version {
	out := map[string]version.Version{}
	for n, o := range p.Observed {
		if !o.Versions.Kubernetes.IsZero() {
			out[n] = o.Versions.Kubernetes
		}
	}
	return out
}

// VersionSources says, per node, where its version came from.
func (p *Planned) VersionSources() map[string]string {
	out := map[string]string{}
	for _, n := range p.Config.Nodes {
		switch o, ok := p.Observed[n.Name]; {
		case ok:
			out[n.Name] = o.Source
		case p.Observed == nil:
			out[n.Name] = "claimed (" + orNone(p.Claim.Source) + ")"
		default:
			out[n.Name] = "no Node object: assumed at " + p.Change.From.Talos.String()
		}
	}
	return out
}

// Terraform names the Terraform binary and version when the inventory was
// completed from its state ("" otherwise).
func (p *Planned) Terraform() string {
	if tr, ok := p.Site.(interface{ TerraformRunner() *terraform.Runner }); ok && p.InventorySources != nil {
		if tf := tr.TerraformRunner(); tf != nil {
			return tf.Binary + " " + tf.Version
		}
	}
	return ""
}

// Close closes the site.
func (p *Planned) Close() { p.Site.Close() }

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// resolve settles the change from the claim and what the nodes run.
func resolve(c observe.Claim, observed map[string]rollout.Observed) (version.Change, error) {
	res, err := observe.Resolve(c, observed)
	var me *observe.MismatchError
	var se *observe.SpreadError
	switch {
	case errors.As(err, &me):
		return version.Change{}, &rollout.BlockedError{Reason: "the claimed versions disagree with the cluster", Err: err}
	case errors.As(err, &se):
		return version.Change{}, &rollout.BlockedError{Reason: "the nodes run versions more than one minor apart", Err: err}
	case err != nil:
		return version.Change{}, err
	}
	ch := version.Change{From: res.From, To: res.To}
	if ch.From.Talos.IsZero() {
		return ch, Usage(errors.New("no current Talos version: drover reads it from the nodes when it can reach the cluster (--kubeconfig, --context); otherwise pass --from-talos, --vars-before/--vars-after or --git-range"))
	}
	if ch.To.Talos.IsZero() {
		ch.To.Talos = ch.From.Talos
	}
	if ch.To.Kubernetes.IsZero() {
		ch.To.Kubernetes = ch.From.Kubernetes
	}
	return ch, nil
}

// Classify decides the strategy of the change a claim makes alone, as a
// pull request states it; Plan checks the claim against the nodes.
func Classify(cfg *config.Config, claim observe.Claim) (version.Decision, error) {
	c, err := resolve(claim, nil)
	if err != nil {
		return version.Decision{}, err
	}
	return decide(cfg, c)
}

// decide classifies the change with the configured approval list.
func decide(cfg *config.Config, c version.Change) (version.Decision, error) {
	var list []version.Version
	for _, s := range cfg.Approval.Versions {
		v, err := version.Parse(s, true)
		if err != nil {
			return version.Decision{}, err // validated at load; cannot happen
		}
		list = append(list, v)
	}
	return version.Decide(c.From, c.To, list)
}
