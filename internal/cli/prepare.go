package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/client"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/prox-ops/drover/internal/assemble"
	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/journal"
	"github.com/prox-ops/drover/internal/kube"
	"github.com/prox-ops/drover/internal/lab"
	"github.com/prox-ops/drover/internal/observe"
	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/secrets"
	"github.com/prox-ops/drover/internal/talos"
	"github.com/prox-ops/drover/internal/terraform"
	"github.com/prox-ops/drover/internal/version"
)

// prepared is everything a plan or an upgrade needs, checked, before any change.
type prepared struct {
	target targetFlags
	// measured are the medians of measured durations, with sample counts.
	measured  map[string]time.Duration
	measuredN map[string]int
	cfg       *config.Config
	claim     observe.Claim
	change    version.Change
	decision  version.Decision
	plan      plan.Plan
	// lab is the embedded cluster, nil for a real one.
	lab *lab.Lab
	// clusterSource says where the node versions were read, or why not.
	clusterSource string
	// kube is the real cluster's client, nil in the lab or without access.
	kube kubernetes.Interface
	// rest is the real cluster's access, for the dynamic client.
	rest *rest.Config
	// talos is the real cluster's Talos API client, when a talosconfig was found.
	talos     *client.Client
	talosConf talos.Resolved
	// inventorySources says where each node's host and VM id came from,
	// when some were read from the Terraform state.
	inventorySources map[string]string
	// hops and kubeHops are the Talos and Kubernetes minors the upgrade
	// passes through.
	hops, kubeHops []string
	// observed are the node versions read from the cluster, and who said so.
	observed map[string]rollout.Observed
	// resume is the journal of the run being resumed, read before planning.
	resume *rollout.ResumeState
	// tf is the Terraform runner, when discovery ran.
	tf *terraform.Runner
}

// prepareOptions shape prepare for the command at hand.
type prepareOptions struct {
	// labLog is told what the lab's simulated infrastructure does.
	labLog func(node, msg string)
	// resume, when set, reads the journal of the run to resume, once the
	// cluster is reachable (a ConfigMap journal lives there).
	resume func(p *prepared) (*rollout.ResumeState, error)
	// target is --only and --canary.
	target targetFlags
}

// prepare loads the configuration, reads what the nodes run, checks the
// claimed versions against it, decides the strategy and builds the plan.
// It changes nothing.
func prepare(ctx context.Context, s Streams, src *sourceFlags, o prepareOptions) (*prepared, error) {
	faults, err := src.faults()
	if err != nil {
		return nil, err
	}
	cfg, err := src.loadConfig()
	if err != nil {
		return nil, err
	}
	s.addSecrets(cfg.Secrets.Env)
	if err := o.target.check(cfg); err != nil {
		return nil, err
	}
	p := &prepared{cfg: cfg, target: o.target}
	if p.claim, err = src.claim(ctx, cfg); err != nil {
		return nil, err
	}
	reader, err := p.connect(ctx, s, src, faults, o)
	if err != nil {
		p.close()
		return nil, err
	}
	if err := p.settle(ctx, s, src, reader, o); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

// settle reads the nodes, resolves the change and builds the plan.
func (p *prepared) settle(ctx context.Context, s Streams, src *sourceFlags, reader *observe.Reader, o prepareOptions) error {
	cfg := p.cfg
	var err error
	if o.resume != nil {
		if p.resume, err = o.resume(p); err != nil {
			return err
		}
	}
	// The Node objects, and the Talos API of the control plane; for an
	// in-place (pets) change the Talos API of every node, then decide again.
	for _, inPlace := range []bool{false, true} {
		if reader != nil {
			obs, err := reader.All(ctx, cfg.Nodes, inPlace)
			if err != nil {
				return p.accessError(err)
			}
			p.observed = obs
		}
		if p.change, err = resolve(p.claim, p.observed); err != nil {
			return err
		}
		if err := p.resumeChange(); err != nil {
			return err
		}
		if p.decision, err = decide(cfg, p.change); err != nil {
			return err
		}
		if p.decision.Strategy != version.Pets || reader == nil || reader.Talos == nil {
			break
		}
	}
	if p.decision.Strategy != version.NoChange {
		if err := version.CheckHops(p.change.From.Talos, p.change.To.Talos, src.skipMinor); err != nil {
			return &rollout.BlockedError{Reason: "Talos minor hops", Err: err}
		}
		if err := version.CheckKubernetesHops(p.change.From.Kubernetes, p.change.To.Kubernetes, src.skipMinor); err != nil {
			return &rollout.BlockedError{Reason: "Kubernetes minor hops", Err: err}
		}
		if err := version.CheckSkew(p.change.To.Kubernetes, p.kubelets()); err != nil {
			return &rollout.BlockedError{Reason: "Kubernetes version skew", Err: err}
		}
		p.kubeHops = version.KubernetesHops(p.change.From.Kubernetes, p.change.To.Kubernetes)
		warn, err := version.CheckCompatibility(p.change.To)
		if err != nil {
			return &rollout.BlockedError{Reason: "unsupported Talos and Kubernetes pair", Err: err}
		}
		if warn != "" {
			fmt.Fprintf(s.Err, "drover: warning: %s\n", warn)
		}
		p.hops = version.Hops(p.change.From.Talos, p.change.To.Talos)
	}
	if p.lab == nil {
		// Discovery is best effort for planning: a plan from a PR job
		// without Terraform still shows, with the values it lacks.
		if err := p.discover(ctx, src, s); err != nil {
			fmt.Fprintf(s.Err, "drover: warning: could not complete the inventory from the Terraform state: %v\n", err)
		}
	}
	p.loadMeasured(ctx, s)
	p.buildPlan()
	return nil
}

// durations is the history of measured durations, in the run lock's
// namespace ($POD_NAMESPACE, else drover); nil without a cluster.
func (p *prepared) durations(s Streams) *journal.Durations {
	var kc kubernetes.Interface = p.kube
	if p.lab != nil {
		kc = p.lab.Client
	}
	if kc == nil {
		return nil
	}
	ns := s.getenv("POD_NAMESPACE")
	if ns == "" {
		ns = "drover"
	}
	return &journal.Durations{Client: kc, Namespace: ns}
}

// loadMeasured reads the medians of measured durations for the ETA; a
// history that cannot be read leaves the configured durations.
func (p *prepared) loadMeasured(ctx context.Context, s Streams) {
	d := p.durations(s)
	if d == nil {
		return
	}
	samples, err := d.Load(ctx)
	if err != nil {
		fmt.Fprintf(s.Err, "drover: warning: %v; the ETA uses rollout.stepDurations\n", err)
		return
	}
	p.measured, p.measuredN = journal.Medians(samples)
}

// connect reaches the cluster: the lab, or a real one when there is access.
// It returns the reader of node versions (nil without cluster access).
func (p *prepared) connect(ctx context.Context, s Streams, src *sourceFlags, faults map[string]lab.Fault, o prepareOptions) (*observe.Reader, error) {
	cfg := p.cfg
	if src.lab {
		return p.startLab(src, faults, o.labLog)
	}
	rc, from, err := src.access(s).RESTConfig()
	switch {
	case errors.Is(err, kube.ErrNoCluster) && src.kubeconfig == "" && src.kubeCtx == "":
		p.clusterSource = "none (no cluster access: every node is assumed at the claimed version)"
		return nil, nil
	case err != nil:
		return nil, usage(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, usage(err)
	}
	p.kube, p.rest, p.clusterSource = cs, rc, from
	reader := &observe.Reader{Client: cs}
	tc, err := talos.ConfigSource{Flag: src.talosconfig, Getenv: s.Getenv, Home: s.Home}.Resolve()
	switch {
	case err != nil:
		// An upgrade stops later, before any change, for want of it.
		p.clusterSource += " (Node objects; no talosconfig, so the Talos API was not asked)"
	default:
		p.talosConf = tc
		if p.talos, err = client.New(ctx, client.WithConfigFromFile(tc.Path)); err != nil {
			return nil, usage(fmt.Errorf("talosconfig from %s: %w", tc.Source, err))
		}
		reader.Talos = assemble.TalosAPI(*cfg, p.talos, clock.Real{}, nil)
	}
	return reader, nil
}

// startLab builds the lab at its starting versions (or its saved state).
func (p *prepared) startLab(src *sourceFlags, faults map[string]lab.Fault, log func(node, msg string)) (*observe.Reader, error) {
	cfg := p.cfg
	for node := range faults {
		if _, ok := cfg.NodeByName(node); !ok {
			return nil, usage(fmt.Errorf("--lab-fault: no node %q in the inventory", node))
		}
	}
	start, err := src.labStart()
	if err != nil {
		return nil, err
	}
	var saved *lab.State
	if src.labState != "" {
		if saved, err = lab.LoadState(src.labState); err != nil {
			return nil, usage(err)
		}
	}
	p.lab, err = lab.New(lab.Options{Config: *cfg, Talos: start.Talos, Kubernetes: start.Kubernetes, Faults: faults, Log: log, FaultsNow: src.faultsNow, State: saved,
		PodsPerNode: src.podsPerNode()})
	if err != nil {
		return nil, usage(err)
	}
	p.clusterSource = "the lab"
	return &observe.Reader{Client: p.lab.Client, Talos: p.lab.Talos()}, nil
}

// accessError says why the cluster could not be read: exit 4, nothing
// was touched.
func (p *prepared) accessError(err error) error {
	if p.lab != nil {
		return err
	}
	var ae *observe.AccessError
	if errors.As(err, &ae) && p.rest != nil {
		ae.Endpoint = p.rest.Host
	}
	return &rollout.BlockedError{Reason: "read what the nodes run", Err: err}
}

// resumeChange: a resumed run keeps the versions its journal started with
// (its nodes may all be past the start by now); a different target is
// refused.
func (p *prepared) resumeChange() error {
	if p.resume == nil || p.resume.Finished {
		return nil
	}
	h := p.resume.Header
	from, err := version.ParsePair(h.From)
	if err != nil {
		return usage(&rollout.JournalError{Why: "its run header: " + err.Error()})
	}
	to, err := version.ParsePair(h.To)
	if err != nil {
		return usage(&rollout.JournalError{Why: "its run header: " + err.Error()})
	}
	if to != p.change.To {
		return usage(&rollout.JournalError{Why: fmt.Sprintf("the journal's run goes to %s, this run to %s: resume with the same target", to, p.change.To)})
	}
	p.change.From = from
	return nil
}

// buildPlan builds the plan from what the nodes run; the nodes a resumed
// run caught mid-step are planned from the run's start whatever they report
// (a node at the target still owes its checks).
func (p *prepared) buildPlan() {
	current := map[string]version.Pair{}
	var inFlight []string
	if p.resume != nil {
		inFlight = p.resume.InFlight()
	}
	for k, o := range p.observed {
		if !slices.Contains(inFlight, k) {
			current[k] = o.Versions
		}
	}
	r := p.cfg.Rollout
	only := p.target.only
	if p.resume != nil && p.resume.Header.Only != "" {
		only = strings.Split(p.resume.Header.Only, ",")
	}
	p.plan = plan.Build(plan.Input{
		Nodes: p.cfg.Nodes, Strategy: p.decision.Strategy, From: p.change.From, To: p.change.To,
		Current: current, MaxParallelWorkers: r.MaxParallelWorkers, Steps: r.StepDurations, ControlPlaneSoak: r.ControlPlaneSoak.Duration,
		RebuildTemplates: p.cfg.Terraform.Templates == config.TemplatesRebuild,
		Only:             only, Canary: p.target.canary, CanaryNodes: r.Canary,
		Measured: p.measured, MeasuredCount: p.measuredN,
	})
	p.plan.InFlight = inFlight
}

// kubelets are the kubelet versions the nodes run, as observed.
func (p *prepared) kubelets() map[string]version.Version {
	out := map[string]version.Version{}
	for n, o := range p.observed {
		if !o.Versions.Kubernetes.IsZero() {
			out[n] = o.Versions.Kubernetes
		}
	}
	return out
}

// versionSources says, per node, where its version came from.
func (p *prepared) versionSources() map[string]string {
	out := map[string]string{}
	for _, n := range p.cfg.Nodes {
		switch o, ok := p.observed[n.Name]; {
		case ok:
			out[n.Name] = o.Source
		case p.observed == nil:
			out[n.Name] = "claimed (" + orNone(p.claim.Source) + ")"
		default:
			out[n.Name] = "no Node object: assumed at " + p.change.From.Talos.String()
		}
	}
	return out
}

func (p *prepared) close() {
	if p.lab != nil {
		p.lab.Close()
	}
	if p.talos != nil {
		_ = p.talos.Close()
	}
	if p.talosConf.Cleanup != nil {
		p.talosConf.Cleanup()
	}
}

// discover fills the Proxmox hosts and VM ids the configuration leaves
// empty from the Terraform state.
func (p *prepared) discover(ctx context.Context, src *sourceFlags, s Streams) error {
	missing := false
	for _, n := range p.cfg.Nodes {
		if n.ProxmoxHost == "" || n.VMID == 0 {
			missing = true
		}
	}
	if !missing {
		return nil
	}
	r, err := p.terraform(ctx, src, s)
	if err != nil {
		return err
	}
	found, err := r.Discover(ctx, p.cfg.Nodes)
	if err != nil {
		return fmt.Errorf("inventory discovery: %w", err)
	}
	p.cfg.Nodes, p.inventorySources = terraform.FillInventory(p.cfg.Nodes, found)
	return nil
}

// terraform starts (once) the Terraform runner in the working directory
// of the configuration, relative to --repo.
func (p *prepared) terraform(ctx context.Context, src *sourceFlags, s Streams) (*terraform.Runner, error) {
	if p.tf != nil {
		return p.tf, nil
	}
	r, err := terraform.New(ctx, terraform.Options{
		Settings: p.cfg.Terraform, RepoRoot: src.repoDir,
		Vars:   version.VariableNames{Talos: p.cfg.Versions.TalosVariable, Kubernetes: p.cfg.Versions.KubernetesVariable},
		Change: p.change, Out: s.Err, Masker: masker(p.cfg, s),
	})
	if err != nil {
		return nil, usage(err)
	}
	if err := r.Init(ctx); err != nil {
		return nil, &rollout.BlockedError{Reason: "terraform init", Err: err}
	}
	p.tf = r
	return r, nil
}

// masker masks the configured secret environment variables.
func masker(cfg *config.Config, s Streams) *secrets.Masker {
	if s.Masker == nil {
		return secrets.FromEnv(s.getenv, cfg.Secrets.Env)
	}
	s.addSecrets(cfg.Secrets.Env)
	return s.Masker
}
