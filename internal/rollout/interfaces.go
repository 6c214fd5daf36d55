// Package rollout is drover's engine: it walks a plan node by node through
// preflight, cordon, drain, replace or upgrade, wait Ready, uncordon, health
// gate and soak, rolls a failed node back and halts. It knows its
// collaborators only through the small interfaces in this file; the real
// implementations (client-go, Terraform, Talos) and the lab's both satisfy them.
package rollout

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/version"
)

// Cluster is what the engine needs of Kubernetes.
type Cluster interface {
	// Identity reads what the node is now; a missing node is an error.
	Identity(ctx context.Context, node string) (Identity, error)
	Cordon(ctx context.Context, node string) error
	Uncordon(ctx context.Context, node string) error
	// Drain evicts the node's pods within timeout, honouring PDBs, and
	// tells progress (once per pod) of evictions a budget refuses.
	Drain(ctx context.Context, node string, timeout time.Duration, progress func(msg string)) error
	// DeleteNode removes the Node object of a destroyed VM, so its
	// replacement registers as a new object. A missing node is not an error.
	DeleteNode(ctx context.Context, node string) error
	// WaitReady waits until the node matches want and is Ready.
	WaitReady(ctx context.Context, node string, want ReadyWant, timeout time.Duration) (Identity, error)
}

// ReadyWant is what a node must show before it counts as back.
type ReadyWant struct {
	// NotUID, when set, makes a Node object with this UID never count: the
	// replaced node must register anew.
	NotUID string
	Talos  version.Version
	// Kubelet, when not zero, is the kubelet version the node must report.
	Kubelet version.Version
}

// Identity is a snapshot of a node: who it is and what it offers.
type Identity struct {
	UID            string            `json:"uid"`
	BootID         string            `json:"bootID"`
	Created        time.Time         `json:"created"`
	Ready          bool              `json:"ready"`
	Unschedulable  bool              `json:"unschedulable"`
	OSImage        string            `json:"osImage"`
	KubeletVersion string            `json:"kubeletVersion"`
	Labels         map[string]string `json:"labels,omitempty"`
	Annotations    map[string]string `json:"annotations,omitempty"`
	// Links are the node's physical network links, from the Talos API
	// (nil when it was not asked).
	Links []Link `json:"links,omitempty"`
	// Taints are written key=value:effect.
	Taints      []string          `json:"taints,omitempty"`
	Allocatable map[string]string `json:"allocatable,omitempty"`
	// Schematic and Extensions are what the node booted, from the Talos
	// API ("" and nil when it was not asked).
	Schematic  string   `json:"schematic,omitempty"`
	Extensions []string `json:"extensions,omitempty"`
}

// Image is what a node was installed from, as its Talos API says: the
// install image of its machine configuration, its Image Factory schematic
// and its system extensions.
type Image struct {
	// Ref is the install image (machine.install.image).
	Ref string `json:"ref,omitempty"`
	// Schematic is the Image Factory schematic ID the node booted (its
	// "schematic" extension), else the one in Ref.
	Schematic string `json:"schematic,omitempty"`
	// Extensions are the system extensions it booted, by name, sorted.
	Extensions []string `json:"extensions,omitempty"`
}

// ImageReader reads what a node was installed from (the Talos API).
type ImageReader interface {
	NodeImage(ctx context.Context, n plan.Node) (Image, error)
}

// Link is one physical network link of a node.
type Link struct {
	Name         string   `json:"name"`
	HardwareAddr string   `json:"hardwareAddr"`
	Addresses    []string `json:"addresses,omitempty"`
}

// Replacer replaces VMs (the cattle strategy). One state, one lock: the
// nodes of a batch are destroyed in one call and created in one call.
type Replacer interface {
	// EnsureTemplates creates the templates for the versions, once per
	// run, before any node (and, when templates are rebuilt in place, again
	// at the old versions before a rollback).
	EnsureTemplates(ctx context.Context, to version.Pair) error
	// Destroy destroys the nodes' VMs in one run, after checking each one's
	// identity. Destroying a VM that is gone is not an error.
	Destroy(ctx context.Context, nodes []plan.Node) error
	// Create creates the nodes' VMs at the given versions in one run. When
	// only some nodes failed, the error is a NodeErrors naming them.
	Create(ctx context.Context, nodes []plan.Node, at version.Pair) error
}

// Upgrader upgrades nodes in place (the pets strategy). Rolling back is an
// upgrade to the old version.
type Upgrader interface {
	Upgrade(ctx context.Context, node plan.Node, to version.Pair) error
}

// KubernetesUpgrader upgrades Kubernetes itself, for every node at once
// (pets runs; talosctl upgrade-k8s on a real cluster).
type KubernetesUpgrader interface {
	UpgradeKubernetes(ctx context.Context, from, to version.Version) error
}

// HealthGate decides whether the cluster is healthy after a node.
type HealthGate interface {
	Check(ctx context.Context, in GateInput) HealthResult
}

// GateInput is what a health check is asked about.
type GateInput struct {
	Node plan.Node
	// Want is the version the node must now run.
	Want version.Pair
	// Before is the node's identity before it was touched, when known.
	Before *Identity
	// Exclude names nodes the cluster-wide checks leave out (nodes a resumed
	// run caught mid-step: down or cordoned on purpose).
	Exclude []string
	// Preflight: the gate before any change. Only critical findings fail
	// it; everything else it finds is known before the run (the baseline).
	Preflight bool
	// Baseline is what was unwell before the run: findings in it are
	// listed as known, and fail nothing.
	Baseline Baseline
	// Memory carries what earlier runs of the same gate saw (restart
	// counts), so a run judges change, not a snapshot. Nil: no memory.
	Memory *Memory
	// NodeOnly judges the node alone: the cluster-wide checks (storage,
	// Flux, alerts, custom checks, the cluster's unsettled pods) are left
	// out, as a background soak's are while other nodes change.
	NodeOnly bool
	// Claims are the claims (namespace/name) whose volumes left the node
	// after its drain: the gate fails while their pods do not run again.
	Claims []string
}

// Finding is one thing a check found wrong.
type Finding struct {
	// Key names what is wrong, stably across runs ("pod/apps/web-1/CrashLoopBackOff").
	Key  string `json:"key"`
	Text string `json:"text"`
	// Node is the node it is about, if any.
	Node string `json:"node,omitempty"`
	// Critical findings block a run even before any change (critical
	// namespaces, Ceph HEALTH_ERR, DNS, a check that cannot run, a
	// blocking alert).
	Critical bool `json:"critical,omitempty"`
}

// Baseline is what the checks found before the first change, by check
// and key.
type Baseline map[string]string

func baselineKey(check, key string) string { return check + "\x00" + key }

// Has says whether a check's finding was there before the run.
func (b Baseline) Has(check, key string) bool {
	_, ok := b[baselineKey(check, key)]
	return ok
}

// BaselineOf is every finding of a result, failing or known.
func BaselineOf(res HealthResult) Baseline {
	b := Baseline{}
	for _, c := range res.Checks {
		for _, f := range c.Findings {
			b[baselineKey(c.Name, f.Key)] = c.Name + ": " + f.Text
		}
	}
	return b
}

// Texts lists the baseline's findings for people, sorted.
func (b Baseline) Texts() []string {
	return slices.Sorted(maps.Values(b))
}

// Memory is what one gate's earlier runs saw, safe for concurrent use.
type Memory struct {
	mu sync.Mutex
	m  map[string]int64
}

// NewMemory is an empty memory.
func NewMemory() *Memory { return &Memory{m: map[string]int64{}} }

// Swap stores v under key and returns what was there, and whether it was.
func (m *Memory) Swap(key string, v int64) (prev int64, seen bool) {
	if m == nil {
		return 0, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	prev, seen = m.m[key]
	m.m[key] = v
	return prev, seen
}

// HealthResult is the outcome of one run of every check.
type HealthResult struct {
	Checks []CheckResult `json:"checks"`
}

// CheckResult is one named check.
type CheckResult struct {
	Name    string `json:"name"`
	Passed  bool   `json:"passed"`
	Skipped bool   `json:"skipped"`
	// SkipReason says why a skipped check did not apply.
	SkipReason string `json:"skipReason,omitempty"`
	Attempts   int    `json:"attempts"`
	// Diagnostics say what is wrong and where, at most ten lines.
	Diagnostics []string `json:"diagnostics,omitempty"`
	// Known are what was already wrong before the run: listed, failing nothing.
	Known []string `json:"known,omitempty"`
	// FailedNodes are the nodes the failing findings are about.
	FailedNodes []string `json:"failedNodes,omitempty"`
	// Findings are all the check found, failing or known (for the baseline).
	Findings []Finding `json:"-"`
	// Notes are worth knowing but fail nothing (a suspended Flux object).
	Notes    []string      `json:"notes,omitempty"`
	Duration time.Duration `json:"-"`
	// DurationMs mirrors Duration for JSON.
	DurationMs int64 `json:"durationMs"`
}

// Passed reports whether no check failed.
func (r HealthResult) Passed() bool { return len(r.Failed()) == 0 }

// Summary is the one-line verdict, e.g.
// "✅ Node k8s-work-1: 7/7 health checks passed" or
// "❌ Node k8s-work-1: 5/7 health checks passed (failed: Storage Health, DNS Resolution)".
func (r HealthResult) Summary(node string) string {
	ran, passed, skipped := 0, 0, 0
	for _, c := range r.Checks {
		switch {
		case c.Skipped:
			skipped++
		case c.Passed:
			ran++
			passed++
		default:
			ran++
		}
	}
	who := "Cluster"
	if node != "" {
		who = "Node " + node
	}
	mark := "✅"
	if !r.Passed() {
		mark = "❌"
	}
	s := fmt.Sprintf("%s %s: %d/%d health checks passed", mark, who, passed, ran)
	if f := r.Failed(); len(f) > 0 {
		s += " (failed: " + strings.Join(f, ", ")
		if nodes := r.FailedNodes(); node == "" && len(nodes) > 0 {
			s += " on " + strings.Join(nodes, ", ")
		}
		s += ")"
	}
	if skipped > 0 {
		s += fmt.Sprintf(", %d skipped", skipped)
	}
	if known := r.Known(); len(known) > 0 {
		s += fmt.Sprintf(", %d known before the run", len(known))
	}
	return s
}

// FailedNodes names the nodes failing findings are about, sorted.
func (r HealthResult) FailedNodes() []string {
	set := map[string]bool{}
	for _, c := range r.Checks {
		for _, n := range c.FailedNodes {
			set[n] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// Known lists what was already wrong before the run, by check.
func (r HealthResult) Known() []string {
	var out []string
	for _, c := range r.Checks {
		for _, k := range c.Known {
			out = append(out, c.Name+": "+k)
		}
	}
	return out
}

// Failed names the checks that failed.
func (r HealthResult) Failed() []string {
	var out []string
	for _, c := range r.Checks {
		if !c.Passed && !c.Skipped {
			out = append(out, c.Name)
		}
	}
	return out
}

// Journal records each transition before the engine acts on it.
type Journal interface {
	Record(ctx context.Context, e Entry) error
}

// Snapshot is where an etcd snapshot was written, and where it was
// uploaded (empty when it was not), for the report.
type Snapshot struct {
	Path string
	URL  string
}

// Entry is one journal record.
type Entry struct {
	Time   time.Time `json:"time"`
	RunID  string    `json:"run"`
	Node   string    `json:"node,omitempty"`
	Step   Step      `json:"step"`
	Status Status    `json:"status"`
	Detail string    `json:"detail,omitempty"`
	// Header is set on a run's first entry.
	Header *RunHeader `json:"header,omitempty"`
	// Prev and Head chain the journal: the hash of the run's previous line
	// and of its first line, as written. The journal sets them; an edited,
	// removed or inserted line breaks the chain and is refused on read.
	Prev string `json:"prev,omitempty"`
	Head string `json:"head,omitempty"`
}

// ControlPlaneGuard keeps etcd safe around each control-plane node.
type ControlPlaneGuard interface {
	// BeforeNode runs before the node is touched (snapshot, leadership)
	// and says where the etcd snapshot is.
	BeforeNode(ctx context.Context, n plan.Node) (Snapshot, error)
	// BeforeDestroy takes the node's etcd member out before its VM goes.
	BeforeDestroy(ctx context.Context, n plan.Node) error
	// AfterNode waits until etcd is whole and healthy again.
	AfterNode(ctx context.Context, n plan.Node) error
}

// Preflight is a check that must pass before anything changes. A failure
// blocks the run (exit 4).
type Preflight interface {
	Name() string
	Check(ctx context.Context, p plan.Plan) error
}

// Sink receives the engine's events; the CLI decides what to show. Nodes of
// one batch run in parallel, so Event may be called concurrently.
type Sink interface {
	Event(e Event)
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(Event)

// Event calls f.
func (f SinkFunc) Event(e Event) { f(e) }

// VersionReader tells which versions a node runs, as the cluster reports
// them: the Node object, and the node's Talos API for control-plane nodes
// and, when inPlace (pets), for every node.
type VersionReader interface {
	NodeVersions(ctx context.Context, n plan.Node, inPlace bool) (Observed, error)
}

// Observed is what a node was seen to run, and who said so.
type Observed struct {
	Versions version.Pair
	// Source names where the versions came from ("Node object", "Talos API").
	Source string
}

// LinkReader reads a node's physical network links (the Talos API), so
// the identity a node had before its change includes its network.
type LinkReader interface {
	Links(ctx context.Context, n plan.Node) ([]Link, error)
}

// RunnerPeers makes way for a hand-off's continuation: the other runner
// pods of drover's runner scale set on its node (idle runners) leave, so
// that the continuation's job cannot be picked up on the cordoned node. It
// names the pods it evicted.
type RunnerPeers interface {
	EvictPeers(ctx context.Context, node string) ([]string, error)
}

// VMChecker is implemented by replacers that can tell whether a node's VM
// exists (the Terraform state holds it); resume uses it.
type VMChecker interface {
	VMExists(ctx context.Context, n plan.Node) (bool, error)
}

// MemberChecker is implemented by guards that can tell whether a
// control-plane node is an etcd member; resume uses it.
type MemberChecker interface {
	IsMember(ctx context.Context, n plan.Node) (bool, error)
}
