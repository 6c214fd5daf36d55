package lab

import (
	"github.com/prox-ops/drover/internal/health"
	"github.com/prox-ops/drover/internal/kube"
	"github.com/prox-ops/drover/internal/rollout"
)

// Engine wires an upgrade engine to the lab: drover's real Kubernetes
// operations and health checks against the simulated cluster, the simulated
// hypervisor and Talos, and the virtual clock.
//
// The engine runs the drain preflight; drop it from Preflights to rehearse
// --skip-drain-preflight.
func (l *Lab) Engine(j rollout.Journal, sink rollout.Sink, runID string) *rollout.Engine {
	r := l.opts.Config.Rollout
	kc := &kube.Client{Client: l.Client, Clock: l.Clock, DeleteEmptyDirData: r.DeleteEmptyDirData, ForceAfterTimeout: r.ForceDrainAfterTimeout}
	return &rollout.Engine{
		Cluster:    kc,
		Preflights: []rollout.Preflight{kube.DrainPreflightCheck{Client: kc}},
		Replacer:   l.Hypervisor(),
		Upgrader:   l.Talos(),
		Health:     &health.Gate{Client: l.Client, Clock: l.Clock},
		Journal:    j,
		Clock:      l.Clock,
		Sink:       sink,
		Policy:     rollout.PolicyFrom(r),
		RunID:      runID,
	}
}
