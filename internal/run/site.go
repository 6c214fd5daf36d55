// Package run is one drover run, end to end: it reads what the nodes run,
// decides the strategy, plans, and for an upgrade takes the run lock, opens
// the journal, assembles the engine, attaches the notifiers, runs and
// reports. Where it runs, the embedded lab or a real cluster, is a Site:
// the run asks the site for what differs (a client, a clock, the engine's
// adapters, default paths) and does everything else the same way, so a
// rehearsal is the run.
//
// The CLI parses flags into Inputs and Options, calls Plan and Upgrade (or
// BuildTemplates) and prints what they return; it makes no decision of its
// own.
package run

import (
	"context"

	"k8s.io/client-go/kubernetes"

	"github.com/prox-ops/drover/internal/assemble"
	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/health"
	"github.com/prox-ops/drover/internal/observe"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/version"
)

// Site is where a run happens: the lab or a real cluster.
type Site interface {
	// Source says where the node versions are read from, for people.
	Source() string
	// Client is the cluster's API (the run lock, a ConfigMap journal, the
	// measured durations); nil when there is no cluster access.
	Client() kubernetes.Interface
	// Clock is the run's clock: the virtual clock in the lab.
	Clock() clock.Clock
	// Versions reads what each node runs; nil without cluster access.
	Versions() *observe.Reader
	// Images reads what each node was installed from; nil without a
	// Talos API.
	Images() rollout.ImageReader
	// Self says where drover runs: its pod and node inside the cluster.
	Self(ctx context.Context, env Env) (Self, error)
	// CompleteInventory fills the hosts and VM ids the configuration leaves
	// empty and says, per node, where they came from (nil: nothing filled).
	CompleteInventory(ctx context.Context, cfg *config.Config, change version.Change, env Env) (map[string]string, error)
	// Adapters are the engine's adapters for one upgrade; release frees
	// what they hold (informers) once the run is over.
	Adapters(ctx context.Context, u *Upgrade) (a assemble.Adapters, release func(), err error)
	// Gate is the health gate over the site, on its own (drover health).
	Gate(env Env) (*health.Gate, error)
	// BuildTemplates builds a cattle change's templates ahead and says
	// whether it built them (false: they were there already).
	BuildTemplates(ctx context.Context, p *Planned) (built bool, err error)
	// Journal wraps the run's journal: the lab saves its state with every
	// entry and plays a rehearsed crash.
	Journal(j rollout.Journal, p *Planned) rollout.Journal
	// Defaults are the paths a run uses when none is given.
	Defaults() Defaults
	// EventsClient is the client Node events are written with: one of its
	// own on a real cluster, so they never queue behind the run's calls.
	EventsClient() kubernetes.Interface
	// LockClient is the client the run lock is taken and renewed with:
	// one of its own on a real cluster (as controllers' leader election
	// has), so that a drain's burst of evictions cannot starve a renewal.
	LockClient() kubernetes.Interface
	// Finished is told the run is over and returns what it has to say
	// (the lab saves its state and counts the Events drover recorded).
	Finished(env Env) []string
	// Stats are the lab's safety counters; nil on a real cluster.
	Stats() *LabStats
	// Close releases the site (the Talos client, a decoded talosconfig).
	Close()
}

// handOverer is a site that plays a hand-off's continuation itself (the
// lab without --lab-state): the next runner pod starts on another node
// and the run goes on in this process. It says whether it did.
type handOverer interface {
	HandOver() (bool, error)
}

// Defaults are a site's default paths; empty means none (in memory).
type Defaults struct {
	Journal string
	Report  string
}

// LabStats are the lab's safety counters, in the report.
type LabStats struct {
	SimulatedDurationSeconds float64 `json:"simulatedDurationSeconds"`
	PDBViolations            int     `json:"pdbViolations"`
	MaxControlPlaneDown      int     `json:"maxControlPlaneDown"`
	// EtcdLeaderLost counts control-plane nodes taken down while leading etcd.
	EtcdLeaderLost int `json:"etcdLeaderLost"`
}
