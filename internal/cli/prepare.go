package cli

import (
	"context"
	"errors"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/kube"
	"github.com/prox-ops/drover/internal/lab"
	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/secrets"
	"github.com/prox-ops/drover/internal/terraform"
	"github.com/prox-ops/drover/internal/version"
)

// prepared is everything a plan or an upgrade needs, checked, before any change.
type prepared struct {
	cfg      *config.Config
	change   version.Change
	decision version.Decision
	plan     plan.Plan
	// lab is the embedded cluster, nil for a real one.
	lab *lab.Lab
	// clusterSource says where the node versions were read, or why not.
	clusterSource string
	// kube is the real cluster's client, nil in the lab or without access.
	kube kubernetes.Interface
	// rest is the real cluster's access, for the dynamic client.
	rest *rest.Config
	// inventorySources says where each node's host and VM id came from,
	// when some were read from the Terraform state.
	inventorySources map[string]string
	// hops are the Talos minors the upgrade passes through.
	hops []string
	// current are the node versions read from the cluster.
	current map[string]version.Pair
	// tf is the Terraform runner, when discovery ran.
	tf *terraform.Runner
}

// prepare loads the configuration, resolves the versions, decides the
// strategy, starts the lab when asked and builds the plan. It changes nothing.
func prepare(ctx context.Context, s Streams, src *sourceFlags, labLog func(node, msg string)) (*prepared, error) {
	faults, err := src.faults()
	if err != nil {
		return nil, err
	}
	cfg, err := src.loadConfig()
	if err != nil {
		return nil, err
	}
	s.addSecrets(cfg.Secrets.Env)
	p := &prepared{cfg: cfg}
	if p.change, err = src.change(ctx, cfg); err != nil {
		return nil, err
	}
	if p.decision, err = decide(cfg, p.change); err != nil {
		return nil, err
	}
	if p.decision.Strategy != version.NoChange {
		if err := version.CheckHops(p.change.From.Talos, p.change.To.Talos, src.skipMinor); err != nil {
			return nil, &rollout.BlockedError{Reason: "Talos minor hops", Err: err}
		}
		warn, err := version.CheckCompatibility(p.change.To)
		if err != nil {
			return nil, &rollout.BlockedError{Reason: "unsupported Talos and Kubernetes pair", Err: err}
		}
		if warn != "" {
			fmt.Fprintf(s.Err, "drover: warning: %s\n", warn)
		}
		p.hops = version.Hops(p.change.From.Talos, p.change.To.Talos)
	}
	var current map[string]version.Pair
	if src.lab {
		for node := range faults {
			if _, ok := cfg.NodeByName(node); !ok {
				return nil, usage(fmt.Errorf("--lab-fault: no node %q in the inventory", node))
			}
		}
		var saved *lab.State
		if src.labState != "" {
			if saved, err = lab.LoadState(src.labState); err != nil {
				return nil, usage(err)
			}
		}
		p.lab, err = lab.New(lab.Options{Config: *cfg, Talos: p.change.From.Talos, Kubernetes: p.change.From.Kubernetes, Faults: faults, Log: labLog, FaultsNow: src.faultsNow, State: saved})
		if err != nil {
			return nil, err
		}
		if current, err = nodeVersions(ctx, p.lab.Client); err != nil {
			return nil, err
		}
		p.clusterSource = "the lab"
	} else {
		rc, from, err := src.access(s).RESTConfig()
		switch {
		case errors.Is(err, kube.ErrNoCluster) && src.kubeconfig == "" && src.kubeCtx == "":
			p.clusterSource = "none (no cluster access: every node is assumed at the current version)"
		case err != nil:
			return nil, usage(err)
		default:
			cs, err := kubernetes.NewForConfig(rc)
			if err != nil {
				return nil, usage(err)
			}
			if current, err = nodeVersions(ctx, cs); err != nil {
				return nil, fmt.Errorf("read node versions from %s: %w", from, err)
			}
			p.clusterSource = from
			p.kube, p.rest = cs, rc
		}
		// Discovery is best effort for planning: a plan from a PR job
		// without Terraform still shows, with the values it lacks.
		if err := p.discover(ctx, src, s); err != nil {
			fmt.Fprintf(s.Err, "drover: warning: could not complete the inventory from the Terraform state: %v\n", err)
		}
	}
	p.current = current
	p.rebuildPlan(nil)
	return p, nil
}

// rebuildPlan builds the plan; nodes in inFlight are planned whatever
// version they report (a resumed node at the target still owes its checks).
func (p *prepared) rebuildPlan(inFlight map[string]bool) {
	current := map[string]version.Pair{}
	for k, v := range p.current {
		if !inFlight[k] {
			current[k] = v
		}
	}
	r := p.cfg.Rollout
	p.plan = plan.Build(plan.Input{
		Nodes: p.cfg.Nodes, Strategy: p.decision.Strategy, From: p.change.From, To: p.change.To,
		Current: current, MaxParallelWorkers: r.MaxParallelWorkers, Steps: r.StepDurations, ControlPlaneSoak: r.ControlPlaneSoak.Duration,
	})
}

func (p *prepared) close() {
	if p.lab != nil {
		p.lab.Close()
	}
}

// nodeVersions reads each node's Talos and kubelet versions from the cluster.
func nodeVersions(ctx context.Context, c kubernetes.Interface) (map[string]version.Pair, error) {
	list, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	out := map[string]version.Pair{}
	for _, n := range list.Items {
		t, ok := kube.TalosVersion(n.Status.NodeInfo.OSImage)
		if !ok {
			continue
		}
		k, _ := version.Parse(n.Status.NodeInfo.KubeletVersion, true)
		out[n.Name] = version.Pair{Talos: t, Kubernetes: k}
	}
	return out, nil
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
