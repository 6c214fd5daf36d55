package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/minio/minio-go/v7"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/journal"
	"github.com/prox-ops/drover/internal/kube"
	"github.com/prox-ops/drover/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { os.Exit(testenv.Main(m, &env)) }

// TestPlanReadsNodeVersionsFromTheCluster: plan against a real API server
// (through --kubeconfig) reads what each node runs (no --from-talos
// needed), skips the node that already runs the target, says where each
// version came from, and refuses claims the nodes contradict (exit 4).
func TestPlanReadsNodeVersionsFromTheCluster(t *testing.T) {
	testenv.Require(t, env)
	k := testenv.NewKubelets(env.Client, "none")
	defer k.Close()
	ctx := context.Background()
	for _, n := range []testenv.NodeSpec{
		{Name: "cli-cp-1", ControlPlane: true, Talos: "v1.11.3", Kubelet: "v1.34.1"},
		{Name: "cli-w-1", Talos: "v1.12.0", Kubelet: "v1.34.1"},
		{Name: "cli-w-2", Talos: "v1.11.3", Kubelet: "v1.34.1"},
	} {
		if err := k.AddNode(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { env.DeleteNodes("cli-cp-1", "cli-w-1", "cli-w-2") })
	cfg := filepath.Join(t.TempDir(), "drover.yaml")
	write(t, cfg, `cluster: {name: it}
nodes:
  - {name: cli-cp-1, role: controlplane, ip: 127.0.0.11, proxmoxHost: a}
  - {name: cli-w-1, role: worker, ip: 127.0.0.21, proxmoxHost: a}
  - {name: cli-w-2, role: worker, ip: 127.0.0.22, proxmoxHost: b}
`)
	r := drover(t, "plan", "--config", cfg, "--kubeconfig", env.Kubeconfig, "--to-talos", "v1.12.0", "--output", "json")
	if r.code != ExitOK {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	var p struct {
		From    string `json:"from"`
		Batches []struct {
			Nodes []struct{ Name, VersionSource string } `json:"nodes"`
		} `json:"batches"`
		Skipped []struct{ Name, Reason string } `json:"skipped"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		t.Fatal(err)
	}
	var planned []string
	for _, b := range p.Batches {
		for _, n := range b.Nodes {
			planned = append(planned, n.Name)
		}
	}
	if strings.Join(planned, ",") != "cli-cp-1,cli-w-2" || len(p.Skipped) != 1 || p.Skipped[0].Name != "cli-w-1" || p.From != "v1.11.3" {
		t.Fatalf("from %s, planned %v, skipped %+v", p.From, planned, p.Skipped)
	}
	if src := p.Batches[0].Nodes[0].VersionSource; src != "Node object" {
		t.Fatalf("version source %q", src)
	}
	// Claims the nodes contradict: refused before anything, naming them.
	for _, claim := range [][]string{{"--from-talos", "v1.12.0", "--to-talos", "v1.12.1"}, {"--from-talos", "v1.12.0", "--to-talos", "v1.12.0"}} {
		r := drover(t, append([]string{"plan", "--config", cfg, "--kubeconfig", env.Kubeconfig}, claim...)...)
		if r.code != ExitBlocked || !strings.Contains(r.stderr, "cli-cp-1, cli-w-2 run Talos v1.11.3 (Node object)") {
			t.Fatalf("%v: exit %d\n%s%s", claim, r.code, r.stdout, r.stderr)
		}
	}
	// The table says where each version came from.
	r = drover(t, "plan", "--config", cfg, "--kubeconfig", env.Kubeconfig, "--to-talos", "v1.12.0")
	if !strings.Contains(r.stdout, "node versions read from:\n  Node object: cli-cp-1, cli-w-1, cli-w-2") {
		t.Fatalf("plan table:\n%s", r.stdout)
	}
	// A cluster that cannot be reached: blocked (exit 4), naming it.
	unreachable := filepath.Join(t.TempDir(), "kubeconfig")
	write(t, unreachable, "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\nusers: [{name: u, user: {token: t}}]\n")
	r = drover(t, "plan", "--config", cfg, "--kubeconfig", unreachable, "--to-talos", "v1.12.0")
	if r.code != ExitBlocked || !strings.Contains(r.stderr, "cannot reach the cluster at https://127.0.0.1:1") {
		t.Fatalf("unreachable: exit %d %s", r.code, r.stderr)
	}
	// Credentials without the permission: blocked, naming what is missing.
	nobody := env.ServiceAccountKubeconfig(t, "drover-nobody", "nobody")
	r = drover(t, "plan", "--config", cfg, "--kubeconfig", nobody, "--to-talos", "v1.12.0")
	if r.code != ExitBlocked || !strings.Contains(r.stderr, "refuses access") || !strings.Contains(r.stderr, `cannot list resource "nodes"`) {
		t.Fatalf("forbidden: exit %d %s", r.code, r.stderr)
	}

	// A --context that the kubeconfig lacks is a usage error.
	r = drover(t, "plan", "--config", cfg, "--kubeconfig", env.Kubeconfig, "--context", "nope", "--from-talos", "v1.11.3", "--to-talos", "v1.12.0")
	if r.code != ExitUsage || !strings.Contains(r.stderr, "nope") {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
}

// TestPlanCompletesTheInventoryFromTerraformState: nodes without a Proxmox
// host or VM id get them from the state, and the plan says so.
func TestPlanCompletesTheInventoryFromTerraformState(t *testing.T) {
	bin := tfBinary(t)
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("../terraform/testdata/prox-ops")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TF_VAR_vm_dir", t.TempDir())
	for _, args := range [][]string{{"init", "-input=false"}, {"apply", "-auto-approve", "-input=false", "-var", "talos_version=v1.11.3"}} {
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", bin, args, err, out)
		}
	}
	cfg := filepath.Join(t.TempDir(), "drover.yaml")
	write(t, cfg, `cluster: {name: it}
nodes:
  - {name: k8s-ctrl-1, role: controlplane, ip: 127.0.0.11}
  - {name: k8s-work-1, role: worker, ip: 127.0.0.21}
  - {name: k8s-work-2, role: worker, ip: 127.0.0.22, proxmoxHost: heimdall, vmId: 8102}
terraform:
  binary: `+bin+`
  workingDir: `+dir+`
`)
	r := drover(t, "plan", "--config", cfg, "--from-talos", "v1.11.3", "--to-talos", "v1.12.0", "--output", "json")
	if r.code != ExitOK {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	var p struct {
		Batches []struct {
			Nodes []struct {
				Name, Host, Source string
				VMID               int `json:"vmId"`
			} `json:"nodes"`
		} `json:"batches"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, b := range p.Batches {
		for _, n := range b.Nodes {
			got[n.Name] = fmt.Sprintf("%s/%d/%s", n.Host, n.VMID, n.Source)
		}
	}
	want := map[string]string{
		"k8s-ctrl-1": "baldar/8001/host from state, VM id from state",
		"k8s-work-1": "baldar/8101/host from state, VM id from state",
		"k8s-work-2": "heimdall/8102/host from config, VM id from config",
	}
	for n, w := range want {
		if got[n] != w {
			t.Errorf("%s: %s, want %s", n, got[n], w)
		}
	}
}

// TestPetsUpgradeOfARealCluster runs `drover upgrade --config` end to end
// against the real control plane (Kubernetes side) and a Talos API server
// over mTLS (the nodes' Talos side, simulated): every node is upgraded in
// place behind an etcd snapshot, and the journal is written.
func TestPetsUpgradeOfARealCluster(t *testing.T) {
	testenv.Require(t, env)
	dir := t.TempDir()
	ta, talosconfig := talosCluster(t, dir, []e2eNode{
		{"e2e-cp-1", "127.0.0.31", "v1.13.0", 500}, {"e2e-w-1", "127.0.0.41", "v1.13.0", 0}, {"e2e-w-2", "127.0.0.42", "v1.13.0", 0},
	})
	nodes := []struct{ name, ip string }{{"e2e-cp-1", "127.0.0.31"}, {"e2e-w-1", "127.0.0.41"}, {"e2e-w-2", "127.0.0.42"}}
	snapshots := filepath.Join(dir, "snapshots")
	cfg := filepath.Join(dir, "drover.yaml")
	write(t, cfg, `cluster: {name: e2e}
nodes:
  - {name: e2e-cp-1, role: controlplane, ip: 127.0.0.31, proxmoxHost: a, vmId: 1}
  - {name: e2e-w-1, role: worker, ip: 127.0.0.41, proxmoxHost: a, vmId: 2}
  - {name: e2e-w-2, role: worker, ip: 127.0.0.42, proxmoxHost: b, vmId: 3}
talos:
  installerImage: `+installerImage(t)+`
  etcdSnapshotDir: `+snapshots+`
rollout:
  controlPlaneSoak: 1s
  workerSoak: 1s
  healthInterval: 1s
  readyTimeout: 1m
health:
  # The probes need a kubelet that runs containers; internal/health tests them.
  disable: [DNS Resolution, Network Connectivity]
`)
	journalPath := filepath.Join(dir, "journal.jsonl")
	r := drover(t, "upgrade", "--config", cfg, "--kubeconfig", env.Kubeconfig, "--talosconfig", talosconfig,
		"--from-talos", "v1.13.0", "--to-talos", "v1.13.1", "--yes", "--output", "json", "--journal", journalPath,
		"--report", filepath.Join(dir, "report.json"))
	if r.code != ExitOK {
		t.Fatalf("exit %d\n%s", r.code, lastLines(r.stderr, 30))
	}
	rep := decodeReport(t, r)
	if rep.Result != "succeeded" || rep.Strategy != "pets" || len(rep.Nodes) != 3 {
		t.Fatalf("report %+v", rep)
	}
	for _, n := range nodes {
		if v := ta.NodeVersion(n.ip); v != "v1.13.1" {
			t.Errorf("%s runs %s", n.name, v)
		}
	}
	if rep.PDBViolations != nil {
		t.Error("a real run reported lab counters")
	}
	snaps, _ := filepath.Glob(filepath.Join(snapshots, "etcd-*-e2e-cp-1.snapshot"))
	if len(snaps) != 1 {
		t.Fatalf("etcd snapshots %v", snaps)
	}
	if got := ta.CallsOf("EtcdForfeitLeadership"); len(got) != 1 || got[0] != "127.0.0.31" {
		t.Errorf("the leading control-plane node did not forfeit leadership: %v", got)
	}
	data, err := os.ReadFile(journalPath)
	if err != nil || !strings.Contains(string(data), `"step":"etcd-guard"`) || !strings.Contains(string(data), `"detail":"succeeded"`) {
		t.Fatalf("journal: %v\n%s", err, data)
	}
	if !strings.Contains(r.stderr, "LifecycleService") || !strings.Contains(r.stderr, "talosconfig from --talosconfig") {
		t.Errorf("progress does not say which Talos path ran or where the talosconfig came from:\n%s", r.stderr)
	}
}

// TestAControlPlaneEndpointThatGoesAwayDoesNotStopTheRun: the talosconfig
// names the three control-plane nodes' Talos API endpoints; one of them
// goes away (its VM replaced, its network gone) while another node's etcd
// guard runs. drover's Talos calls go on through the other endpoints and
// the run finishes.
func TestAControlPlaneEndpointThatGoesAwayDoesNotStopTheRun(t *testing.T) {
	testenv.Require(t, env)
	dir := t.TempDir()
	nodes := []e2eNode{{"ep-cp-1", "127.0.0.61", "v1.13.0", 611}, {"ep-cp-2", "127.0.0.62", "v1.13.0", 612}, {"ep-cp-3", "127.0.0.63", "v1.13.0", 613}, {"ep-w-1", "127.0.0.64", "v1.13.0", 0}}
	ta, talosconfig, eps := talosClusterEndpoints(t, dir, nodes, 3)
	var once sync.Once
	stopped := make(chan struct{})
	ta.OnCall = func(method, ip string) {
		if method == "EtcdSnapshot" && ip == "127.0.0.62" {
			once.Do(func() { eps[0].Stop(); close(stopped) })
		}
	}
	cfg := filepath.Join(dir, "drover.yaml")
	var inv strings.Builder
	for i, n := range nodes {
		role := "worker"
		if n.member != 0 {
			role = "controlplane"
		}
		fmt.Fprintf(&inv, "  - {name: %s, role: %s, ip: %s, proxmoxHost: h%d, vmId: %d}\n", n.name, role, n.ip, i, i+1)
	}
	write(t, cfg, "cluster: {name: ep}\nnodes:\n"+inv.String()+`talos:
  installerImage: `+installerImage(t)+`
  etcdSnapshotDir: `+filepath.Join(dir, "snapshots")+`
rollout: {controlPlaneSoak: 1s, workerSoak: 1s, healthInterval: 1s, readyTimeout: 1m}
health: {disable: [DNS Resolution, Network Connectivity]}
`)
	r := drover(t, "upgrade", "--config", cfg, "--kubeconfig", env.Kubeconfig, "--talosconfig", talosconfig,
		"--to-talos", "v1.13.1", "--yes", "--journal", filepath.Join(dir, "j.jsonl"), "--report", filepath.Join(dir, "r.json"))
	select {
	case <-stopped:
	default:
		t.Fatal("the endpoint was never stopped: ep-cp-2's etcd guard took no snapshot")
	}
	if r.code != ExitOK {
		t.Fatalf("exit %d after an endpoint went away\n%s", r.code, lastLines(r.stdout+r.stderr, 30))
	}
	for _, n := range nodes {
		if v := ta.NodeVersion(n.ip); v != "v1.13.1" {
			t.Errorf("%s runs %s", n.name, v)
		}
	}
}

// TestTheAPIServerDroverTalksToCanGoAway: drover reaches the cluster
// through its endpoint (a balancer, as a VIP or the kubernetes Service),
// connected to a second kube-apiserver on the same etcd; in the middle of
// the run that API server goes away (its control-plane node replaced) and
// the endpoint fails over to the first. drover's client and its gate's
// informers reconnect and the run finishes.
func TestTheAPIServerDroverTalksToCanGoAway(t *testing.T) {
	testenv.Require(t, env)
	dir := t.TempDir()
	nodes := []e2eNode{{"lb-cp-1", "127.0.0.71", "v1.13.0", 711}, {"lb-w-1", "127.0.0.72", "v1.13.0", 0}, {"lb-w-2", "127.0.0.73", "v1.13.0", 0}}
	ta, talosconfig := talosCluster(t, dir, nodes)
	second := env.SecondAPIServer(t)
	lb := testenv.NewBalancer(t, strings.TrimPrefix(env.Config.Host, "https://"), strings.TrimPrefix(second.Host, "https://"))
	lb.Route(1)
	kubeconfig := testenv.KubeconfigFor(t, env.Through(lb.Addr))
	var once sync.Once
	gone := make(chan struct{})
	ta.OnCall = func(method, ip string) {
		if method == "LifecycleUpgrade" && ip == "127.0.0.72" {
			once.Do(func() { lb.Route(0); second.Stop(); close(gone) })
		}
	}
	cfg := filepath.Join(dir, "drover.yaml")
	write(t, cfg, `cluster: {name: lb}
nodes:
  - {name: lb-cp-1, role: controlplane, ip: 127.0.0.71, proxmoxHost: a, vmId: 1}
  - {name: lb-w-1, role: worker, ip: 127.0.0.72, proxmoxHost: a, vmId: 2}
  - {name: lb-w-2, role: worker, ip: 127.0.0.73, proxmoxHost: b, vmId: 3}
talos:
  installerImage: `+installerImage(t)+`
  etcdSnapshotDir: `+filepath.Join(dir, "snapshots")+`
rollout: {controlPlaneSoak: 1s, workerSoak: 1s, healthInterval: 1s, readyTimeout: 1m}
health: {disable: [DNS Resolution, Network Connectivity]}
`)
	r := drover(t, "upgrade", "--config", cfg, "--kubeconfig", kubeconfig, "--talosconfig", talosconfig,
		"--to-talos", "v1.13.1", "--yes", "--journal", filepath.Join(dir, "j.jsonl"), "--report", filepath.Join(dir, "r.json"))
	select {
	case <-gone:
	default:
		t.Fatal("the API server never went away: lb-w-1 was not upgraded")
	}
	if r.code != ExitOK {
		t.Fatalf("exit %d after its API server went away\n%s", r.code, lastLines(r.stdout+r.stderr, 30))
	}
	for _, n := range nodes {
		if v := ta.NodeVersion(n.ip); v != "v1.13.1" {
			t.Errorf("%s runs %s", n.name, v)
		}
	}
}

// TestCattleUpgradeOfARealCluster runs `drover upgrade --config` for a
// minor release end to end: Terraform (a real binary, on the prox-ops-shaped
// fixture) replaces each VM, the nodes re-register in the real API server,
// and the control-plane node's etcd member leaves before its VM is
// destroyed and is back before the workers start.
func TestCattleUpgradeOfARealCluster(t *testing.T) {
	testenv.Require(t, env)
	bin := tfBinary(t)
	ctx := context.Background()
	tfDir := t.TempDir()
	vmDir := t.TempDir()
	if err := os.CopyFS(tfDir, os.DirFS("../terraform/testdata/prox-ops")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TF_VAR_vm_dir", vmDir)
	ta := testenv.NewTalosAPI()
	ta.Add("127.0.0.61", "k8s-ctrl-1", "v1.11.3", 700)
	ta.SetLeader(700)
	k := testenv.NewKubelets(env.Client, "none")
	defer k.Close()
	members := uint64(700)
	// A control-plane VM that boots joins etcd as a new member.
	testenv.WatchVMs(t, vmDir, k, func(name, _ string) {
		if name == "k8s-ctrl-1" {
			members++
			ta.SetMember("127.0.0.61", members)
		}
	})
	names := []string{"k8s-ctrl-1", "k8s-work-1", "k8s-work-2", "k8s-work-3", "k8s-work-4"}
	t.Cleanup(func() { env.DeleteNodes(names...) })
	for _, args := range [][]string{{"init", "-input=false"}, {"apply", "-auto-approve", "-input=false", "-var", "talos_version=v1.11.3"}} {
		cmd := exec.Command(bin, args...)
		cmd.Dir = tfDir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	testenv.Eventually(t, 20*time.Second, "the fixture's nodes to register", func() (bool, error) {
		for _, n := range names {
			if _, err := env.Client.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{}); err != nil {
				return false, nil
			}
		}
		return true, nil
	})
	dir := t.TempDir()
	talosconfig := filepath.Join(dir, "talosconfig")
	write(t, talosconfig, string(ta.Serve(t)))
	cfg := filepath.Join(dir, "drover.yaml")
	write(t, cfg, `cluster: {name: e2e-cattle}
nodes:
  - {name: k8s-ctrl-1, role: controlplane, ip: 127.0.0.61, proxmoxHost: baldar, vmId: 8001}
  - {name: k8s-work-1, role: worker, ip: 127.0.0.71, proxmoxHost: baldar, vmId: 8101}
  - {name: k8s-work-2, role: worker, ip: 127.0.0.72, proxmoxHost: heimdall, vmId: 8102}
  - {name: k8s-work-3, role: worker, ip: 127.0.0.73, proxmoxHost: odin, vmId: 8103}
  - {name: k8s-work-4, role: worker, ip: 127.0.0.74, proxmoxHost: thor, vmId: 8104}
talos:
  etcdSnapshotDir: `+filepath.Join(dir, "snapshots")+`
terraform:
  binary: `+bin+`
  workingDir: `+tfDir+`
rollout:
  maxParallelWorkers: 2
  controlPlaneSoak: 1s
  workerSoak: 1s
  healthInterval: 1s
  readyTimeout: 1m
health:
  disable: [DNS Resolution, Network Connectivity]
`)
	r := drover(t, "upgrade", "--config", cfg, "--kubeconfig", env.Kubeconfig, "--talosconfig", talosconfig,
		"--from-talos", "v1.11.3", "--to-talos", "v1.12.0", "--yes", "--output", "json", "--journal", filepath.Join(dir, "j.jsonl"),
		"--report", filepath.Join(dir, "report.json"))
	if r.code != ExitOK {
		t.Fatalf("exit %d\n%s", r.code, lastLines(r.stderr, 40))
	}
	rep := decodeReport(t, r)
	if rep.Result != "succeeded" || rep.Strategy != "cattle" {
		t.Fatalf("report %+v", rep)
	}
	for _, n := range names {
		data, _ := os.ReadFile(filepath.Join(vmDir, n+".vm"))
		if string(data) != "v1.12.0 v1.34.1" {
			t.Errorf("VM %s is %q", n, data)
		}
	}
	if got := ta.CallsOf("EtcdLeaveCluster"); len(got) != 1 || got[0] != "127.0.0.61" {
		t.Errorf("etcd leave calls %v", got)
	}
	if !strings.Contains(r.stderr, "[terraform k8s-work-1,k8s-work-2]") || !strings.Contains(r.stderr, "cattle through ") {
		t.Errorf("Terraform's output (one run per batch of two workers) and binary are not shown:\n%s", lastLines(r.stderr, 20))
	}
	// One state, one lock: each batch is one destroy and one apply.
	if n := strings.Count(r.stderr, "[terraform k8s-work-3,k8s-work-4] Destroy complete!"); n != 1 {
		t.Errorf("the second batch ran %d destroys, want one", n)
	}
}

func tfBinary(t *testing.T) string {
	t.Helper()
	return testenv.Terraform(t, "../terraform/testdata/provider")
}

// TestRunLockRefusesASecondRunAndUnlockBreaksIt: a run whose lock another
// runner holds exits 4 naming the holder, and drover unlock breaks it.
func TestRunLockRefusesASecondRunAndUnlockBreaksIt(t *testing.T) {
	testenv.Require(t, env)
	ctx := context.Background()
	l := &journal.LeaseLock{Client: env.Drover, Clock: clock.Real{}, Namespace: "drover-lock-test", Name: "drover-upgrade", TTL: time.Minute}
	release, err := l.Acquire(ctx, journal.Holder{Runner: "runner-other", RunID: "run-42", Started: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	cfg := filepath.Join(t.TempDir(), "drover.yaml")
	write(t, cfg, "cluster: {name: lk}\nnodes:\n  - {name: lk-cp-1, role: controlplane, ip: 127.0.0.81, proxmoxHost: a, vmId: 1}\n")
	r := drover(t, "upgrade", "--config", cfg, "--kubeconfig", env.Kubeconfig, "--lock-namespace", "drover-lock-test",
		"--from-talos", "v1.13.0", "--to-talos", "v1.13.1", "--yes", "--output", "json", "--report", filepath.Join(t.TempDir(), "report.json"))
	if r.code != ExitBlocked {
		t.Fatalf("exit %d, want 4\n%s", r.code, r.stderr)
	}
	if rep := decodeReport(t, r); rep.Result != "blocked" || !strings.Contains(rep.Error, "runner=runner-other run=run-42") {
		t.Fatalf("report %+v", rep)
	}
	r = drover(t, "unlock", "--kubeconfig", env.Kubeconfig, "--lock-namespace", "drover-lock-test")
	if r.code != ExitOK || !strings.Contains(r.stdout, "held by runner=runner-other run=run-42") {
		t.Fatalf("unlock: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if _, err := env.Client.CoordinationV1().Leases("drover-lock-test").Get(ctx, "drover-upgrade", metav1.GetOptions{}); err == nil {
		t.Fatal("the lease is still there")
	}
}

// TestSIGTERMStopsARealRunSafely builds drover, runs a real pets upgrade,
// sends SIGTERM once the first worker is in progress (as a cancelled
// workflow does), and checks: exit 130, the stop in the journal, the node
// not left cordoned, the run lock released.
func TestSIGTERMStopsARealRunSafely(t *testing.T) {
	testenv.Require(t, env)
	ctx := context.Background()
	dir := t.TempDir()
	bin := droverBinary(t)
	names := []string{"sig-cp-1", "sig-w-1", "sig-w-2", "sig-w-3"}
	_, talosconfig := talosCluster(t, dir, []e2eNode{
		{"sig-cp-1", "127.0.0.91", "v1.13.0", 900}, {"sig-w-1", "127.0.0.92", "v1.13.0", 0},
		{"sig-w-2", "127.0.0.93", "v1.13.0", 0}, {"sig-w-3", "127.0.0.94", "v1.13.0", 0},
	})
	cfg := filepath.Join(dir, "drover.yaml")
	write(t, cfg, `cluster: {name: sig}
nodes:
  - {name: sig-cp-1, role: controlplane, ip: 127.0.0.91, proxmoxHost: a, vmId: 1}
  - {name: sig-w-1, role: worker, ip: 127.0.0.92, proxmoxHost: a, vmId: 2}
  - {name: sig-w-2, role: worker, ip: 127.0.0.93, proxmoxHost: b, vmId: 3}
  - {name: sig-w-3, role: worker, ip: 127.0.0.94, proxmoxHost: c, vmId: 4}
talos:
  installerImage: `+installerImage(t)+`
  etcdSnapshotDir: `+filepath.Join(dir, "snapshots")+`
rollout: {controlPlaneSoak: 1s, workerSoak: 1s, healthInterval: 1s, readyTimeout: 1m}
health: {disable: [DNS Resolution, Network Connectivity]}
`)
	// A pod on sig-w-1 whose budget never allows its eviction holds the
	// drain there: the signal lands in the middle of a drain.
	holdDrain(t, "sig-hold", "sig-w-1")
	journalPath := filepath.Join(dir, "journal.jsonl")
	cmd := exec.Command(bin, "upgrade", "--config", cfg, "--kubeconfig", env.Kubeconfig, "--talosconfig", talosconfig,
		"--from-talos", "v1.13.0", "--to-talos", "v1.13.1", "--yes", "--journal", journalPath, "--lock-namespace", "drover-sig",
		"--skip-drain-preflight")
	cmd.Env = append(os.Environ(), "KUBECONFIG=", "TALOSCONFIG=")
	cmd.Dir = dir // its default report lands in the test's directory
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 60*time.Second, "the first worker's drain to start", func() (bool, error) {
		data, _ := os.ReadFile(journalPath)
		return strings.Contains(string(data), `"node":"sig-w-1","step":"drain","status":"started"`), nil
	})
	signalled := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	// What stopping costs (uncordon, journal entry, lock release) through
	// the production client; the target, 1 s, is a benchmark's business.
	t.Logf("from SIGTERM to exit: %s", time.Since(signalled).Round(time.Millisecond))
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != ExitInterrupted {
		t.Fatalf("exit %v, want 130\n%s", err, out.String())
	}
	data, _ := os.ReadFile(journalPath)
	if !strings.Contains(string(data), `"status":"interrupted"`) {
		t.Fatalf("the journal does not record the stop:\n%s", data)
	}
	for _, n := range names {
		node, err := env.Client.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
		if err == nil && node.Spec.Unschedulable {
			t.Errorf("%s was left cordoned", n)
		}
	}
	if _, err := env.Client.CoordinationV1().Leases("drover-sig").Get(ctx, "drover-upgrade", metav1.GetOptions{}); err == nil {
		t.Error("the run lock was not released")
	}
	if !strings.Contains(out.String(), "interrupted") {
		t.Errorf("output does not say the run was interrupted:\n%s", lastLines(out.String(), 10))
	}
}

// restricted labels ns to enforce Pod Security "restricted" for the test.
func restricted(t *testing.T, ns string) {
	t.Helper()
	ctx := context.Background()
	env.Namespace(t, ns)
	n, err := env.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Labels == nil {
		n.Labels = map[string]string{}
	}
	n.Labels["pod-security.kubernetes.io/enforce"] = "restricted"
	if _, err := env.Client.CoreV1().Namespaces().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if n, err := env.Client.CoreV1().Namespaces().Get(context.Background(), ns, metav1.GetOptions{}); err == nil {
			delete(n.Labels, "pod-security.kubernetes.io/enforce")
			_, _ = env.Client.CoreV1().Namespaces().Update(context.Background(), n, metav1.UpdateOptions{})
		}
	})
}

// holdDrain puts a pod on node that a PodDisruptionBudget never lets go.
func holdDrain(t *testing.T, name, node string) {
	t.Helper()
	ctx := context.Background()
	labels := map[string]string{"app": name}
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "none"}, Spec: appsv1.ReplicaSetSpec{
		Replicas: ptr.To(int32(1)), Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
			NodeName: node, Containers: []corev1.Container{{Name: name, Image: "registry.example/" + name + ":1"}},
		}},
	}}
	env.Namespace(t, "none")
	if _, err := env.Client.AppsV1().ReplicaSets("none").Create(ctx, rs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	env.PDB(t, "none", name, 1)
	t.Cleanup(func() {
		_ = env.Client.PolicyV1().PodDisruptionBudgets("none").Delete(context.Background(), name, metav1.DeleteOptions{})
		_ = env.Client.AppsV1().ReplicaSets("none").Delete(context.Background(), name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)})
	})
}

// TestConfigMapJournalAndHistory: a run keeps its journal in a ConfigMap on
// the real API server, and drover history reads it back from there.
func TestConfigMapJournalAndHistory(t *testing.T) {
	testenv.Require(t, env)
	dir := t.TempDir()
	// The control plane is already at the target; only the worker moves.
	_, talosconfig := talosCluster(t, dir, []e2eNode{{"cm-cp-1", "127.0.0.100", "v1.13.1", 950}, {"cm-w-1", "127.0.0.101", "v1.13.0", 0}})
	cfg := filepath.Join(dir, "drover.yaml")
	write(t, cfg, `cluster: {name: cmj}
nodes:
  - {name: cm-cp-1, role: controlplane, ip: 127.0.0.100, proxmoxHost: a, vmId: 1}
  - {name: cm-w-1, role: worker, ip: 127.0.0.101, proxmoxHost: b, vmId: 2}
talos:
  installerImage: `+installerImage(t)+`
  etcdSnapshotDir: `+filepath.Join(dir, "snapshots")+`
rollout: {controlPlaneSoak: 1s, workerSoak: 1s, healthInterval: 1s, readyTimeout: 1m}
health: {disable: [DNS Resolution, Network Connectivity]}
`)
	r := drover(t, "upgrade", "--config", cfg, "--kubeconfig", env.Kubeconfig, "--talosconfig", talosconfig, "--lock-namespace", "drover-cmj",
		"--from-talos", "v1.13.0", "--to-talos", "v1.13.1", "--yes", "--journal", "configmap", "--report", filepath.Join(dir, "r.json"))
	if r.code != ExitOK {
		t.Fatalf("exit %d\n%s", r.code, lastLines(r.stderr, 20))
	}
	r = drover(t, "history", "--kubeconfig", env.Kubeconfig, "--lock-namespace", "drover-cmj", "--journal", "configmap", "--output", "json")
	if r.code != ExitOK || !strings.Contains(r.stdout, `"result": "succeeded"`) || !strings.Contains(r.stdout, `"cluster": "cmj"`) {
		t.Fatalf("history: %d %s %s", r.code, r.stdout, r.stderr)
	}
}

// e2eNode is a node of an end-to-end test, both in the API server (a
// simulated kubelet) and behind the test's Talos API server. A node with an
// etcd member is a control-plane node; the first one leads etcd.
type e2eNode struct {
	name, ip, talos string
	member          uint64
}

// talosCluster registers the nodes in both places, makes a node that comes
// back from its reboot register at the Talos it now runs, and writes a
// talosconfig for the Talos API into dir. The nodes go at the test's end.
func talosCluster(t *testing.T, dir string, nodes []e2eNode) (*testenv.TalosAPI, string) {
	t.Helper()
	ta, talosconfig, _ := talosClusterEndpoints(t, dir, nodes, 1)
	return ta, talosconfig
}

var (
	registryOnce sync.Once
	registryHost string
)

// installerImage is the tests' installer image template, in an OCI
// registry on 127.0.0.1 that holds it at the versions the tests run (a
// registry of the test process, as Image Factory would be).
func installerImage(t *testing.T) string {
	t.Helper()
	registryOnce.Do(func() {
		srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
		registryHost = srv.Listener.Addr().String()
		reg := &testenv.Registry{Host: registryHost}
		for _, v := range []string{"v1.11.3", "v1.11.4", "v1.12.0", "v1.12.1", "v1.12.2", "v1.13.0", "v1.13.1"} {
			reg.Push(t, reg.Installer(testenv.Schematic, v))
		}
	})
	return (&testenv.Registry{Host: registryHost}).InstallerTemplate(testenv.Schematic)
}

// talosClusterEndpoints is talosCluster with a talosconfig of n endpoints
// (the control-plane nodes' apids), each of which a test can stop.
func talosClusterEndpoints(t *testing.T, dir string, nodes []e2eNode, n int) (*testenv.TalosAPI, string, []*testenv.Endpoint) {
	t.Helper()
	ctx := context.Background()
	k := testenv.NewKubelets(env.Client, "none")
	t.Cleanup(k.Close)
	ta := testenv.NewTalosAPI()
	cp := map[string]bool{}
	var names []string
	for _, n := range nodes {
		ta.Add(n.ip, n.name, n.talos, n.member)
		// Installed from the tests' registry, as from Image Factory.
		ta.SetImage(n.ip, strings.ReplaceAll(installerImage(t), "{version}", n.talos))
		if n.member != 0 {
			if len(cp) == 0 {
				ta.SetLeader(n.member)
			}
			cp[n.name] = true
		}
		if err := k.AddNode(ctx, testenv.NodeSpec{Name: n.name, ControlPlane: cp[n.name], Talos: n.talos, Kubelet: "v1.34.1"}); err != nil {
			t.Fatal(err)
		}
		names = append(names, n.name)
	}
	t.Cleanup(func() { env.DeleteNodes(names...) })
	ta.OnBoot = func(_, name, v string) {
		_ = k.AddNode(context.Background(), testenv.NodeSpec{Name: name, ControlPlane: cp[name], Talos: v, Kubelet: "v1.34.1"})
	}
	talosconfig := filepath.Join(dir, "talosconfig")
	cfg, eps := ta.ServeEndpoints(t, n)
	write(t, talosconfig, string(cfg))
	return ta, talosconfig, eps
}

// signalCluster is a 4-node pets cluster (one control plane, three
// workers) behind a Talos API, with its configuration, for the tests that
// stop a real run in the middle.
func signalCluster(t *testing.T, prefix string, ip int) (dir, cfg string, names []string, talosconfig string) {
	t.Helper()
	dir = t.TempDir()
	var nodes []e2eNode
	var inv strings.Builder
	for i, role := range []string{"controlplane", "worker", "worker", "worker"} {
		name := fmt.Sprintf("%s-%d", prefix, i)
		addr := fmt.Sprintf("127.0.0.%d", ip+i)
		member := uint64(0)
		if role == "controlplane" {
			member = uint64(ip*10 + i + 1)
		}
		nodes = append(nodes, e2eNode{name, addr, "v1.13.0", member})
		names = append(names, name)
		fmt.Fprintf(&inv, "  - {name: %s, role: %s, ip: %s, proxmoxHost: h%d, vmId: %d}\n", name, role, addr, i, i+1)
	}
	_, talosconfig = talosCluster(t, dir, nodes)
	cfg = filepath.Join(dir, "drover.yaml")
	write(t, cfg, "cluster: {name: "+prefix+"}\nnodes:\n"+inv.String()+`talos:
  installerImage: `+installerImage(t)+`
  etcdSnapshotDir: `+filepath.Join(dir, "snapshots")+`
rollout: {controlPlaneSoak: 1s, workerSoak: 1s, healthInterval: 1s, readyTimeout: 1m}
health: {disable: [DNS Resolution, Network Connectivity]}
`)
	return dir, cfg, names, talosconfig
}

// TestLosingTheRunLockStopsTheRun: another holder takes the run lock's
// Lease in the middle of a real run; drover finishes the atomic step it is
// in, leaves the node uncordoned, journals the stop and exits 4, naming the
// new holder.
func TestLosingTheRunLockStopsTheRun(t *testing.T) {
	testenv.Require(t, env)
	ctx := context.Background()
	dir, cfg, names, talosconfig := signalCluster(t, "lost", 110)
	journalPath := filepath.Join(dir, "journal.jsonl")
	done := make(chan result, 1)
	go func() {
		done <- drover(t, "upgrade", "--config", cfg, "--kubeconfig", env.Kubeconfig, "--talosconfig", talosconfig,
			"--to-talos", "v1.13.1", "--yes", "--journal", journalPath, "--lock-namespace", "drover-lost", "--lock-ttl", "3s",
			"--report", filepath.Join(dir, "report.json"))
	}()
	testenv.Eventually(t, 60*time.Second, "the first worker to start", func() (bool, error) {
		data, _ := os.ReadFile(journalPath)
		return strings.Contains(string(data), `"node":"lost-1"`), nil
	})
	err := retryOnConflict(func() error {
		l, err := env.Client.CoordinationV1().Leases("drover-lost").Get(ctx, "drover-upgrade", metav1.GetOptions{})
		if err != nil {
			return err
		}
		l.Spec.HolderIdentity = ptr.To("runner=thief run=other")
		_, err = env.Client.CoordinationV1().Leases("drover-lost").Update(ctx, l, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(90 * time.Second):
		t.Fatal("drover did not stop after losing its lock")
	}
	if r.code != ExitBlocked || !strings.Contains(r.stderr, "run lock lost") || !strings.Contains(r.stderr, "runner=thief") {
		t.Fatalf("exit %d, want 4 naming the new holder:\n%s", r.code, lastLines(r.stderr, 15))
	}
	data, _ := os.ReadFile(journalPath)
	if !strings.Contains(string(data), `"status":"interrupted"`) || !strings.Contains(string(data), "run lock lost") {
		t.Fatalf("the journal does not record the stop:\n%s", data)
	}
	for _, n := range names {
		if node, err := env.Client.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{}); err == nil && node.Spec.Unschedulable {
			t.Errorf("%s was left cordoned", n)
		}
	}
	// The thief's Lease stays: drover never deletes a lock it lost.
	if l, err := env.Client.CoordinationV1().Leases("drover-lost").Get(ctx, "drover-upgrade", metav1.GetOptions{}); err != nil || *l.Spec.HolderIdentity != "runner=thief run=other" {
		t.Fatalf("the new holder's lease: %v", err)
	}
}

// TestASecondSignalStopsAtOnce: SIGTERM, then SIGTERM again before the
// atomic step ends: drover exits 130 at once, saying where each node stood.
func TestASecondSignalStopsAtOnce(t *testing.T) {
	testenv.Require(t, env)
	dir, cfg, _, talosconfig := signalCluster(t, "twice", 120)
	bin := droverBinary(t)
	journalPath := filepath.Join(dir, "journal.jsonl")
	cmd := exec.Command(bin, "upgrade", "--config", cfg, "--kubeconfig", env.Kubeconfig, "--talosconfig", talosconfig,
		"--to-talos", "v1.13.1", "--yes", "--journal", journalPath, "--lock-namespace", "drover-twice")
	cmd.Env = append(os.Environ(), "KUBECONFIG=", "TALOSCONFIG=")
	cmd.Dir = dir
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 60*time.Second, "the first worker's upgrade to start", func() (bool, error) {
		data, _ := os.ReadFile(journalPath)
		return strings.Contains(string(data), `"node":"twice-1","step":"upgrade","status":"started"`), nil
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The second signal once the first is taken (signals are not queued).
	testenv.Eventually(t, 10*time.Second, "drover to take the first signal", func() (bool, error) {
		return strings.Contains(out.String(), "signal again to stop at once"), nil
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != ExitInterrupted {
		t.Fatalf("exit %v, want 130\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "stopping at once. Where the run stood:") || !strings.Contains(out.String(), "twice-1: upgrade started") {
		t.Fatalf("drover did not say where it stopped:\n%s", lastLines(out.String(), 8))
	}
}

// lockedBuffer is a buffer a child process writes while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func retryOnConflict(fn func() error) error {
	var err error
	for range 5 {
		if err = fn(); !apierrors.IsConflict(err) {
			return err
		}
	}
	return err
}

// TestANodeThatLosesANICIsRolledBack: a real pets run where a worker comes
// back from its upgrade without its second NIC (the Talos API no longer
// lists it): its identity check fails, it is rolled back, the run halts.
func TestANodeThatLosesANICIsRolledBack(t *testing.T) {
	testenv.Require(t, env)
	dir := t.TempDir()
	ta, talosconfig := talosCluster(t, dir, []e2eNode{
		{"nic-cp-1", "127.0.0.131", "v1.13.0", 1310}, {"nic-w-1", "127.0.0.132", "v1.13.0", 0},
	})
	both := []testenv.Link{{Name: "eth0", MAC: "bc:24:11:00:00:01", Addresses: []string{"127.0.0.132/24"}}, {Name: "eth1", MAC: "bc:24:11:00:00:02", Addresses: []string{"192.168.62.2/24"}}}
	ta.SetLinks("127.0.0.132", both)
	boot := ta.OnBoot
	ta.OnBoot = func(ip, name, v string) {
		if name == "nic-w-1" && v == "v1.13.1" {
			ta.SetLinks(ip, both[:1]) // eth1 did not come back
		} else if name == "nic-w-1" {
			ta.SetLinks(ip, both)
		}
		boot(ip, name, v)
	}
	cfg := filepath.Join(dir, "drover.yaml")
	write(t, cfg, `cluster: {name: nic}
nodes:
  - {name: nic-cp-1, role: controlplane, ip: 127.0.0.131, proxmoxHost: a, vmId: 1}
  - {name: nic-w-1, role: worker, ip: 127.0.0.132, proxmoxHost: b, vmId: 2}
talos:
  installerImage: `+installerImage(t)+`
  etcdSnapshotDir: `+filepath.Join(dir, "snapshots")+`
rollout: {controlPlaneSoak: 1s, workerSoak: 1s, healthInterval: 1s, readyTimeout: 1m, healthAttempts: 2}
health: {disable: [DNS Resolution, Network Connectivity]}
`)
	r := drover(t, "upgrade", "--config", cfg, "--kubeconfig", env.Kubeconfig, "--talosconfig", talosconfig,
		"--to-talos", "v1.13.1", "--yes", "--output", "json", "--journal", filepath.Join(dir, "j.jsonl"), "--report", filepath.Join(dir, "r.json"))
	if r.code != ExitHalted {
		t.Fatalf("exit %d, want 1\n%s", r.code, lastLines(r.stderr, 20))
	}
	rep := decodeReport(t, r)
	var w reportNode
	for _, n := range rep.Nodes {
		if n.Name == "nic-w-1" {
			w = n
		}
	}
	if w.Outcome != "rolled-back" || len(w.FailedChecks) != 1 || w.FailedChecks[0] != "Node Readiness" {
		t.Fatalf("nic-w-1: %+v", w)
	}
	if !strings.Contains(r.stdout, "node nic-w-1: link eth1 (bc:24:11:00:00:02) is gone") {
		t.Fatalf("the report does not name the lost link:\n%s", r.stdout)
	}
	if v := ta.NodeVersion("127.0.0.132"); v != "v1.13.0" {
		t.Fatalf("nic-w-1 runs %s after its rollback", v)
	}
}

// TestARealRunAsTheRunnersServiceAccount: the kit's rbac.yaml applied to
// the real API server; a full real pets upgrade runs authenticated as the
// runner's ServiceAccount, with POD_NAMESPACE set as in the runner pod: the
// lock, the ConfigMap journal and every probe (DNS, network, scheduling)
// go to that namespace, which enforces Pod Security "restricted" as the
// README advises. Any 403 fails the run, and the test. drover access then
// confirms, as that account, every permission it checks is held.
func TestARealRunAsTheRunnersServiceAccount(t *testing.T) {
	testenv.Require(t, env)
	ctx := context.Background()
	env.Apply(t, "../../deploy/kubernetes/apps/github-actions/runners/rbac.yaml")
	restricted(t, "github-actions")
	kubeconfig := env.ServiceAccountKubeconfig(t, "github-actions", "github-actions-runner")
	dir := t.TempDir()
	_, talosconfig := talosCluster(t, dir, []e2eNode{
		{"sa-cp-1", "127.0.0.141", "v1.13.0", 1410}, {"sa-w-1", "127.0.0.142", "v1.13.0", 0}, {"sa-w-2", "127.0.0.143", "v1.13.0", 0},
	})
	// CoreDNS on a node of its own (outside the inventory), behind kube-dns,
	// so the DNS and network probes have something to reach.
	dnsNodes := testenv.NewKubelets(env.Client, "kube-system")
	t.Cleanup(dnsNodes.Close)
	if err := dnsNodes.AddNode(ctx, testenv.NodeSpec{Name: "sa-dns-1", Talos: "v1.13.0", Kubelet: "v1.34.1"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.DeleteNodes("sa-dns-1") })
	coreDNS(t, "sa-dns-1")
	cfg := filepath.Join(dir, "drover.yaml")
	write(t, cfg, `cluster: {name: sa}
nodes:
  - {name: sa-cp-1, role: controlplane, ip: 127.0.0.141, proxmoxHost: a, vmId: 1}
  - {name: sa-w-1, role: worker, ip: 127.0.0.142, proxmoxHost: b, vmId: 2}
  - {name: sa-w-2, role: worker, ip: 127.0.0.143, proxmoxHost: c, vmId: 3}
talos:
  installerImage: `+installerImage(t)+`
  etcdSnapshotDir: `+filepath.Join(dir, "snapshots")+`
rollout: {controlPlaneSoak: 1s, workerSoak: 1s, healthInterval: 1s, readyTimeout: 1m, maxParallelWorkers: 2}
health: {checkTimeout: 20s}
`)
	var out, errb bytes.Buffer
	s := testStreams(t, &out, &errb)
	s.Getenv = func(k string) string {
		return map[string]string{"POD_NAMESPACE": "github-actions"}[k]
	}
	// While drover works on a node, the node carries the run's id.
	var marked sync.Map
	watchCtx, stopWatch := context.WithCancel(ctx)
	go func() {
		for watchCtx.Err() == nil {
			for _, n := range []string{"sa-cp-1", "sa-w-1", "sa-w-2"} {
				if node, err := env.Client.CoreV1().Nodes().Get(watchCtx, n, metav1.GetOptions{}); err == nil && node.Annotations[kube.RunAnnotation] != "" {
					marked.Store(n, node.Annotations[kube.RunAnnotation])
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	code := Run(ctx, s, []string{"upgrade", "--config", cfg, "--kubeconfig", kubeconfig, "--talosconfig", talosconfig,
		"--to-talos", "v1.13.1", "--yes", "--journal", "configmap", "--report", filepath.Join(dir, "r.json")})
	stopWatch()
	if code != ExitOK || strings.Contains(errb.String()+out.String(), "forbidden") {
		t.Fatalf("exit %d as the runner's ServiceAccount:\n%s", code, lastLines(errb.String(), 30))
	}
	var rep struct {
		Nodes []struct {
			Name   string `json:"name"`
			Health struct {
				Checks []struct {
					Name            string
					Passed, Skipped bool
				} `json:"checks"`
			} `json:"health"`
		} `json:"nodes"`
	}
	data, _ := os.ReadFile(filepath.Join(dir, "r.json"))
	if err := json.Unmarshal(data, &rep); err != nil || len(rep.Nodes) != 3 {
		t.Fatalf("report: %v\n%s", err, data)
	}
	for _, n := range rep.Nodes {
		ran := 0
		for _, c := range n.Health.Checks {
			if (c.Name == "DNS Resolution" || c.Name == "Network Connectivity" || c.Name == "Scheduling") && c.Passed && !c.Skipped {
				ran++
			}
		}
		if ran != 3 {
			t.Errorf("%s: %d of the DNS, network and scheduling probes ran and passed: %+v", n.Name, ran, n.Health.Checks)
		}
	}
	if chunks, err := env.Client.CoreV1().ConfigMaps("github-actions").List(ctx, metav1.ListOptions{LabelSelector: journal.LabelJournal + "=drover-journal"}); err != nil || len(chunks.Items) == 0 {
		t.Fatalf("the journal is not in the runner's namespace: %v", err)
	}
	// Each step is an Event on its Node, reported by drover; the mark is
	// gone once the node is done.
	evs, err := env.Client.EventsV1().Events("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string][]string{}
	for _, e := range evs.Items {
		if e.ReportingController == "drover" && e.Regarding.Kind == "Node" {
			reasons[e.Regarding.Name] = append(reasons[e.Regarding.Name], e.Reason)
		}
	}
	for _, n := range []string{"sa-cp-1", "sa-w-1", "sa-w-2"} {
		got := strings.Join(reasons[n], " ")
		for _, want := range []string{"Cordoned", "Draining", "Upgrading", "Uncordoned", "HealthPassed", "Upgraded"} {
			if !strings.Contains(got, want) {
				t.Errorf("%s: events %q lack %s", n, got, want)
			}
		}
		if v, ok := marked.Load(n); !ok || !strings.HasPrefix(v.(string), "2") {
			t.Errorf("%s never carried the run annotation (%v)", n, v)
		}
		node, err := env.Client.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
		if err != nil || node.Annotations[kube.RunAnnotation] != "" {
			t.Errorf("%s still carries the run annotation: %v", n, err)
		}
	}
	r := drover(t, "access", "--kubeconfig", kubeconfig, "--namespace", "github-actions", "--talosconfig", talosconfig)
	if r.code != ExitOK || !strings.Contains(r.stdout, "system:serviceaccount:github-actions:github-actions-runner") || strings.Contains(r.stdout, " NO ") ||
		!strings.Contains(r.stdout, "from --talosconfig") {
		t.Fatalf("drover access as the runner: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// Without a talosconfig (no TALOSCONFIG, no Talos ServiceAccount mount:
	// kubernetesTalosAPIAccess not enabled), a run could not reach Talos.
	if r := drover(t, "access", "--kubeconfig", kubeconfig, "--namespace", "github-actions"); r.code != ExitBlocked ||
		!strings.Contains(r.stdout, "kubernetesTalosAPIAccess") || !strings.Contains(r.stderr, "a talosconfig (Talos API)") {
		t.Fatalf("drover access without a talosconfig: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// And a ServiceAccount without the kit's RBAC lacks them, named.
	nobody := env.ServiceAccountKubeconfig(t, "github-actions", "nobody")
	if r := drover(t, "access", "--kubeconfig", nobody, "--namespace", "github-actions"); r.code != ExitBlocked || !strings.Contains(r.stderr, "patch nodes (cluster)") {
		t.Fatalf("drover access without the RBAC: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// coreDNS runs one CoreDNS pod on node behind the kube-dns Service.
func coreDNS(t *testing.T, node string) {
	t.Helper()
	ctx := context.Background()
	labels := map[string]string{"k8s-app": "kube-dns", "app": "coredns-" + node}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "coredns-" + node, Namespace: "kube-system"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(1)), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				NodeSelector: map[string]string{"kubernetes.io/hostname": node},
				Containers:   []corev1.Container{{Name: "coredns", Image: "registry.example/coredns:1"}},
			}},
		},
	}
	if _, err := env.Client.AppsV1().Deployments("kube-system").Create(ctx, d, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Client.AppsV1().Deployments("kube-system").Delete(context.Background(), d.Name, metav1.DeleteOptions{})
	})
	if _, err := env.Client.CoreV1().Services("kube-system").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-dns", Labels: labels},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"k8s-app": "kube-dns"}, Ports: []corev1.ServicePort{{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}}},
	}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	env.WaitReplicas(t, "kube-system", d.Name, 1)
}

// TestSnapshotsAreUploadedToS3: with talos.etcdSnapshotUpload, the etcd
// snapshot taken before the control-plane node is in a real S3 bucket
// (MinIO) when the run ends, and the report says where.
func TestSnapshotsAreUploadedToS3(t *testing.T) {
	testenv.Require(t, env)
	s3 := testenv.StartMinIO(t, "prox-ops-state")
	dir := t.TempDir()
	_, talosconfig := talosCluster(t, dir, []e2eNode{
		{"s3-cp-1", "127.0.0.151", "v1.13.0", 1510}, {"s3-w-1", "127.0.0.152", "v1.13.0", 0},
	})
	cfg := filepath.Join(dir, "drover.yaml")
	write(t, cfg, `cluster: {name: s3}
nodes:
  - {name: s3-cp-1, role: controlplane, ip: 127.0.0.151, proxmoxHost: a, vmId: 1}
  - {name: s3-w-1, role: worker, ip: 127.0.0.152, proxmoxHost: b, vmId: 2}
talos:
  installerImage: `+installerImage(t)+`
  etcdSnapshotDir: `+filepath.Join(dir, "snapshots")+`
  etcdSnapshotUpload: {url: "s3://prox-ops-state/etcd-snapshots/", endpoint: "`+s3.Endpoint+`", pathStyle: true}
rollout: {controlPlaneSoak: 1s, workerSoak: 1s, healthInterval: 1s, readyTimeout: 1m}
health: {disable: [DNS Resolution, Network Connectivity]}
`)
	var out, errb bytes.Buffer
	s := testStreams(t, &out, &errb)
	s.Getenv = func(k string) string {
		return map[string]string{"AWS_ACCESS_KEY_ID": s3.AccessKey, "AWS_SECRET_ACCESS_KEY": s3.SecretKey}[k]
	}
	code := Run(context.Background(), s, []string{"upgrade", "--config", cfg, "--kubeconfig", env.Kubeconfig, "--talosconfig", talosconfig,
		"--to-talos", "v1.13.1", "--yes", "--output", "json", "--journal", filepath.Join(dir, "j.jsonl")})
	if code != ExitOK {
		t.Fatalf("exit %d\n%s", code, lastLines(errb.String(), 20))
	}
	var rep struct {
		Nodes []struct {
			Name, EtcdSnapshot, EtcdSnapshotURL string
		} `json:"nodes"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	var url, local string
	for _, n := range rep.Nodes {
		if n.Name == "s3-cp-1" {
			url, local = n.EtcdSnapshotURL, n.EtcdSnapshot
		}
	}
	key, ok := strings.CutPrefix(url, "s3://prox-ops-state/")
	if !ok || !strings.HasPrefix(key, "etcd-snapshots/etcd-") {
		t.Fatalf("report: snapshot %q uploaded to %q", local, url)
	}
	st, err := s3.Client(t).StatObject(context.Background(), "prox-ops-state", key, minio.StatObjectOptions{})
	fi, ferr := os.Stat(local)
	if err != nil || ferr != nil || st.Size != fi.Size() || st.Size == 0 {
		t.Fatalf("the bucket's object: %v %v (%d bytes, local %v)", err, ferr, st.Size, fi)
	}
	if !strings.Contains(errb.String(), "etcd snapshot uploaded to "+url) {
		t.Errorf("the console does not say where the snapshot went:\n%s", lastLines(errb.String(), 30))
	}
}

// TestAKilledCattleRunResumesAndBreaksItsOwnLock: the state is in a real
// S3 bucket (MinIO) with use_lockfile. drover is killed outright, with its
// Terraform, while Terraform creates the worker's VM (what the runner
// does 10 s after a cancel): the lock stays in the bucket. The resume
// finds in its journal that the lock is its own dead run's, breaks it
// (only that one), and finishes.
func TestAKilledCattleRunResumesAndBreaksItsOwnLock(t *testing.T) {
	testenv.Require(t, env)
	tf := tfBinary(t)
	s3 := testenv.StartMinIO(t, "kr-tfstate")
	bin := droverBinary(t)
	ctx := context.Background()
	dir, tfDir, vmDir := t.TempDir(), t.TempDir(), t.TempDir()
	if err := os.CopyFS(tfDir, os.DirFS("../terraform/testdata/prox-ops")); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(tfDir, "backend_override.tf"), "terraform {\n  backend \"s3\" {}\n}\n")
	backend := map[string]string{
		"bucket": "kr-tfstate", "key": "prox-ops/terraform.tfstate", "region": "us-east-1", "use_lockfile": "true", "use_path_style": "true",
		"skip_credentials_validation": "true", "skip_requesting_account_id": "true", "skip_metadata_api_check": "true", "skip_region_validation": "true",
	}
	envv := append(os.Environ(), "KUBECONFIG=", "TALOSCONFIG=", "AWS_ACCESS_KEY_ID="+s3.AccessKey, "AWS_SECRET_ACCESS_KEY="+s3.SecretKey,
		"AWS_ENDPOINT_URL_S3="+s3.Endpoint, "TF_VAR_vm_dir="+vmDir, `TF_VAR_nodes={"kr-ctrl-1"={vm_id=8001,host="baldar"},"kr-work-1"={vm_id=8101,host="heimdall"}}`)
	ta := testenv.NewTalosAPI()
	ta.Add("127.0.0.161", "kr-ctrl-1", "v1.11.3", 1610)
	ta.SetLeader(1610)
	k := testenv.NewKubelets(env.Client, "none")
	t.Cleanup(k.Close)
	members := uint64(1610)
	testenv.WatchVMs(t, vmDir, k, func(name, _ string) {
		if name == "kr-ctrl-1" {
			members++
			ta.SetMember("127.0.0.161", members)
		}
	})
	t.Cleanup(func() { env.DeleteNodes("kr-ctrl-1", "kr-work-1") })
	initArgs := []string{"init", "-input=false"}
	var backendYAML strings.Builder
	for k, v := range backend {
		initArgs = append(initArgs, "-backend-config="+k+"="+v)
		fmt.Fprintf(&backendYAML, "    %s: %q\n", k, v)
	}
	for _, args := range [][]string{initArgs, {"apply", "-auto-approve", "-input=false", "-var", "talos_version=v1.11.3"}} {
		cmd := exec.Command(tf, args...)
		cmd.Dir, cmd.Env = tfDir, envv
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	env.WaitSchedulable(t, "kr-ctrl-1", "kr-work-1")
	talosconfig := filepath.Join(dir, "talosconfig")
	write(t, talosconfig, string(ta.Serve(t)))
	cfg := filepath.Join(dir, "drover.yaml")
	write(t, cfg, `cluster: {name: kr}
nodes:
  - {name: kr-ctrl-1, role: controlplane, ip: 127.0.0.161, proxmoxHost: baldar, vmId: 8001}
  - {name: kr-work-1, role: worker, ip: 127.0.0.162, proxmoxHost: heimdall, vmId: 8101}
talos:
  etcdSnapshotDir: `+filepath.Join(dir, "snapshots")+`
terraform:
  binary: `+tf+`
  workingDir: `+tfDir+`
  backendConfig:
`+backendYAML.String()+`rollout: {controlPlaneSoak: 1s, workerSoak: 1s, healthInterval: 1s, readyTimeout: 1m}
health: {disable: [DNS Resolution, Network Connectivity]}
`)
	journalPath := filepath.Join(dir, "journal.jsonl")
	args := []string{"upgrade", "--config", cfg, "--kubeconfig", env.Kubeconfig, "--talosconfig", talosconfig,
		"--from-talos", "v1.11.3", "--to-talos", "v1.12.0", "--yes", "--journal", journalPath, "--lock-namespace", "drover-kr", "--lock-ttl", "3s"}
	cmd := exec.Command(bin, args...)
	cmd.Dir, cmd.Env = dir, append(envv, "DROVER_FIXTURE_CLONE_SECONDS=120", "DROVER_FIXTURE_SLOW_NODE=kr-work-1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lockObject := func() bool {
		_, err := s3.Client(t).StatObject(ctx, "kr-tfstate", "prox-ops/terraform.tfstate.tflock", minio.StatObjectOptions{})
		return err == nil
	}
	testenv.Eventually(t, 90*time.Second, "Terraform to be creating the worker's VM", func() (bool, error) {
		data, _ := os.ReadFile(journalPath)
		return strings.Contains(string(data), `"node":"kr-work-1","step":"create","status":"started"`) && lockObject() &&
			strings.Contains(out.String(), "proxmox_virtual_environment_vm.vm: Creating..."), nil
	})
	// The runner kills the whole process tree.
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if !lockObject() {
		t.Fatalf("the killed run left no lock:\n%s", lastLines(out.String(), 20))
	}

	// The resume, once the dead run's lease has expired.
	var res []byte
	testenv.Eventually(t, 60*time.Second, "the resume to run", func() (bool, error) {
		c := exec.Command(bin, append(args, "--resume")...)
		c.Dir, c.Env = dir, envv
		var err error
		res, err = c.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == ExitBlocked && strings.Contains(string(res), "run lock") {
			return false, nil // the dead run's lease has not expired yet
		}
		if err != nil {
			return false, fmt.Errorf("resume: %w\n%s", err, lastLines(string(res), 30))
		}
		return true, nil
	})
	if !strings.Contains(string(res), "was left by this run's own apply") {
		t.Errorf("the resume does not say whose lock it broke:\n%s", lastLines(string(res), 30))
	}
	if lockObject() {
		t.Error("the lock is still in the bucket")
	}
	for _, n := range []string{"kr-ctrl-1", "kr-work-1"} {
		if data, _ := os.ReadFile(filepath.Join(vmDir, n+".vm")); string(data) != "v1.12.0 v1.34.1" {
			t.Errorf("VM %s is %q", n, data)
		}
	}
	data, _ := os.ReadFile(journalPath)
	if !strings.Contains(string(data), `"step":"terraform","status":"unlocked"`) {
		t.Errorf("the journal does not record the broken lock")
	}
}
