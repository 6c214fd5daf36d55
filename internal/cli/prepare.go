package cli

import (
	"context"
	"errors"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/kube"
	"github.com/prox-ops/drover/internal/lab"
	"github.com/prox-ops/drover/internal/plan"
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
	p := &prepared{cfg: cfg}
	if p.change, err = src.change(ctx, cfg); err != nil {
		return nil, err
	}
	if p.decision, err = decide(cfg, p.change); err != nil {
		return nil, err
	}
	var current map[string]version.Pair
	if src.lab {
		for node := range faults {
			if _, ok := cfg.NodeByName(node); !ok {
				return nil, usage(fmt.Errorf("--lab-fault: no node %q in the inventory", node))
			}
		}
		p.lab, err = lab.New(lab.Options{Config: *cfg, Talos: p.change.From.Talos, Kubernetes: p.change.From.Kubernetes, Faults: faults, Log: labLog})
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
		}
	}
	r := cfg.Rollout
	p.plan = plan.Build(plan.Input{
		Nodes: cfg.Nodes, Strategy: p.decision.Strategy, From: p.change.From, To: p.change.To,
		Current: current, MaxParallelWorkers: r.MaxParallelWorkers, Steps: r.StepDurations, ControlPlaneSoak: r.ControlPlaneSoak.Duration,
	})
	return p, nil
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
