// Package config reads and validates drover.yaml.
package config

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
	"k8s.io/apimachinery/pkg/labels"
)

// Role is a node's role in the cluster.
type Role string

// The roles a node can have.
const (
	RoleControlPlane Role = "controlplane"
	RoleWorker       Role = "worker"
)

// Config is a validated drover.yaml.
type Config struct {
	Cluster Cluster `yaml:"cluster" json:"cluster"`
	// Nodes are the cluster's VMs, control plane and workers.
	Nodes         []Node        `yaml:"nodes" json:"nodes"`
	Versions      VersionSource `yaml:"versions" json:"versions"`
	Talos         Talos         `yaml:"talos" json:"talos"`
	Rollout       Rollout       `yaml:"rollout" json:"rollout"`
	Approval      Approval      `yaml:"approval" json:"approval"`
	Notifications Notifications `yaml:"notifications" json:"notifications"`
	Terraform     Terraform     `yaml:"terraform" json:"terraform"`
	Health        Health        `yaml:"health" json:"health"`
	// MaintenanceWindow limits when a run may start and go on.
	MaintenanceWindow MaintenanceWindow `yaml:"maintenanceWindow" json:"maintenanceWindow"`
	Secrets           Secrets           `yaml:"secrets" json:"secrets"`
	Metrics           Metrics           `yaml:"metrics" json:"metrics"`
	KubeClient        KubeClient        `yaml:"kubeClient" json:"kubeClient"`
	Journal           Journal           `yaml:"journal" json:"journal"`
	Hooks             Hooks             `yaml:"hooks" json:"hooks"`
}

// BlockingSelectors are rollout.blockingPods parsed (Validate refuses
// one that does not parse).
func (r Rollout) BlockingSelectors() []labels.Selector {
	var out []labels.Selector
	for _, s := range r.BlockingPods {
		if sel, err := labels.Parse(s); err == nil {
			out = append(out, sel)
		}
	}
	return out
}

// Journal shapes the journal kept in the cluster (--journal configmap).
type Journal struct {
	// KeepRuns is how many runs the cluster journal keeps (0: 20); older
	// runs are deleted whole when a run starts, never the running one.
	KeepRuns int `yaml:"keepRuns" json:"keepRuns"`
}

// KubeClient shapes drover's Kubernetes API client; the flags --kube-qps,
// --kube-burst and --request-timeout win over it.
type KubeClient struct {
	// QPS and Burst limit the requests (0: kubectl's 50 and 300).
	QPS float32 `yaml:"qps" json:"qps"`
	// Burst is the burst of requests over QPS (0: 300).
	Burst int `yaml:"burst" json:"burst"`
	// RequestTimeout bounds one request, watches excepted (0: 30s).
	RequestTimeout Duration `yaml:"requestTimeout" json:"requestTimeout"`
}

// Metrics configures where a run's metrics go.
type Metrics struct {
	// Pushgateway is a Prometheus Pushgateway's URL; empty: no metrics.
	Pushgateway string `yaml:"pushgateway" json:"pushgateway"`
	// PushgatewayEnv names an environment variable that holds the
	// Pushgateway's URL instead, for a URL with credentials in it
	// (https://user:password@...): drover.yaml lives in git.
	PushgatewayEnv string `yaml:"pushgatewayEnv" json:"pushgatewayEnv"`
}

// Terraform configures cattle replacement through Terraform or OpenTofu.
type Terraform struct {
	// Binary is the terraform or tofu executable (a path or a name on PATH);
	// empty means tofu, then terraform, on PATH.
	Binary string `yaml:"binary" json:"binary"`
	// WorkingDir is the root module, relative to the repository root.
	WorkingDir string `yaml:"workingDir" json:"workingDir"`
	// NodeAddress is the module address of one node; {name} is the node name.
	NodeAddress string `yaml:"nodeAddress" json:"nodeAddress"`
	// TemplatesAddress is the address of the VM templates.
	TemplatesAddress string `yaml:"templatesAddress" json:"templatesAddress"`
	// VMResourceType is the resource type of a node's VM.
	VMResourceType string `yaml:"vmResourceType" json:"vmResourceType"`
	// BackendConfig is passed to init as -backend-config key=value. Values
	// are not secrets: credentials come from the environment (AWS_*, TF_VAR_*).
	BackendConfig map[string]string `yaml:"backendConfig" json:"backendConfig"`
	// LockTimeout is how long to wait for the state lock.
	LockTimeout Duration `yaml:"lockTimeout" json:"lockTimeout"`
	// WaitForLock waits up to LockTimeout for a lock held by someone else;
	// false refuses the run at once (exit 4), naming the holder.
	WaitForLock bool `yaml:"waitForLock" json:"waitForLock"`
	// Templates says how the root module keeps its VM templates: keep (one
	// template per version, additive; a templates apply that would destroy
	// one is refused) or rebuild (fixed VM ids, replaced in place: a
	// rollback re-applies them at the old version first).
	Templates string `yaml:"templates" json:"templates"`
}

// The ways templates are kept (terraform.templates).
const (
	TemplatesKeep    = "keep"
	TemplatesRebuild = "rebuild"
)

// Health configures the health gate.
type Health struct {
	// CriticalNamespaces must have every pod Running and Ready (or Succeeded).
	CriticalNamespaces []string `yaml:"criticalNamespaces" json:"criticalNamespaces"`
	// PendingGrace is how long a pod may be Pending anywhere.
	PendingGrace Duration `yaml:"pendingGrace" json:"pendingGrace"`
	// CheckTimeout bounds one run of one check.
	CheckTimeout Duration `yaml:"checkTimeout" json:"checkTimeout"`
	// CephCheckInterval is Rook's health check interval; status older than
	// twice it is stale.
	CephCheckInterval Duration `yaml:"cephCheckInterval" json:"cephCheckInterval"`
	// CephAcceptWarn lists HEALTH_WARN reasons (status.ceph.details keys,
	// such as MON_CLOCK_SKEW) that do not fail the gate.
	CephAcceptWarn []string `yaml:"cephAcceptWarn" json:"cephAcceptWarn"`
	// ProbeImage runs the DNS and network probe pods.
	ProbeImage string `yaml:"probeImage" json:"probeImage"`
	// ProbeNamespace is drover's namespace, where probe pods run.
	ProbeNamespace string `yaml:"probeNamespace" json:"probeNamespace"`
	// Custom are extra checks: a CEL expression over each selected object.
	Custom []CustomCheck `yaml:"custom" json:"custom"`
	// Disable names built-in checks not to run (reported as skipped).
	Disable []string `yaml:"disable" json:"disable"`
	// IdentityIgnore are the label and annotation keys (a trailing * for a
	// prefix), and links as link/NAME, that may change across an upgrade
	// without failing Node Readiness; empty means drover's defaults.
	IdentityIgnore []string `yaml:"identityIgnore" json:"identityIgnore"`
	// Alertmanager, when its URL is set, makes alerts part of the gate.
	Alertmanager Alertmanager `yaml:"alertmanager" json:"alertmanager"`
	// BlockingAlerts are matchers (label=value, label!=value, label=~re,
	// label!~re; all must hold): an alert firing before the run that
	// matches them blocks it. Other alerts firing then are only shown.
	BlockingAlerts []string `yaml:"blockingAlerts" json:"blockingAlerts"`
}

// Alertmanager is where the gate reads the alerts that fire.
type Alertmanager struct {
	// URL of Alertmanager's API, e.g. http://alertmanager.monitoring:9093.
	URL string `yaml:"url" json:"url"`
	// URLEnv names an environment variable that holds the URL instead, for
	// a URL with credentials in it.
	URLEnv string `yaml:"urlEnv" json:"urlEnv"`
	// Select are matchers an alert must meet to count (empty: every alert).
	Select []string `yaml:"select" json:"select"`
	// Ignore are matchers of alerts that never count (e.g. alertname=Watchdog).
	Ignore []string `yaml:"ignore" json:"ignore"`
	// Silences are the matchers of the silence drover holds for each node
	// while it changes, from before its cordon until it passed its gate or
	// was rolled back; {node} is the node's name (e.g. instance=~"{node}.*").
	// Empty: no silences. The gate still judges the alerts they silence.
	Silences []string `yaml:"silences" json:"silences"`
	// SilenceFor is how long a silence lasts unless drover expires it
	// first (a run that dies leaves none for longer).
	SilenceFor Duration `yaml:"silenceFor" json:"silenceFor"`
}

// Hooks are the operator's Kubernetes Jobs around a run and each node
// (Ceph noout, pausing backups). Each runs in drover's namespace and must
// finish within its timeout: a failing beforeRun or beforeNode hook blocks
// the run (exit 4, the node untouched), a failing afterNode hook fails the
// node's gate (rolled back), afterRun runs when the run ends, whatever its
// result, and is reported.
type Hooks struct {
	// BeforeRun runs after the preflights, before the first change.
	BeforeRun *Hook `yaml:"beforeRun" json:"beforeRun,omitempty"`
	// BeforeNode runs before each node's etcd guard and cordon.
	BeforeNode *Hook `yaml:"beforeNode" json:"beforeNode,omitempty"`
	// AfterNode runs after each node passed its gate; its failure fails the gate.
	AfterNode *Hook `yaml:"afterNode" json:"afterNode,omitempty"`
	// AfterRun runs when the run ends, whatever its result.
	AfterRun *Hook `yaml:"afterRun" json:"afterRun,omitempty"`
}

// Hook is one Job: its container's image and command ({node} is the
// node's name), told DROVER_NODE, DROVER_RUN_ID, DROVER_STRATEGY,
// DROVER_FROM_TALOS, DROVER_TO_TALOS, DROVER_FROM_KUBERNETES,
// DROVER_TO_KUBERNETES (and DROVER_RESULT after the run) as environment.
type Hook struct {
	// Image is the Job's container image.
	Image string `yaml:"image" json:"image"`
	// Command is the container's command ({node} is the node's name); empty:
	// the image's entrypoint.
	Command []string `yaml:"command" json:"command"`
	// ServiceAccountName is the Job's ServiceAccount (default: the
	// namespace's default).
	ServiceAccountName string `yaml:"serviceAccountName" json:"serviceAccountName,omitempty"`
	// NodeSelector limits the nodes the Job's pod may run on.
	NodeSelector map[string]string `yaml:"nodeSelector" json:"nodeSelector,omitempty"`
	// Timeout bounds the Job (default 10m).
	Timeout Duration `yaml:"timeout" json:"timeout"`
}

// Points are the configured hooks by point name (beforeRun ...).
func (h Hooks) Points() map[string]*Hook {
	out := map[string]*Hook{}
	for name, hk := range map[string]*Hook{"beforeRun": h.BeforeRun, "beforeNode": h.BeforeNode, "afterNode": h.AfterNode, "afterRun": h.AfterRun} {
		if hk != nil {
			out[name] = hk
		}
	}
	return out
}

// BuiltinChecks names the built-in health checks.
var BuiltinChecks = []string{"Node Readiness", "Pod Health", "Storage Health", "Flux Reconciliation", "DNS Resolution", "Network Connectivity", "Scheduling", "GPU Availability", "Alerts"}

// CustomCheck is a health check written as data.
type CustomCheck struct {
	// Name names the check in reports.
	Name string `yaml:"name" json:"name"`
	// APIVersion and Kind are the objects' type (e.g. ceph.rook.io/v1, CephCluster).
	APIVersion string `yaml:"apiVersion" json:"apiVersion"`
	// Kind is the objects' kind.
	Kind string `yaml:"kind" json:"kind"`
	// Namespace limits the objects to one namespace ("" = all).
	Namespace string `yaml:"namespace" json:"namespace"`
	// Name selects one object; LabelSelector selects by labels.
	ObjectName string `yaml:"objectName" json:"objectName"`
	// LabelSelector selects the objects by labels.
	LabelSelector string `yaml:"labelSelector" json:"labelSelector"`
	// Expression is CEL over the object's fields, e.g.
	// status.ceph.health in ['HEALTH_OK']; it must be true for every object.
	Expression string `yaml:"expression" json:"expression"`
}

// Secrets names the environment variables whose values drover masks.
type Secrets struct {
	// Env names the environment variables whose values are masked everywhere
	// drover writes (default: DefaultSecretEnv).
	Env []string `yaml:"env" json:"env"`
}

// DefaultSecretEnv are masked unless secrets.env says otherwise.
var DefaultSecretEnv = []string{
	"PROXMOX_USERNAME", "PROXMOX_PASSWORD", "TF_VAR_proxmox_password",
	"PROXMOX_VE_USERNAME", "PROXMOX_VE_PASSWORD",
	"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "TALOSCONFIG",
	"DISCORD_WEBHOOK_URL", "GITHUB_APP_PRIVATE_KEY", "GH_APP_PRIVATE_KEY",
}

// URLField is a configured URL, the field that holds it and where its
// credentials belong instead.
type URLField struct{ Field, URL, Advice string }

// CredentialURLs are the URLs in drover.yaml that carry credentials
// (user:password@): they are secrets, and belong in the environment.
func (c *Config) CredentialURLs() []URLField {
	var out []URLField
	for _, f := range []URLField{
		{"metrics.pushgateway", c.Metrics.Pushgateway, "put the URL in an environment variable and name it in metrics.pushgatewayEnv"},
		{"health.alertmanager.url", c.Health.Alertmanager.URL, "put the URL in an environment variable and name it in health.alertmanager.urlEnv"},
		{"talos.etcdSnapshotUpload.endpoint", c.Talos.EtcdSnapshotUpload.Endpoint, "S3 credentials belong in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"},
	} {
		if f.URL != "" && userinfoRE.MatchString(f.URL) {
			out = append(out, f)
		}
	}
	return out
}

// SecretEnvNames are the environment variables drover.yaml names whose
// values are secrets: secrets.env and the variables that hold URLs.
func (c *Config) SecretEnvNames() []string {
	names := slices.Clone(c.Secrets.Env)
	for _, n := range []string{c.Metrics.PushgatewayEnv, c.Health.Alertmanager.URLEnv} {
		if n != "" {
			names = append(names, n)
		}
	}
	return names
}

// URLsFromEnv reads the URLs drover.yaml says are in the environment
// (metrics.pushgatewayEnv, health.alertmanager.urlEnv). An unset variable
// or a value that is no http(s) URL is an error naming the variable, never
// its value.
func (c *Config) URLsFromEnv(file string, getenv func(string) string) error {
	for _, f := range []struct {
		field, name string
		dst         *string
	}{
		{"metrics.pushgatewayEnv", c.Metrics.PushgatewayEnv, &c.Metrics.Pushgateway},
		{"health.alertmanager.urlEnv", c.Health.Alertmanager.URLEnv, &c.Health.Alertmanager.URL},
	} {
		if f.name == "" {
			continue
		}
		v := strings.TrimSpace(getenv(f.name))
		switch {
		case v == "":
			return &Error{File: file, Problems: []Problem{{Field: f.field, Msg: fmt.Sprintf("the environment variable %s is not set", f.name)}}}
		case !httpURL(v):
			return &Error{File: file, Problems: []Problem{{Field: f.field, Msg: fmt.Sprintf("the environment variable %s does not hold an http(s) URL", f.name)}}}
		}
		*f.dst = v
	}
	return nil
}

// Cluster names the cluster.
type Cluster struct {
	// Name names the cluster in messages, reports, metrics and the kit (a DNS label).
	Name string `yaml:"name" json:"name"`
}

// Node is one VM of the inventory.
type Node struct {
	// Name is the node's Kubernetes Node name.
	Name string `yaml:"name" json:"name"`
	// Role is controlplane or worker.
	Role Role `yaml:"role" json:"role"`
	// IP is the node's address: the Talos API is reached there.
	IP string `yaml:"ip" json:"ip"`
	// ProxmoxHost is the Proxmox host its VM runs on: a batch never takes two VMs of one host
	// (completed from the Terraform state when empty).
	ProxmoxHost string `yaml:"proxmoxHost" json:"proxmoxHost"`
	// VMID is its Proxmox VM id (completed from the Terraform state when 0).
	VMID int `yaml:"vmId" json:"vmId"`
	// TerraformAddress overrides the module address template for this node.
	TerraformAddress string `yaml:"terraformAddress,omitempty" json:"terraformAddress,omitempty"`
	// GPUs is how many GPUs the node offers: the gate checks they are back.
	GPUs int `yaml:"gpus,omitempty" json:"gpus,omitempty"`
}

// IsControlPlane reports whether the node runs the control plane.
func (n Node) IsControlPlane() bool { return n.Role == RoleControlPlane }

// VersionSource says where the current and target versions come from.
type VersionSource struct {
	// VariablesFile is the Terraform file that holds the version variables,
	// relative to the repository root.
	VariablesFile string `yaml:"variablesFile" json:"variablesFile"`
	// TalosVariable is the variable of VariablesFile that holds the Talos version.
	TalosVariable string `yaml:"talosVariable" json:"talosVariable"`
	// KubernetesVariable is the variable that holds the Kubernetes version.
	KubernetesVariable string `yaml:"kubernetesVariable" json:"kubernetesVariable"`
	// AllowPrerelease lets a target be a prerelease (v1.12.0-beta.1).
	AllowPrerelease bool `yaml:"allowPrerelease" json:"allowPrerelease"`
}

// Talos holds Talos settings.
type Talos struct {
	// InstallerImage is the installer image with a {version} placeholder, in
	// Image Factory form: factory.talos.dev/<platform>-installer/<schematic>:{version}.
	InstallerImage string `yaml:"installerImage" json:"installerImage"`
	// InstallerImages set the installer image (with {version}) of some
	// nodes, by name or by Node label selector: an intended change of
	// schematic. Other nodes keep their own image, the version changed;
	// talos.installerImage is for nodes whose image cannot be read.
	InstallerImages []NodeImage `yaml:"installerImages,omitempty" json:"installerImages,omitempty"`
	// EtcdSnapshotDir receives an etcd snapshot before each control-plane node.
	EtcdSnapshotDir string `yaml:"etcdSnapshotDir" json:"etcdSnapshotDir"`
	// EtcdSnapshotsKeep is how many snapshots are kept.
	EtcdSnapshotsKeep int `yaml:"etcdSnapshotsKeep" json:"etcdSnapshotsKeep"`
	// EtcdSnapshotRecipients are age public keys (age1...): every snapshot,
	// which holds every Secret of the cluster, is encrypted to them before
	// it is written. The identities (private keys) stay with the operator.
	EtcdSnapshotRecipients []string `yaml:"etcdSnapshotRecipients,omitempty" json:"etcdSnapshotRecipients,omitempty"`
	// EtcdSnapshotUpload, when its URL is set, uploads each snapshot to S3
	// before the node is touched, so it outlives the runner pod.
	EtcdSnapshotUpload SnapshotUpload `yaml:"etcdSnapshotUpload" json:"etcdSnapshotUpload"`
}

// NodeImage is an installer image for the nodes it names or selects.
type NodeImage struct {
	// Nodes names nodes of the inventory.
	Nodes []string `yaml:"nodes,omitempty" json:"nodes,omitempty"`
	// Selector matches Node labels (all of them), e.g.
	// {nvidia.com/gpu.present: "true"}.
	Selector map[string]string `yaml:"selector,omitempty" json:"selector,omitempty"`
	// Image is the installer image with a {version} placeholder.
	Image string `yaml:"image" json:"image"`
}

// Matches says whether the entry is for the node (by name, or by its Node
// labels).
func (i NodeImage) Matches(node string, labels map[string]string) bool {
	for _, n := range i.Nodes {
		if n == node {
			return true
		}
	}
	if len(i.Selector) == 0 {
		return false
	}
	for k, v := range i.Selector {
		if lv, ok := labels[k]; !ok || lv != v {
			return false
		}
	}
	return true
}

// SnapshotUpload is an S3 (or S3-compatible) location for etcd snapshots.
// The credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY
// (and AWS_SESSION_TOKEN, if set): those of the Terraform state bucket.
type SnapshotUpload struct {
	// URL is s3://BUCKET/PREFIX.
	URL string `yaml:"url" json:"url"`
	// Endpoint is the S3 API's URL (default https://s3.REGION.amazonaws.com);
	// a MinIO or Ceph RGW endpoint for an S3-compatible store.
	Endpoint string `yaml:"endpoint" json:"endpoint"`
	// Region is the bucket's region (default us-east-1).
	Region string `yaml:"region" json:"region"`
	// PathStyle addresses the bucket as ENDPOINT/BUCKET rather than
	// BUCKET.ENDPOINT (MinIO and Ceph RGW usually want it).
	PathStyle bool `yaml:"pathStyle" json:"pathStyle"`
}

// Bucket and Prefix split URL (valid after Load).
func (s SnapshotUpload) Bucket() string {
	b, _, _ := strings.Cut(strings.TrimPrefix(s.URL, "s3://"), "/")
	return b
}

// Prefix is URL's key prefix, without leading or trailing slashes.
func (s SnapshotUpload) Prefix() string {
	_, p, _ := strings.Cut(strings.TrimPrefix(s.URL, "s3://"), "/")
	return strings.Trim(p, "/")
}

// Rollout is the rollout policy.
type Rollout struct {
	// MaxParallelWorkers is how many workers a batch takes at most (never two VMs of
	// one Proxmox host).
	MaxParallelWorkers int `yaml:"maxParallelWorkers" json:"maxParallelWorkers"`
	// Canary names the workers --canary N takes first (the first N of them
	// that need the change); empty: the first workers of the plan.
	Canary []string `yaml:"canary" json:"canary,omitempty"`
	// DrainTimeout bounds one drain attempt.
	DrainTimeout Duration `yaml:"drainTimeout" json:"drainTimeout"`
	// DrainAttempts is how many drains of drainTimeout each a node gets
	// before the run halts.
	DrainAttempts int `yaml:"drainAttempts" json:"drainAttempts"`
	// ReadyTimeout bounds the wait for a changed node to be Ready at its new version.
	ReadyTimeout Duration `yaml:"readyTimeout" json:"readyTimeout"`
	// HealthTimeout bounds a node's health gate.
	HealthTimeout Duration `yaml:"healthTimeout" json:"healthTimeout"`
	// HealthAttempts is how many failing gate runs fail the gate.
	HealthAttempts int `yaml:"healthAttempts" json:"healthAttempts"`
	// HealthPasses is how many passing gate runs in a row, healthInterval
	// apart, a node needs.
	HealthPasses int `yaml:"healthPasses" json:"healthPasses"`
	// HealthInterval is the time between two gate runs (and soak checks).
	HealthInterval Duration `yaml:"healthInterval" json:"healthInterval"`
	// ControlPlaneSoak keeps the gate green after a control-plane node this long
	// before the next node.
	ControlPlaneSoak Duration `yaml:"controlPlaneSoak" json:"controlPlaneSoak"`
	// WorkerSoak keeps watching a worker after its gate passed: its gate
	// runs every healthInterval for this long in the background, while
	// the run goes on with the next batch.
	WorkerSoak Duration `yaml:"workerSoak" json:"workerSoak"`
	// MaxSoaking is how many workers may soak at once (0: no limit); the
	// next batch waits for room.
	MaxSoaking int `yaml:"maxSoaking" json:"maxSoaking"`
	// BlockingPods are label selectors (kubectl's syntax) of pods that
	// hold their node like a drover.dev/do-not-disrupt: "true"
	// annotation: a running transcode, a backup Job.
	BlockingPods []string `yaml:"blockingPods" json:"blockingPods"`
	// BlockingTimeout bounds the wait for the pods that hold a node to
	// finish, before the node is touched (0: no wait, held nodes are
	// drained like any other).
	BlockingTimeout Duration `yaml:"blockingTimeout" json:"blockingTimeout"`
	// VolumeDetachTimeout bounds the wait, after a drain, until no
	// VolumeAttachment names the node (0: no wait).
	VolumeDetachTimeout Duration `yaml:"volumeDetachTimeout" json:"volumeDetachTimeout"`
	// DeleteEmptyDirData lets drain evict pods that use emptyDir volumes.
	DeleteEmptyDirData bool `yaml:"deleteEmptyDirData" json:"deleteEmptyDirData"`
	// ForceDrainAfterTimeout deletes the pods a PodDisruptionBudget still
	// protects when the drain timeout passes. Off by default.
	ForceDrainAfterTimeout bool `yaml:"forceDrainAfterTimeout" json:"forceDrainAfterTimeout"`
	// StepDurations are the expected durations used for the plan's ETA.
	StepDurations StepDurations `yaml:"stepDurations" json:"stepDurations"`
}

// StepDurations are the expected durations of the steps, for the ETA.
type StepDurations struct {
	// Drain is a node's drain.
	Drain Duration `yaml:"drain" json:"drain"`
	// Destroy is a VM's destroy (cattle).
	Destroy Duration `yaml:"destroy" json:"destroy"`
	// Create is a VM's create until it is Ready (cattle).
	Create Duration `yaml:"create" json:"create"`
	// Upgrade is an in-place upgrade until the node is Ready (pets).
	Upgrade Duration `yaml:"upgrade" json:"upgrade"`
	// Template is building the new VM templates (cattle).
	Template Duration `yaml:"template" json:"template"`
	// Health is a health gate.
	Health Duration `yaml:"health" json:"health"`
	// Kubernetes is the Kubernetes upgrade of a pets run (talosctl upgrade-k8s).
	Kubernetes Duration `yaml:"kubernetes" json:"kubernetes"`
}

// Approval lists what needs an explicit approval.
type Approval struct {
	// Versions are target versions (Talos or Kubernetes) that always need approval.
	Versions []string `yaml:"versions" json:"versions"`
}

// Notifications configures where run events go.
type Notifications struct {
	Discord Discord `yaml:"discord" json:"discord"`
}

// Discord configures the Discord webhook.
type Discord struct {
	// WebhookEnv names the environment variable that holds the webhook URL.
	WebhookEnv string `yaml:"webhookEnv" json:"webhookEnv"`
}

// Duration is a time.Duration written as "5m" in YAML. A value that does not
// parse is kept and reported by Validate, with its field and line.
type Duration struct {
	time.Duration
	raw  string
	line int
	bad  bool
}

// D returns a Duration of d.
func D(d time.Duration) Duration { return Duration{Duration: d} }

// UnmarshalYAML keeps the raw text; Validate reports a bad one.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	d.raw, d.line = n.Value, n.Line
	v, err := time.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil || n.Kind != yaml.ScalarNode {
		d.bad = true
		return nil
	}
	d.Duration = v
	return nil
}

// MarshalYAML writes the duration as text.
func (d Duration) MarshalYAML() (any, error) { return d.Duration.String(), nil }

// MarshalJSON writes the duration as text.
func (d Duration) MarshalJSON() ([]byte, error) { return []byte(`"` + d.Duration.String() + `"`), nil }

// Defaults returns the policy every field falls back to.
func Defaults() Config {
	return Config{
		Versions: VersionSource{
			VariablesFile:      "terraform/variables.tf",
			TalosVariable:      "talos_version",
			KubernetesVariable: "kubernetes_version",
		},
		Talos: Talos{EtcdSnapshotDir: "etcd-snapshots", EtcdSnapshotsKeep: 3},
		Rollout: Rollout{
			MaxParallelWorkers:  1,
			DrainTimeout:        D(5 * time.Minute),
			DrainAttempts:       3,
			ReadyTimeout:        D(10 * time.Minute),
			HealthTimeout:       D(5 * time.Minute),
			HealthAttempts:      3,
			HealthPasses:        2,
			HealthInterval:      D(30 * time.Second),
			ControlPlaneSoak:    D(5 * time.Minute),
			WorkerSoak:          D(5 * time.Minute),
			DeleteEmptyDirData:  true,
			VolumeDetachTimeout: D(5 * time.Minute),
			BlockingTimeout:     D(time.Hour),
			StepDurations: StepDurations{
				// The reference cluster's, as the lab plays them: pods
				// take their 30s grace, a Terraform run costs 15s, a gate
				// is two passes 30s apart.
				Drain:      D(30 * time.Second),
				Destroy:    D(35 * time.Second),
				Create:     D(225 * time.Second),
				Upgrade:    D(2 * time.Minute),
				Template:   D(10 * time.Minute),
				Health:     D(35 * time.Second),
				Kubernetes: D(10 * time.Minute),
			},
		},
		Notifications: Notifications{Discord: Discord{WebhookEnv: "DISCORD_WEBHOOK_URL"}},
		Terraform: Terraform{
			WorkingDir:       "terraform",
			NodeAddress:      `module.nodes["{name}"]`,
			TemplatesAddress: "module.templates",
			VMResourceType:   "proxmox_virtual_environment_vm",
			LockTimeout:      D(5 * time.Minute),
			Templates:        TemplatesKeep,
		},
		Secrets: Secrets{Env: append([]string(nil), DefaultSecretEnv...)},
		Health: Health{
			CriticalNamespaces: []string{"kube-system", "flux-system", "rook-ceph"},
			PendingGrace:       D(5 * time.Minute),
			CheckTimeout:       D(30 * time.Second),
			CephCheckInterval:  D(60 * time.Second),
			ProbeImage:         "busybox:1.37",
			ProbeNamespace:     "drover",
			Alertmanager:       Alertmanager{SilenceFor: D(2 * time.Hour)},
		},
	}
}

// DescribeMode names what a path that is not a regular file is.
func DescribeMode(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeDevice != 0:
		return "a device"
	case m&os.ModeSymlink != 0:
		return "a symbolic link"
	}
	return m.Type().String()
}

// MaxFileSize bounds a configuration file: drover.yaml is small, and a
// device or a runaway file must not be read into memory.
const MaxFileSize = 1 << 20

// Load reads, defaults and validates a drover.yaml file. Anything but a
// regular file of at most MaxFileSize is refused before it is read.
func Load(path string) (*Config, error) {
	fail := func(msg string) error { return &Error{File: path, Problems: []Problem{{Msg: msg}}} }
	// Look before opening: opening a FIFO blocks until someone writes.
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return nil, fail(fmt.Sprintf("not a regular file (%s); drover reads its configuration from a file", DescribeMode(fi.Mode())))
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fail(err.Error())
	}
	defer f.Close()
	fi, err := f.Stat()
	switch {
	case err != nil:
		return nil, fail(err.Error())
	case !fi.Mode().IsRegular():
		return nil, fail(fmt.Sprintf("not a regular file (%s); drover reads its configuration from a file", DescribeMode(fi.Mode())))
	case fi.Size() > MaxFileSize:
		return nil, fail(fmt.Sprintf("%d bytes, more than the %d a configuration may have", fi.Size(), MaxFileSize))
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fail(err.Error())
	}
	if len(data) > MaxFileSize {
		return nil, fail(fmt.Sprintf("more than the %d bytes a configuration may have", MaxFileSize))
	}
	return Parse(path, data)
}

// Parse defaults and validates drover.yaml content; name is used in errors.
func Parse(name string, data []byte) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &Error{File: name, Problems: []Problem{yamlProblem(err)}}
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, &Error{File: name, Problems: []Problem{{Msg: "the file is empty"}}}
	}
	lines := map[string]int{}
	indexLines("", doc.Content[0], lines)
	cfg := Defaults()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return nil, &Error{File: name, Problems: yamlProblems(err, lines)}
	}
	if probs := cfg.validate(lines); len(probs) > 0 {
		return nil, &Error{File: name, Problems: probs}
	}
	return &cfg, nil
}

// NodeByName returns the named node.
func (c Config) NodeByName(name string) (Node, bool) {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// ControlPlaneNodes lists the control-plane nodes, in inventory order.
func (c Config) ControlPlaneNodes() []Node {
	var out []Node
	for _, n := range c.Nodes {
		if n.IsControlPlane() {
			out = append(out, n)
		}
	}
	return out
}

// ControlPlaneCount counts the control-plane nodes.
func (c Config) ControlPlaneCount() int { return len(c.ControlPlaneNodes()) }

// indexLines records the line of every mapping key and sequence item under a
// dotted path such as "nodes[3].role".
func indexLines(prefix string, n *yaml.Node, out map[string]int) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if prefix != "" {
				p = prefix + "." + k.Value
			}
			out[p] = k.Line
			indexLines(p, v, out)
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", prefix, i)
			out[p] = item.Line
			indexLines(p, item, out)
		}
	}
}
