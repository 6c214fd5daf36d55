package lab

import (
	"github.com/prox-ops/drover/internal/assemble"
	"github.com/prox-ops/drover/internal/health"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/talos"
)

// Adapters are the lab's side of the engine: drover's real Kubernetes
// operations and health checks run against the simulated cluster, with the
// simulated hypervisor, Talos and etcd, on the virtual clock.
func (l *Lab) Adapters() assemble.Adapters {
	return assemble.Adapters{
		Kube: l.Client, Dynamic: l.Dynamic, Clock: l.Clock,
		Etcd: l.Etcd(), Talos: l.Talos(), SnapshotDir: l.snapshotDir,
		Replacer: l.Hypervisor(), Upgrader: l.Talos(), Kubernetes: l.Talos(),
		Alerts: l.Alerts(), Silences: l.Silences(), Network: l.Talos(), Images: l.Talos(), Log: l.opts.Log, Reader: l.Reader(),
		Preflights: []rollout.Preflight{talos.ImageCheck{Talos: l.opts.Config.Talos, Registry: l.Registry(), Puller: l.Talos()}},
	}
}

// Engine assembles an upgrade engine over the lab, as a real run's is
// assembled over a real cluster.
//
// The engine runs the drain preflight; drop it from Preflights to rehearse
// --skip-drain-preflight.
func (l *Lab) Engine(j rollout.Journal, sink rollout.Sink, runID string) *rollout.Engine {
	return assemble.Engine(l.opts.Config, l.Adapters(), assemble.Run{Journal: j, Sink: sink, RunID: runID})
}

// Health is the health gate over the lab's API, with the configured settings.
func (l *Lab) Health() *health.Gate {
	return assemble.Health(l.opts.Config, l.Adapters())
}
