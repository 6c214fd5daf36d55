package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/client"
	"k8s.io/client-go/dynamic"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/health"
	"github.com/prox-ops/drover/internal/kube"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/talos"
	"github.com/prox-ops/drover/internal/terraform"
	"github.com/prox-ops/drover/internal/version"
)

// realEngine wires the engine to a real cluster: client-go for Kubernetes,
// the Talos API for pets and the etcd guard, Terraform for cattle, and
// talosctl for the Kubernetes phase of a pets run. cleanup must be called.
func (f *upgradeFlags) realEngine(ctx context.Context, s Streams, p *prepared, progress io.Writer, log func(node, msg string)) (_ *rollout.Engine, cleanup func(), err error) {
	cleanup = func() {}
	if p.kube == nil {
		return nil, cleanup, usage(fmt.Errorf("%w; an upgrade needs the cluster (rehearse with --lab)", kube.ErrNoCluster))
	}
	cfg := p.cfg
	tc, err := talos.ConfigSource{Flag: f.talosconfig, Getenv: s.Getenv, Home: s.Home}.Resolve()
	if err != nil {
		return nil, cleanup, usage(err)
	}
	var tcl *client.Client
	cleanup = func() {
		if tcl != nil {
			_ = tcl.Close()
		}
		tc.Cleanup()
	}
	log("", "talosconfig from "+tc.Source)
	if tcl, err = client.New(ctx, client.WithConfigFromFile(tc.Path)); err != nil {
		return nil, cleanup, usage(fmt.Errorf("talosconfig: %w", err))
	}
	real := clock.Real{}
	r := cfg.Rollout
	kc := &kube.Client{Client: p.kube, Clock: real, DeleteEmptyDirData: r.DeleteEmptyDirData, ForceAfterTimeout: r.ForceDrainAfterTimeout}
	api := &talos.API{C: tcl, Clock: real, Talos: cfg.Talos, RebootTimeout: r.ReadyTimeout.Duration, PollInterval: 2 * time.Second, Log: log}
	cps := cfg.ControlPlaneNodes()
	guard := &talos.Guard{Etcd: talos.Etcd{API: api}, ControlPlane: cps, Clock: real, SnapshotDir: cfg.Talos.EtcdSnapshotDir,
		Keep: cfg.Talos.EtcdSnapshotsKeep, Timeout: r.ReadyTimeout.Duration, PollInterval: 2 * time.Second, Log: log}
	dyn, err := dynamic.NewForConfig(p.rest)
	if err != nil {
		return nil, cleanup, usage(err)
	}
	eng := &rollout.Engine{
		Cluster: kc, Upgrader: api, Health: &health.Gate{Client: p.kube, Dynamic: dyn, Clock: real, Settings: cfg.Health, Resolve: inPodResolver(s)},
		Clock: real, Guard: guard, Policy: rollout.PolicyFrom(r), PreflightHealth: true,
		Preflights: []rollout.Preflight{guard, kube.DrainPreflightCheck{Client: kc}},
	}
	switch {
	case p.plan.Strategy == version.Cattle:
		tf, err := p.terraform(ctx, &f.src, Streams{Err: progress, Getenv: s.Getenv})
		if err != nil {
			return nil, cleanup, err
		}
		log("", fmt.Sprintf("cattle through %s %s in %s", tf.Binary, tf.Version, cfg.Terraform.WorkingDir))
		eng.Replacer = tf
		eng.Preflights = append(eng.Preflights, terraform.Preflight{Runner: tf, At: p.change.From})
	case p.plan.KubernetesPhase:
		if len(cps) == 0 {
			return nil, cleanup, errors.New("no control-plane node for talosctl upgrade-k8s")
		}
		k8s := &talos.UpgradeK8s{Talosconfig: tc.Path, Node: cps[0].IP, Out: masker(cfg, s).NewWriter(progress, "[talosctl] ")}
		eng.Kubernetes = k8s
		eng.Preflights = append(eng.Preflights, k8s)
	}
	return eng, cleanup, nil
}
