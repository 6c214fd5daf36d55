// Package lab is drover's embedded simulated cluster: a client-go fake
// clientset driven by simulated kubelets, a simulated Proxmox hypervisor and
// simulated Talos nodes, all on a virtual clock, with faults injected per
// node. It is a product feature: operators rehearse upgrades on it, and the
// engine runs the same code against it as against a real cluster.
//
// What is simulated, and so faked: the VMs, the kubelets (node status, pod
// start-up) and the controllers (ReplicaSet, DaemonSet, pod GC, scheduler,
// disruption). Everything drover reads or writes goes through the
// Kubernetes API of the fake clientset.
package lab

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/version"
)

// Fault is a kind of failure injected into one node.
type Fault string

// The faults the lab can inject.
const (
	// FaultNeverReady: at the new version the node never becomes Ready.
	FaultNeverReady Fault = "never-ready"
	// FaultHealthFail: at the new version a pod on the node crash-loops.
	FaultHealthFail Fault = "health-fail"
	// FaultDrainBlocked: a single-replica app with a PDB sits on the node.
	FaultDrainBlocked Fault = "drain-blocked"
	// FaultReplaceFails: creating the VM (cattle) or the upgrade (pets) fails.
	FaultReplaceFails Fault = "replace-fails"
	// FaultRollbackFails: health-fail, and the rollback fails too.
	FaultRollbackFails Fault = "rollback-fails"
	// FaultDNSDown: pods on the node cannot resolve or reach services.
	FaultDNSDown Fault = "dns-down"
	// FaultCephWarn: Ceph goes HEALTH_WARN with an OSD on the node down.
	FaultCephWarn Fault = "ceph-warn"
	// FaultFluxFailed: a HelmRelease fails to reconcile.
	FaultFluxFailed Fault = "flux-failed"
	// FaultGPULost: the node comes back without its GPUs.
	FaultGPULost Fault = "gpu-lost"
	// FaultCrashloop: a pod on the node crash-loops (node-exporter).
	FaultCrashloop Fault = "crashloop"
	// FaultFlapping: at the new version a pod on the node (node-exporter)
	// restarts every few seconds yet is caught Running at every poll.
	FaultFlapping Fault = "flapping"
	// FaultFailOnce: at the new version the node's CNI pod crash-loops for
	// its first 20 seconds, then holds: the gate fails once, then passes.
	FaultFailOnce Fault = "fail-once"
	// FaultPendingBefore: a pod (apps/backlog) is Pending from before the
	// run and stays so (the node named is not used).
	FaultPendingBefore Fault = "pending-before"
	// FaultAlertFires: at the new version an alert fires for the node.
	FaultAlertFires Fault = "alert-fires"
	// FaultLinkLost: at the new version the node's third NIC (eth2, the
	// DMZ VLAN) is gone.
	FaultLinkLost Fault = "link-lost"
	// FaultLateFail: at the new version the node is uncordoned, a
	// workload with a budget lands on it (apps/reports, which prefers new
	// nodes), and then its health gate fails: its rollback must drain it.
	FaultLateFail Fault = "late-fail"
	// FaultLateDegrade: at the new version the node passes its gate, and
	// two minutes after it came back a pod on it (node-exporter) begins
	// restarting, as FaultFlapping: its soak must catch it.
	FaultLateDegrade Fault = "late-degrade"
	// FaultWrongImage: the node's image information is wrong. In place
	// (pets): its machine configuration's install image names another
	// schematic than the one it booted, so its own image would change its
	// schematic (refused before any change). Replaced (cattle): its VM is
	// cloned from another schematic's template and boots without its
	// extensions (the gate fails, it is rolled back).
	FaultWrongImage Fault = "wrong-image"
	// FaultImageMissing: the registry lacks the node's target image.
	FaultImageMissing Fault = "image-missing"
	// FaultSlowShutdown: a database (apps/postgres-NODE) on the node takes
	// its whole 10-minute termination grace period to stop, longer than
	// the default drain timeout.
	FaultSlowShutdown Fault = "slow-shutdown"
	// FaultVolumeStuck: an app with a Ceph RBD volume (apps/recorder-NODE)
	// runs on the node, and its volume never detaches after the drain.
	FaultVolumeStuck Fault = "volume-stuck"
	// FaultBusy: a transcode (media/transcode-NODE, annotated
	// drover.dev/do-not-disrupt) runs on the node and ends two hours after
	// the lab started.
	FaultBusy Fault = "busy"
	// FaultNoRoom: a GPU app (media/plex-NODE) runs on the node, and every
	// other GPU of the cluster is taken (ai/gpu-hog-OTHER): draining the
	// node would leave it Pending.
	FaultNoRoom Fault = "no-room"
	// FaultHookFails: the node's beforeNode hook Job fails (the lab adds
	// a stand-in beforeNode hook when none is configured).
	FaultHookFails Fault = "hook-fails"
)

// Faults lists every fault kind.
var Faults = []Fault{FaultNeverReady, FaultHealthFail, FaultDrainBlocked, FaultReplaceFails, FaultRollbackFails,
	FaultDNSDown, FaultCephWarn, FaultFluxFailed, FaultGPULost, FaultCrashloop, FaultLateFail,
	FaultFlapping, FaultFailOnce, FaultPendingBefore, FaultAlertFires, FaultLinkLost, FaultLateDegrade, FaultWrongImage, FaultImageMissing, FaultSlowShutdown, FaultVolumeStuck, FaultBusy, FaultNoRoom, FaultHookFails}

// ParseFault parses NODE=KIND.
func ParseFault(s string) (node string, f Fault, err error) {
	node, kind, ok := strings.Cut(s, "=")
	if !ok || node == "" || kind == "" {
		return "", "", fmt.Errorf("lab fault %q: want NODE=KIND", s)
	}
	for _, k := range Faults {
		if string(k) == kind {
			return node, k, nil
		}
	}
	names := make([]string, len(Faults))
	for i, k := range Faults {
		names[i] = string(k)
	}
	return "", "", fmt.Errorf("lab fault %q: unknown kind %q; want one of %s", s, kind, strings.Join(names, ", "))
}

// Durations are how long the simulated steps take.
type Durations struct {
	Destroy        time.Duration // stop and delete a VM
	Clone          time.Duration // clone a VM from its template
	Boot           time.Duration // boot Talos
	Join           time.Duration // kubelet registers and turns Ready
	Template       time.Duration // build the templates of a new version
	ImagePull      time.Duration // pull the installer image (pets)
	Install        time.Duration // write the new image (pets)
	Reboot         time.Duration // reboot into it (pets)
	PodStart       time.Duration // a scheduled pod turns Ready
	KubeletRestart time.Duration // a kubelet restarts at a new Kubernetes version
	ControlLoop    time.Duration // how often the simulated controllers run
	FailureDelay   time.Duration // how long a failing step runs before it fails
	Terraform      time.Duration // one Terraform run's own cost (init, refresh, lock), whatever its targets
}

// DefaultDurations are realistic for the prox-ops cluster.
func DefaultDurations() Durations {
	return Durations{
		Destroy:        20 * time.Second,
		Clone:          75 * time.Second,
		Boot:           75 * time.Second,
		Join:           60 * time.Second,
		Template:       10 * time.Minute,
		ImagePull:      30 * time.Second,
		Install:        30 * time.Second,
		Reboot:         60 * time.Second,
		PodStart:       15 * time.Second,
		KubeletRestart: 40 * time.Second,
		ControlLoop:    10 * time.Second,
		FailureDelay:   30 * time.Second,
		Terraform:      15 * time.Second,
	}
}

// Options shape a lab.
type Options struct {
	Config     config.Config
	Talos      version.Version
	Kubernetes version.Version
	Faults     map[string]Fault
	Start      time.Time
	Durations  Durations
	// Log, when set, is told what the simulated infrastructure does.
	Log func(node, msg string)
	// State, when set, is a saved lab (--lab-state) to continue from.
	State *State
	// PodsPerNode, when set, adds replicated services until each worker
	// runs about that many pods (a generated lab's default is 30);
	// otherwise the lab runs its standard workloads only.
	PodsPerNode int
	// FaultsNow makes the health faults (dns-down, ceph-warn, flux-failed,
	// gpu-lost, crashloop) show from the start instead of after the node's
	// upgrade: `drover health --lab` uses it.
	FaultsNow bool
	// RunnerNode is where drover's runner pod runs: a node of the
	// inventory, RunnerNone (drover runs outside the cluster), or "" for
	// where the lab's scheduler puts it (a worker, as ARC's would be).
	RunnerNode string
}

// DefaultTalos and DefaultKubernetes are the lab's starting versions.
var (
	DefaultTalos      = version.MustParse("v1.11.3")
	DefaultKubernetes = version.MustParse("v1.34.1")
)

// Stats are what the lab observed during a run.
type Stats struct {
	// PDBViolations counts the times a PodDisruptionBudget went below its
	// desired healthy count.
	PDBViolations int `json:"pdbViolations"`
	// MaxControlPlaneDown is the most control-plane nodes down at once.
	MaxControlPlaneDown int `json:"maxControlPlaneDown"`
	// Evictions counts accepted and refused (429) evictions.
	Evictions        int `json:"evictions"`
	EvictionsRefused int `json:"evictionsRefused"`
	// EtcdLeaderLost counts control-plane changes that took the etcd leader
	// down without handing leadership over first.
	EtcdLeaderLost int `json:"etcdLeaderLost"`
}

type vm struct {
	node    config.Node
	running bool
	at      version.Pair
	initial version.Pair
	// image is the installer image the node was installed from (its
	// schematic decides its extensions).
	image string
	fault Fault
	// booted is when its kubelet last registered (for fail-once).
	booted time.Time
}

// Lab is a running simulated cluster.
type Lab struct {
	Clock  *clock.Virtual
	Client *fake.Clientset
	// Dynamic serves the custom resources (CephCluster, Flux objects).
	Dynamic *dynamicfake.FakeDynamicClient

	opts     Options
	mu       sync.Mutex
	vms      map[string]*vm
	order    []string
	apps     []*app
	seq      int
	stats    Stats
	violated map[string]bool
	// satisfied are the budgets that have had their healthy pods at least
	// once: only they can be violated.
	satisfied map[string]bool
	// appeared are the late apps that have appeared.
	appeared map[string]bool
	stop     func()
	stopped  bool
	tmpl     map[string]bool
	etcd     etcdState
	// snapshotDir holds the lab's etcd snapshots; Close removes it.
	snapshotDir string

	store    podStore
	appIndex map[string]*app // namespace/name
	// counted are the replicated apps the controllers have counted since
	// their pods last changed.
	counted map[*app]bool
	nodeIdx map[string]int // node -> its pod CIDR's index
	// controlPlane are the control-plane nodes, in order.
	controlPlane []string
	// synced is each node's readiness when its pods were last synced.
	synced map[string]bool
	// probes are the probe pods drover created (namespace/name).
	probes map[string]bool
	// saved are a restored lab's pods, put back at seeding.
	saved     []PodState
	nodeCache []*corev1.Node
	nodeMap   map[string]*corev1.Node
	// staleNodes are the Nodes written since the cache last read them.
	// Every Node write, the API's included, holds l.mu.
	staleNodes map[string]bool
	// runner is drover's runner pod's app (nil: drover runs outside).
	runner *app
	// silenced are the silences drover held (health.alertmanager.silences).
	silenced []Silence
}

var (
	nodesGVR = schema.GroupVersionResource{Version: "v1", Resource: "nodes"}
	podsGVR  = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	pdbsGVR  = schema.GroupVersionResource{Group: "policy", Version: "v1", Resource: "poddisruptionbudgets"}
	podsGVK  = schema.GroupVersionKind{Version: "v1", Kind: "Pod"}
)

// New builds a lab: every node up at the starting versions, the workloads
// placed and Running. The virtual clock belongs to the calling goroutine.
func New(opts Options) (*Lab, error) {
	if opts.Talos.IsZero() {
		opts.Talos = DefaultTalos
	}
	if opts.Kubernetes.IsZero() {
		opts.Kubernetes = DefaultKubernetes
	}
	if opts.Start.IsZero() {
		opts.Start = time.Date(2026, 1, 1, 2, 0, 0, 0, time.UTC)
	}
	if opts.State != nil {
		opts.Start = opts.State.Clock
	}
	if opts.Durations == (Durations{}) {
		opts.Durations = DefaultDurations()
	}
	if len(opts.Config.Nodes) == 0 {
		opts.Config = DefaultConfig()
	}
	l := &Lab{
		Clock: clock.NewVirtual(opts.Start),
		// NewSimpleClientset, not NewClientset: the lab needs no server-side
		// apply, and the field-managed tracker builds a REST mapper on every
		// write, which took a third of a lab run.
		Client:    fake.NewSimpleClientset(),
		opts:      opts,
		vms:       map[string]*vm{},
		violated:  map[string]bool{},
		appeared:  map[string]bool{},
		satisfied: map[string]bool{},
		tmpl:      map[string]bool{opts.Talos.String(): true},
		store:     newPodStore(),
		appIndex:  map[string]*app{},
		counted:   map[*app]bool{},
		nodeIdx:   map[string]int{},
		synced:    map[string]bool{},
		probes:    map[string]bool{},
	}
	at := version.Pair{Talos: opts.Talos, Kubernetes: opts.Kubernetes}
	for _, n := range opts.Config.Nodes {
		l.vms[n.Name] = &vm{node: n, running: true, at: at, initial: at, image: l.initialImage(n, at.Talos)}
		l.order = append(l.order, n.Name)
		l.nodeIdx[n.Name] = len(l.order)
		if n.IsControlPlane() {
			l.controlPlane = append(l.controlPlane, n.Name)
		}
	}
	if r := opts.RunnerNode; r != "" && r != RunnerNone && l.vms[r] == nil {
		return nil, fmt.Errorf("lab runner node %q: no such node in the inventory (or %q for a run from outside the cluster)", r, RunnerNone)
	}
	for name, f := range opts.Faults {
		v, ok := l.vms[name]
		if !ok {
			return nil, fmt.Errorf("lab fault for %q: no such node in the inventory", name)
		}
		v.fault = f
	}
	AddStandInHook(&l.opts.Config, opts.Faults)
	dir, err := os.MkdirTemp("", "drover-lab-etcd-")
	if err != nil {
		return nil, err
	}
	l.snapshotDir = dir
	l.installAPI()
	l.installJobs()
	l.installProbes()
	l.newDynamic()
	l.seedEtcd()
	if opts.State != nil {
		if err := l.restore(opts.State); err != nil {
			return nil, err
		}
	}
	if err := l.seed(); err != nil {
		return nil, err
	}
	if err := l.seedResources(); err != nil {
		return nil, err
	}
	l.stop = clock.Every(l.Clock, opts.Durations.ControlLoop, l.controlLoop)
	return l, nil
}

// Close stops the simulated controllers.
func (l *Lab) Close() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
	l.stop()
	_ = os.RemoveAll(l.snapshotDir)
}

// Stats returns what the lab observed so far.
func (l *Lab) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats
}

// Versions returns the versions a node's VM runs, and whether it exists.
func (l *Lab) Versions(node string) (version.Pair, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	v, ok := l.vms[node]
	if !ok || !v.running {
		return version.Pair{}, false
	}
	return v.at, true
}

// Config is the inventory the lab was built from.
func (l *Lab) Config() config.Config { return l.opts.Config }

func (l *Lab) log(node, format string, args ...any) {
	if l.opts.Log != nil {
		l.opts.Log(node, fmt.Sprintf(format, args...))
	}
}

func (l *Lab) now() metav1.Time { return metav1.NewTime(l.Clock.Now()) }

func (l *Lab) newUID() types.UID { return uuid.NewUUID() }

// nodeObject builds the Node a kubelet at these versions registers.
func (l *Lab) nodeObject(v *vm, ready bool) *corev1.Node {
	n := v.node
	labels := map[string]string{
		"kubernetes.io/hostname":        n.Name,
		"kubernetes.io/os":              "linux",
		"kubernetes.io/arch":            "amd64",
		"topology.kubernetes.io/zone":   n.ProxmoxHost,
		"drover.prox-ops.io/proxmox-vm": fmt.Sprint(n.VMID),
	}
	var taints []corev1.Taint
	if n.IsControlPlane() {
		labels["node-role.kubernetes.io/control-plane"] = ""
		// A cluster without workers schedules on its control plane, as
		// Talos's allowSchedulingOnControlPlanes does.
		if len(l.opts.Config.ControlPlaneNodes()) < len(l.opts.Config.Nodes) {
			taints = append(taints, corev1.Taint{Key: "node-role.kubernetes.io/control-plane", Effect: corev1.TaintEffectNoSchedule})
		}
	}
	alloc := corev1.ResourceList{
		corev1.ResourceCPU:    mustQty("8"),
		corev1.ResourceMemory: mustQty("32Gi"),
		corev1.ResourcePods:   mustQty("110"),
	}
	if n.GPUs > 0 {
		labels["nvidia.com/gpu.present"] = "true"
		alloc[gpu] = mustQty(fmt.Sprint(n.GPUs))
		if l.nodeFaultActive(n.Name, FaultGPULost) || !l.hasNVIDIA(v) {
			alloc[gpu] = mustQty("0") // the driver did not load
		}
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, UID: l.newUID(), Labels: labels, CreationTimestamp: l.now()},
		Spec:       corev1.NodeSpec{Taints: taints},
		Status: corev1.NodeStatus{
			Capacity:    alloc.DeepCopy(),
			Allocatable: alloc,
			Conditions:  []corev1.NodeCondition{readyCondition(ready, l.now())},
			Addresses:   []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: n.IP}, {Type: corev1.NodeHostName, Address: n.Name}},
			NodeInfo: corev1.NodeSystemInfo{
				BootID:                  string(l.newUID()),
				OSImage:                 fmt.Sprintf("Talos (%s)", v.at.Talos),
				KubeletVersion:          v.at.Kubernetes.String(),
				KernelVersion:           "6.12.0-talos",
				ContainerRuntimeVersion: "containerd://2.1.0",
				OperatingSystem:         "linux",
				Architecture:            "amd64",
			},
		},
	}
}

func readyCondition(ready bool, at metav1.Time) corev1.NodeCondition {
	c := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status", LastHeartbeatTime: at, LastTransitionTime: at}
	if !ready {
		c.Status, c.Reason, c.Message = corev1.ConditionFalse, "KubeletNotReady", "container runtime network not ready: cni plugin not initialized"
	}
	return c
}

func (l *Lab) node(name string) *corev1.Node {
	obj, err := l.Client.Tracker().Get(nodesGVR, "", name)
	if err != nil {
		return nil
	}
	return obj.(*corev1.Node)
}
