// Package assemble builds the upgrade engine from the configuration and a
// set of adapters. It is the only place an engine is put together: the lab
// and a real cluster hand it different adapters (a simulated hypervisor or
// Terraform, simulated etcd or the Talos API) and get the same policy,
// guards, preflights and health gate, so a rehearsal is the run.
package assemble

import (
	"context"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/client"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/health"
	"github.com/prox-ops/drover/internal/kube"
	"github.com/prox-ops/drover/internal/observe"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/talos"
)

// PollInterval is how often the engine's adapters look again while they
// wait (a node's Talos version, etcd membership).
const PollInterval = 2 * time.Second

// Adapters are what differs between the lab and a real cluster.
type Adapters struct {
	Kube    kubernetes.Interface
	Dynamic dynamic.Interface
	Clock   clock.Clock
	// Etcd is etcd through the Talos API (or the lab's simulation).
	Etcd talos.EtcdAPI
	// Talos answers each node's Talos version.
	Talos observe.TalosVersioner
	// SnapshotDir, when set, overrides talos.etcdSnapshotDir (the lab keeps
	// its snapshots in a temporary directory).
	SnapshotDir string
	// SnapshotUpload, when set, keeps each snapshot off the runner too.
	SnapshotUpload talos.SnapshotUploader
	Replacer       rollout.Replacer
	Upgrader       rollout.Upgrader
	Kubernetes     rollout.KubernetesUpgrader
	// Preflights are the adapters' own (the Terraform state, talosctl).
	Preflights []rollout.Preflight
	// Namespace is where drover runs ($POD_NAMESPACE in the runner pod):
	// probe pods go there. Empty: health.probeNamespace.
	Namespace string
	// Alerts, when set, reads the alerts that fire (health.alertmanager).
	Alerts health.AlertSource
	// Silences, when set, silences each node's alerts while it changes
	// (health.alertmanager.silences).
	Silences rollout.Silencer
	// Network reads the nodes' network links (the Talos API).
	Network rollout.LinkReader
	// Images reads what the nodes booted (schematic and extensions).
	Images rollout.ImageReader
	// Log is told what the adapters do (etcd guard steps).
	Log func(node, msg string)
	// Reader, when set, is where the health gate reads nodes and pods (a
	// run's informer cache, the lab's index); otherwise paginated lists.
	Reader health.Reader
}

// Policy is the engine's policy from the configuration.
func Policy(cfg config.Config) rollout.Policy {
	r := cfg.Rollout
	return rollout.Policy{
		DrainTimeout: r.DrainTimeout.Duration, DrainAttempts: r.DrainAttempts,
		ReadyTimeout:  r.ReadyTimeout.Duration,
		HealthTimeout: r.HealthTimeout.Duration, HealthAttempts: r.HealthAttempts, HealthPasses: r.HealthPasses,
		HealthInterval: r.HealthInterval.Duration, ControlPlaneSoak: r.ControlPlaneSoak.Duration, WorkerSoak: r.WorkerSoak.Duration, MaxSoaking: r.MaxSoaking,
		RebuildTemplates:    cfg.Terraform.Templates == config.TemplatesRebuild,
		VolumeDetachTimeout: r.VolumeDetachTimeout.Duration,
		BlockingTimeout:     r.BlockingTimeout.Duration,
	}
}

// KubeClient is drover's Kubernetes operations with the configured drain.
func KubeClient(cfg config.Config, a Adapters) *kube.Client {
	r := cfg.Rollout
	kc := &kube.Client{Client: a.Kube, Clock: a.Clock, DeleteEmptyDirData: r.DeleteEmptyDirData, ForceAfterTimeout: r.ForceDrainAfterTimeout, BlockingPods: r.BlockingSelectors()}
	if a.Reader != nil {
		kc.Reader = a.Reader
	}
	return kc
}

// Health is the health gate with the configured settings.
func Health(cfg config.Config, a Adapters) *health.Gate {
	return &health.Gate{Client: a.Kube, Dynamic: a.Dynamic, Clock: a.Clock, Settings: cfg.Health, Inventory: cfg.Nodes, Namespace: a.Namespace, Alerts: a.Alerts, Network: a.Network, Images: a.Images, Reader: a.Reader}
}

// Guard is the etcd guard of the control plane.
func Guard(cfg config.Config, a Adapters) *talos.Guard {
	dir := cfg.Talos.EtcdSnapshotDir
	if a.SnapshotDir != "" {
		dir = a.SnapshotDir
	}
	return &talos.Guard{
		Etcd: a.Etcd, ControlPlane: cfg.ControlPlaneNodes(), Clock: a.Clock, SnapshotDir: dir,
		Keep: cfg.Talos.EtcdSnapshotsKeep, Timeout: cfg.Rollout.ReadyTimeout.Duration, PollInterval: PollInterval, Log: a.Log,
		Upload: a.SnapshotUpload, Recipients: talos.Recipients(cfg.Talos.EtcdSnapshotRecipients),
	}
}

// Versions reads what the nodes run: the Node object, and the Talos API
// for every node that can answer.
func Versions(a Adapters) *observe.Reader {
	return &observe.Reader{Client: a.Kube, Talos: a.Talos}
}

// Run is what one run hands the engine besides the configuration and the
// adapters: where it journals and reports, who it is, and what the
// operator switched off.
type Run struct {
	Journal rollout.Journal
	Sink    rollout.Sink
	RunID   string
	// Header describes the run in its journal.
	Header rollout.RunHeader
	// Resume, when set, continues the run its journal describes.
	Resume *rollout.ResumeState
	// Window says whether the maintenance window is open (nil: no window,
	// or --force-window); WindowName describes it.
	Window     func(time.Time) bool
	WindowName string
	// SkipDrainPreflight, SkipPreflightHealth and SkipImageCheck are the
	// operator's overrides (--skip-drain-preflight, --skip-preflight-health,
	// --skip-image-check).
	SkipDrainPreflight, SkipPreflightHealth, SkipImageCheck bool
	// Self is drover's own pod, when it runs in the cluster: at a hand-off
	// the other runner pods of its scale set leave its node.
	Self *corev1.Pod
}

// Engine assembles the engine for one run. Nothing is set on it afterwards:
// the engine that runs is the one assembled here.
func Engine(cfg config.Config, a Adapters, r Run) *rollout.Engine {
	kc := KubeClient(cfg, a)
	guard := Guard(cfg, a)
	e := &rollout.Engine{
		Cluster:    kc,
		Replacer:   a.Replacer,
		Upgrader:   a.Upgrader,
		Kubernetes: a.Kubernetes,
		Health:     Health(cfg, a),
		Clock:      a.Clock,
		Guard:      guard,
		Versions:   Versions(a),
		Network:    a.Network,
		Images:     a.Images,
		Volumes:    kc,
		Holders:    kc,
		Room:       kc,
		Policy:     Policy(cfg),
		// An already unhealthy cluster blocks the run before any change.
		PreflightHealth: !r.SkipPreflightHealth,
		Journal:         r.Journal, Sink: r.Sink, RunID: r.RunID, Header: r.Header, Resume: r.Resume,
		Window: r.Window, WindowName: r.WindowName,
		Silences: a.Silences,
	}
	if hooks := Hooks(cfg, a, r.RunID); hooks != nil {
		e.Hooks = hooks
	}
	if r.Self != nil {
		e.Peers = runnerPeers{client: kc, self: r.Self}
	}
	drain := kube.DrainPreflightCheck{Client: kc}
	e.Preflights = []rollout.Preflight{guard}
	if r.SkipDrainPreflight {
		e.Skipped = append(e.Skipped, drain.Name())
	} else {
		e.Preflights = append(e.Preflights, drain)
	}
	for _, pf := range a.Preflights {
		if r.SkipImageCheck && pf.Name() == talos.ImageCheckName {
			e.Skipped = append(e.Skipped, pf.Name())
			continue
		}
		e.Preflights = append(e.Preflights, pf)
	}
	if r.SkipPreflightHealth {
		e.Skipped = append(e.Skipped, "preflight health")
	}
	return e
}

// Hooks runs the configured hooks as Jobs in drover's namespace, or is
// nil when none is configured.
func Hooks(cfg config.Config, a Adapters, runID string) *kube.Hooks {
	specs := map[rollout.HookPoint]kube.HookSpec{}
	for name, h := range cfg.Hooks.Points() {
		specs[rollout.HookPoint(name)] = kube.HookSpec{Image: h.Image, Command: h.Command, ServiceAccountName: h.ServiceAccountName, NodeSelector: h.NodeSelector, Timeout: h.Timeout.Duration}
	}
	if len(specs) == 0 {
		return nil
	}
	ns := a.Namespace
	if ns == "" {
		ns = cfg.Health.ProbeNamespace
	}
	return &kube.Hooks{Client: a.Kube, Clock: a.Clock, Namespace: ns, RunID: runID, Specs: specs, PollInterval: PollInterval, Progress: a.Log}
}

// TalosAPI is the Talos API adapter with the configured timeouts.
func TalosAPI(cfg config.Config, c *client.Client, clk clock.Clock, log func(node, msg string)) *talos.API {
	return &talos.API{Client: c, Clock: clk, Talos: cfg.Talos, RebootTimeout: cfg.Rollout.ReadyTimeout.Duration, PollInterval: PollInterval, Log: log}
}

// Settings are an engine's settings, everything that is not an adapter:
// what a rehearsal and a real run must share.
type Settings struct {
	Policy          rollout.Policy
	PreflightHealth bool
	Preflights      []string
	Drain           struct{ DeleteEmptyDirData, ForceAfterTimeout bool }
	Guard           struct {
		ControlPlane []string
		Keep         int
		Timeout      time.Duration
		PollInterval time.Duration
	}
	Health config.Health
	// The run's options.
	Header     rollout.RunHeader
	Skipped    []string
	WindowName string
	Window     bool
}

// runnerPeers evicts the other runner pods of drover's scale set on its node.
type runnerPeers struct {
	client *kube.Client
	self   *corev1.Pod
}

func (p runnerPeers) EvictPeers(ctx context.Context, node string) ([]string, error) {
	return p.client.EvictRunnerPeers(ctx, node, p.self)
}

// Describe reads an assembled engine's settings.
func Describe(e *rollout.Engine) Settings {
	var s Settings
	s.Policy, s.PreflightHealth = e.Policy, e.PreflightHealth
	s.Header, s.Skipped, s.WindowName, s.Window = e.Header, e.Skipped, e.WindowName, e.Window != nil
	for _, pf := range e.Preflights {
		s.Preflights = append(s.Preflights, pf.Name())
	}
	if kc, ok := e.Cluster.(*kube.Client); ok {
		s.Drain.DeleteEmptyDirData, s.Drain.ForceAfterTimeout = kc.DeleteEmptyDirData, kc.ForceAfterTimeout
	}
	if g, ok := e.Guard.(*talos.Guard); ok {
		for _, n := range g.ControlPlane {
			s.Guard.ControlPlane = append(s.Guard.ControlPlane, n.Name)
		}
		s.Guard.Keep, s.Guard.Timeout, s.Guard.PollInterval = g.Keep, g.Timeout, g.PollInterval
	}
	if h, ok := e.Health.(*health.Gate); ok {
		s.Health = h.Settings
	}
	return s
}
