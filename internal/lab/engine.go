package lab

import (
	"github.com/prox-ops/drover/internal/health"
	"github.com/prox-ops/drover/internal/kube"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/talos"
)

// Engine wires an upgrade engine to the lab: drover's real Kubernetes
// operations and health checks against the simulated cluster, the simulated
// hypervisor and Talos, and the virtual clock.
//
// The engine runs the drain preflight; drop it from Preflights to rehearse
// --skip-drain-preflight.
func (l *Lab) Engine(j rollout.Journal, sink rollout.Sink, runID string) *rollout.Engine {
	r := l.opts.Config.Rollout
	guard := &talos.Guard{
		Etcd: l.Etcd(), ControlPlane: l.opts.Config.ControlPlaneNodes(), Clock: l.Clock, SnapshotDir: l.snapshotDir,
		Keep: l.opts.Config.Talos.EtcdSnapshotsKeep, Log: l.opts.Log,
	}
	kc := &kube.Client{Client: l.Client, Clock: l.Clock, DeleteEmptyDirData: r.DeleteEmptyDirData, ForceAfterTimeout: r.ForceDrainAfterTimeout}
	return &rollout.Engine{
		Cluster:    kc,
		Preflights: []rollout.Preflight{guard, kube.DrainPreflightCheck{Client: kc}},
		Guard:      guard,
		// An already unhealthy cluster blocks the run before any change.
		PreflightHealth: true,
		Replacer:        l.Hypervisor(),
		Upgrader:        l.Talos(),
		Kubernetes:      l.Talos(),
		Health:          l.Health(),
		Journal:         j,
		Clock:           l.Clock,
		Sink:            sink,
		Policy:          rollout.PolicyFrom(r),
		RunID:           runID,
	}
}

// Health is the health gate over the lab's API, with the configured settings.
func (l *Lab) Health() *health.Gate {
	return &health.Gate{Client: l.Client, Dynamic: l.Dynamic, Clock: l.Clock, Settings: l.opts.Config.Health}
}
