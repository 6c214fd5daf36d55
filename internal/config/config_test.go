package config

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const validYAML = `cluster:
  name: test
nodes:
  - name: cp-1
    role: controlplane
    ip: 127.0.0.11
    proxmoxHost: h1
    vmId: 101
  - name: w-1
    role: worker
    ip: 127.0.0.21
    proxmoxHost: h2
    vmId: 201
    gpus: 1
`

func TestParseValidAppliesDefaults(t *testing.T) {
	c, err := Parse("drover.yaml", []byte(validYAML))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Rollout
	checks := []struct {
		name      string
		got, want any
	}{
		{"maxParallelWorkers", r.MaxParallelWorkers, 1},
		{"drainTimeout", r.DrainTimeout.Duration, 5 * time.Minute},
		{"readyTimeout", r.ReadyTimeout.Duration, 10 * time.Minute},
		{"healthTimeout", r.HealthTimeout.Duration, 5 * time.Minute},
		{"healthAttempts", r.HealthAttempts, 3},
		{"controlPlaneSoak", r.ControlPlaneSoak.Duration, 5 * time.Minute},
		{"talosVariable", c.Versions.TalosVariable, "talos_version"},
		{"kubernetesVariable", c.Versions.KubernetesVariable, "kubernetes_version"},
		{"discord webhook env", c.Notifications.Discord.WebhookEnv, "DISCORD_WEBHOOK_URL"},
		{"gpus", c.Nodes[1].GPUs, 1},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func TestParseOverridesOneStepDurationKeepsTheOthers(t *testing.T) {
	c, err := Parse("drover.yaml", []byte(validYAML+"rollout:\n  stepDurations:\n    drain: 2m\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Rollout.StepDurations.Drain.Duration != 2*time.Minute || c.Rollout.StepDurations.Template.Duration != 10*time.Minute {
		t.Fatalf("step durations = %+v", c.Rollout.StepDurations)
	}
}

func TestParseRejects(t *testing.T) {
	node := func(name, role, ip string, vm int, extra string) string {
		return "  - name: " + name + "\n    role: " + role + "\n    ip: " + ip + "\n    proxmoxHost: h1\n    vmId: " + strconv.Itoa(vm) + "\n" + extra
	}
	base := "cluster:\n  name: test\nnodes:\n" + node("cp-1", "controlplane", "127.0.0.11", 101, "")
	tests := []struct {
		name      string
		yaml      string
		wantField string
		wantLine  int
		wantMsg   string
	}{
		{"unknown top-level field", base + "colour: blue\n", "colour", 9, "unknown field"},
		{"unknown node field", base + "  - name: w\n    role: worker\n    ip: 127.0.0.2\n    flavour: big\n", "flavour", 12, "unknown field"},
		{"duplicate node name", base + node("cp-1", "worker", "127.0.0.12", 102, ""), "nodes[1].name", 9, "duplicate node name"},
		{"unknown role", base + node("w-1", "wrker", "127.0.0.12", 102, ""), "nodes[1].role", 10, `unknown role "wrker"`},
		{"even control plane", base + node("cp-2", "controlplane", "127.0.0.12", 102, ""), "nodes", 3, "2 control-plane nodes"},
		{"no control plane", "cluster:\n  name: t\nnodes:\n" + node("w-1", "worker", "127.0.0.12", 102, ""), "nodes", 3, "no control-plane node"},
		{"bad duration", base + "rollout:\n  drainTimeout: 5 minutes\n", "rollout.drainTimeout", 10, `"5 minutes" is not a duration`},
		{"zero timeout", base + "rollout:\n  readyTimeout: 0s\n", "rollout.readyTimeout", 10, "greater than zero"},
		{"unparseable approval version", base + "approval:\n  versions: [v1.x]\n", "approval.versions[0]", 10, `version "v1.x"`},
		{"negative gpus", base + node("w-1", "worker", "127.0.0.12", 102, "    gpus: -1\n"), "nodes[1].gpus", 14, "must be 0 or more"},
		{"bad ip", base + node("w-1", "worker", "10.20.300.1", 102, ""), "nodes[1].ip", 11, "not an IP address"},
		{"duplicate vm id", base + node("w-1", "worker", "127.0.0.12", 101, ""), "nodes[1].vmId", 13, "duplicate VM id 101"},
		{"an endpoint that is not http", base + "talos:\n  etcdSnapshotUpload:\n    url: s3://etcd-snaps/prox-ops\n    endpoint: ftp://s3.example.net\n", "talos.etcdSnapshotUpload.endpoint", 12, "want the S3 API's URL"},
		{"an endpoint without a host", base + "talos:\n  etcdSnapshotUpload:\n    url: s3://etcd-snaps/prox-ops\n    endpoint: https://\n", "talos.etcdSnapshotUpload.endpoint", 12, "want the S3 API's URL"},
		{"an endpoint with a path", base + "talos:\n  etcdSnapshotUpload:\n    url: s3://etcd-snaps/prox-ops\n    endpoint: https://s3.example.net/bucket\n", "talos.etcdSnapshotUpload.endpoint", 12, "want the S3 API's URL"},
		{"duplicate ip", base + node("w-1", "worker", "127.0.0.11", 102, ""), "nodes[1].ip", 11, "duplicate IP 127.0.0.11 (also nodes[0])"},
		{"missing cluster name", strings.Replace(base, "name: test", "name: ''", 1), "cluster.name", 2, "is required"},
		{"installer image without placeholder", base + "talos:\n  installerImage: factory.talos.dev/nocloud-installer/abc:v1.11.3\n", "talos.installerImage", 10, "{version}"},
		{"installer image with a bad schematic", base + "talos:\n  installerImage: factory.talos.dev/nocloud-installer/not-hex:{version}\n", "talos.installerImage", 10, "64 lowercase hex"},
		{"zero parallel workers", base + "rollout:\n  maxParallelWorkers: 0\n", "rollout.maxParallelWorkers", 10, "at least 1"},
		{"a blocking selector that does not parse", base + "rollout:\n  blockingPods: [\"app in (a\"]\n", "rollout.blockingPods[0]", 10, "want a label selector"},
		{"negative keepRuns", base + "journal:\n  keepRuns: -1\n", "journal.keepRuns", 10, "0 (the default, 20) or more"},
		{"negative volume detach timeout", base + "rollout:\n  volumeDetachTimeout: -1m\n", "rollout.volumeDetachTimeout", 10, ""},
		{"wrong type names the field", base + "rollout:\n  healthAttempts: many\n", "rollout.healthAttempts", 10, "`many` is not a whole number"},
		{"wrong type in a list item", base + "rollout:\n  maxParallelWorkers: [2]\n", "rollout.maxParallelWorkers", 10, "is not a whole number"},
		{"zero health passes", base + "rollout:\n  healthPasses: 0\n", "rollout.healthPasses", 10, "at least 1"},
		{"unknown templates mode", base + "terraform:\n  templates: replace\n", "terraform.templates", 10, "want keep"},
		{"a bad alert matcher", base + "health:\n  alertmanager:\n    url: http://127.0.0.1:9093\n    ignore: ['severity=~\\\"(unclosed\\\"']\n", "health.alertmanager.ignore[0]", 12, "not an Alertmanager matcher"},
		{"an alertmanager URL that is not one", base + "health:\n  alertmanager:\n    url: alertmanager:9093\n", "health.alertmanager.url", 11, "not an http(s) URL"},
		{"a snapshot upload that is not s3", base + "talos:\n  etcdSnapshotUpload:\n    url: https://bucket/x\n", "talos.etcdSnapshotUpload.url", 11, "want s3://BUCKET/PREFIX"},
		{"a snapshot bucket with capitals", base + "talos:\n  etcdSnapshotUpload:\n    url: s3://Prox_Ops/x\n", "talos.etcdSnapshotUpload.url", 11, "bucket name"},
		{"a snapshot endpoint that is not a URL", base + "talos:\n  etcdSnapshotUpload:\n    url: s3://prox-ops/x\n    endpoint: minio:9000\n", "talos.etcdSnapshotUpload.endpoint", 12, "the S3 API's URL"},
		{"a canary that is not a node", base + "rollout:\n  canary: [w-9]\n", "rollout.canary[0]", 10, "not a node of the inventory"},
		{"a control-plane canary", base + "rollout:\n  canary: [cp-1]\n", "rollout.canary[0]", 10, "a canary is a worker"},
		{"blocking alerts without an alertmanager", base + "health:\n  blockingAlerts: ['severity=critical']\n", "health.blockingAlerts", 10, "needs health.alertmanager.url"},
		{"silences without an alertmanager", base + "health:\n  alertmanager:\n    silences: ['node=\"{node}\"']\n", "health.alertmanager.silences", 11, "needs health.alertmanager.url"},
		{"silences that name no node", base + "health:\n  alertmanager:\n    url: http://127.0.0.1:9093\n    silences: ['severity=warning']\n", "health.alertmanager.silences", 12, "no matcher names {node}"},
		{"a negative silence matcher", base + "health:\n  alertmanager:\n    url: http://127.0.0.1:9093\n    silences: ['node=\"{node}\"', 'team!=db']\n", "health.alertmanager.silences[1]", 12, "negative one would silence"},
		{"a silence matcher that does not parse", base + "health:\n  alertmanager:\n    url: http://127.0.0.1:9093\n    silences: ['node=~\"({node}\"']\n", "health.alertmanager.silences[0]", 12, "not an Alertmanager matcher"},
		{"a short silence", base + "health:\n  alertmanager:\n    url: http://127.0.0.1:9093\n    silences: ['node=\"{node}\"']\n    silenceFor: 30s\n", "health.alertmanager.silenceFor", 13, "at least 1m"},
		{"a hook without an image", base + "hooks:\n  beforeNode:\n    command: [sh, -c, 'ceph osd set noout']\n", "hooks.beforeNode.image", 10, "is required"},
		{"an unknown hook point", base + "hooks:\n  beforeDrain:\n    image: busybox\n", "beforeDrain", 10, "unknown field"},
		{"a negative hook timeout", base + "hooks:\n  afterRun:\n    image: busybox\n    timeout: -1m\n", "hooks.afterRun.timeout", 12, "must not be negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("drover.yaml", []byte(tc.yaml))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want *config.Error", err)
			}
			for _, p := range ce.Problems {
				if p.Field == tc.wantField && strings.Contains(p.Msg, tc.wantMsg) {
					if p.Line != tc.wantLine {
						t.Errorf("problem %q at line %d, want line %d", p, p.Line, tc.wantLine)
					}
					if !strings.Contains(err.Error(), tc.wantMsg) {
						t.Errorf("error text %q lacks %q", err, tc.wantMsg)
					}
					return
				}
			}
			t.Fatalf("no problem with field %q and message %q in: %v", tc.wantField, tc.wantMsg, err)
		})
	}
}

func TestParseReportsEveryProblemAtOnce(t *testing.T) {
	y := "cluster:\n  name: t\nnodes:\n  - name: a\n    role: boss\n    ip: 127.0.0.1\n    gpus: -2\nrollout:\n  drainTimeout: soon\n"
	_, err := Parse("drover.yaml", []byte(y))
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Problems) < 3 {
		t.Fatalf("want at least 3 problems (role, gpus, drainTimeout, control plane), got %v", err)
	}
}

func TestParseEmptyFile(t *testing.T) {
	if _, err := Parse("drover.yaml", nil); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("err = %v, want 'empty'", err)
	}
}

func TestExampleConfigIsValid(t *testing.T) {
	c, err := Load("../../examples/prox-ops/drover.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Nodes) != 15 || c.ControlPlaneCount() != 3 {
		t.Fatalf("example has %d nodes, %d control plane; want 15 and 3", len(c.Nodes), c.ControlPlaneCount())
	}
	hosts := map[string]bool{}
	gpus := []string{}
	for _, n := range c.Nodes {
		hosts[n.ProxmoxHost] = true
		if n.GPUs > 0 {
			gpus = append(gpus, n.Name)
		}
	}
	if len(hosts) != 4 || strings.Join(gpus, ",") != "k8s-work-4,k8s-work-14" {
		t.Fatalf("hosts %v, GPU workers %v", hosts, gpus)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(t.TempDir() + "/nope.yaml")
	var ce *Error
	if !errors.As(err, &ce) || !errors.Is(err, os.ErrNotExist) && !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("err = %v", err)
	}
}

// TestSnapshotEndpointsAccepted: http and https endpoints, with or without
// a trailing slash, are the S3 API's URL.
func TestSnapshotEndpointsAccepted(t *testing.T) {
	for _, ep := range []string{"http://127.0.0.1:9000", "https://s3.example.net/"} {
		y := validYAML + "talos:\n  etcdSnapshotUpload:\n    url: s3://etcd-snaps/prox-ops\n    endpoint: " + ep + "\n"
		if _, err := Parse("drover.yaml", []byte(y)); err != nil {
			t.Errorf("%s: %v", ep, err)
		}
	}
}

// TestTheDocumentedDefaults: the step durations the ETA falls back on and
// the Terraform lock timeout, as examples/prox-ops/drover.yaml documents
// them.
func TestTheDocumentedDefaults(t *testing.T) {
	d := Defaults()
	s := d.Rollout.StepDurations
	for name, tc := range map[string]struct{ got, want time.Duration }{
		"drain": {s.Drain.Duration, 30 * time.Second}, "destroy": {s.Destroy.Duration, 35 * time.Second},
		"create": {s.Create.Duration, 225 * time.Second}, "upgrade": {s.Upgrade.Duration, 2 * time.Minute},
		"template": {s.Template.Duration, 10 * time.Minute}, "health": {s.Health.Duration, 35 * time.Second},
		"kubernetes": {s.Kubernetes.Duration, 10 * time.Minute}, "terraform.lockTimeout": {d.Terraform.LockTimeout.Duration, 5 * time.Minute},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %s, want %s", name, tc.got, tc.want)
		}
	}
}

// TestAConfigFileAtTheSizeLimit: a file of MaxFileSize bytes loads, one
// byte more is refused.
func TestAConfigFileAtTheSizeLimit(t *testing.T) {
	for _, tc := range []struct {
		size int
		ok   bool
	}{{MaxFileSize, true}, {MaxFileSize + 1, false}} {
		body := validYAML + "# "
		body += strings.Repeat("x", tc.size-len(body)-1) + "\n"
		path := filepath.Join(t.TempDir(), "drover.yaml")
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(path); (err == nil) != tc.ok {
			t.Errorf("%d bytes: err = %v", tc.size, err)
		}
	}
}

// TestBoundariesThatAreAccepted: the smallest accepted values, and the
// forms of a few fields that are fine.
func TestBoundariesThatAreAccepted(t *testing.T) {
	for name, extra := range map[string]string{
		"one attempt, one pass": "rollout:\n  healthAttempts: 1\n  healthPasses: 1\n  drainAttempts: 1\n",
		"one snapshot kept":     "talos:\n  etcdSnapshotsKeep: 1\n",
		"an http alertmanager":  "health:\n  alertmanager:\n    url: http://127.0.0.1:9093\n",
		"a webhook variable":    "notifications:\n  discord:\n    webhookEnv: DROVER_DISCORD_1\n",
		"nodes without VM ids (found in the Terraform state)": "",
	} {
		y := validYAML + extra
		if name == "nodes without VM ids (found in the Terraform state)" {
			y = strings.ReplaceAll(strings.ReplaceAll(validYAML, "    vmId: 101\n", ""), "    vmId: 201\n", "")
		}
		if _, err := Parse("drover.yaml", []byte(y)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, tc := range map[string]struct{ extra, field string }{
		"no snapshot kept":         {"talos:\n  etcdSnapshotsKeep: 0\n", "talos.etcdSnapshotsKeep"},
		"no drain attempt":         {"rollout:\n  drainAttempts: 0\n", "rollout.drainAttempts"},
		"a webhook variable name":  {"notifications:\n  discord:\n    webhookEnv: \"has space\"\n", "notifications.discord.webhookEnv"},
		"an address with a space":  {"", "nodes[1].terraformAddress"},
		"a negative VM id":         {"", "nodes[1].vmId"},
		"an alertmanager over ftp": {"health:\n  alertmanager:\n    url: ftp://127.0.0.1\n", "health.alertmanager.url"},
	} {
		y := validYAML + tc.extra
		switch name {
		case "an address with a space":
			y = validYAML + "    terraformAddress: module.nodes[\"w 1\"]\n"
		case "a negative VM id":
			y = strings.Replace(validYAML, "vmId: 201", "vmId: -1", 1)
		}
		_, err := Parse("drover.yaml", []byte(y))
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: err = %v, want %s named", name, err, tc.field)
		}
	}
}

// TestAProblemWithoutALine is printed without a line number.
func TestAProblemWithoutALine(t *testing.T) {
	if got := (Problem{Field: "nodes", Msg: "x"}).String(); strings.Contains(got, "line") {
		t.Fatalf("%q", got)
	}
	if got := (Problem{Field: "nodes", Line: 1, Msg: "x"}).String(); !strings.HasPrefix(got, "line 1: ") {
		t.Fatalf("%q", got)
	}
}
