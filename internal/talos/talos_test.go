package talos

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/minio/minio-go/v7"
	"github.com/siderolabs/talos/pkg/machinery/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/journal"
	"github.com/prox-ops/drover/internal/objstore"
	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/testenv"
	"github.com/prox-ops/drover/internal/version"
)

const schematic = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"

var talosCfg = config.Talos{InstallerImage: "factory.talos.dev/nocloud-installer/" + schematic + ":{version}"}

var cps = []config.Node{
	{Name: "cp-1", Role: config.RoleControlPlane, IP: "127.0.0.11"},
	{Name: "cp-2", Role: config.RoleControlPlane, IP: "127.0.0.12"},
	{Name: "cp-3", Role: config.RoleControlPlane, IP: "127.0.0.13"},
}

type logBuf struct {
	mu    sync.Mutex
	lines []string
}

func (l *logBuf) log(node, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, node+": "+msg)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// connect serves f and returns a real machinery client through a
// talosconfig file, as drover uses it.
func connect(t *testing.T, f *testenv.TalosAPI) (*API, *logBuf) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "talosconfig")
	if err := os.WriteFile(path, f.Serve(t), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(context.Background(), path, Bounds{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	logs := &logBuf{}
	return &API{Client: c, Clock: clock.Real{}, Talos: talosCfg, RebootTimeout: 15 * time.Second, PollInterval: 50 * time.Millisecond, Log: logs.log}, logs
}

func pn(n config.Node, from string) plan.Node {
	return plan.Node{Node: n, From: version.Pair{Talos: version.MustParse(from)}}
}

func pair(v string) version.Pair { return version.Pair{Talos: version.MustParse(v)} }

func TestUpgradePaths(t *testing.T) {
	tests := []struct {
		name, from, to string
		wantCalls      []string
		wantNot        string
		wantLog        string
	}{
		{"Talos 1.13 takes the lifecycle path", "v1.13.0", "v1.13.1", []string{"ImagePull", "LifecycleUpgrade", "Reboot"}, "LegacyUpgrade", "LifecycleService"},
		{"Talos 1.12 takes the legacy path", "v1.12.2", "v1.12.3", []string{"LegacyUpgrade"}, "LifecycleUpgrade", "legacy MachineService"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := testenv.NewTalosAPI()
			f.Add("127.0.0.21", "w-1", tc.from, 0)
			f.Add("127.0.0.22", "w-2", tc.from, 0)
			api, logs := connect(t, f)
			n := config.Node{Name: "w-1", Role: config.RoleWorker, IP: "127.0.0.21"}
			if err := api.Upgrade(context.Background(), pn(n, tc.from), pair(tc.to)); err != nil {
				t.Fatal(err)
			}
			for _, m := range tc.wantCalls {
				if got := f.CallsOf(m); len(got) != 1 || got[0] != "127.0.0.21" {
					t.Errorf("%s calls %v, want one to w-1", m, got)
				}
			}
			if got := f.CallsOf(tc.wantNot); len(got) != 0 {
				t.Errorf("%s was called: %v", tc.wantNot, got)
			}
			v, err := api.NodeVersion(context.Background(), n)
			if err != nil || v.String() != tc.to {
				t.Fatalf("w-1 answers %s, %v; want %s", v, err, tc.to)
			}
			if other, _ := api.NodeVersion(context.Background(), config.Node{Name: "w-2", IP: "127.0.0.22"}); other.String() != tc.from {
				t.Fatalf("w-2 was upgraded too: %s", other)
			}
			if !strings.Contains(logs.String(), tc.wantLog) || !strings.Contains(logs.String(), "installer image factory.talos.dev/nocloud-installer/"+schematic+":"+tc.to) {
				t.Errorf("log does not say which path ran and what the image is:\n%s", logs)
			}
			if len(f.CallsOf("Version")) < 2 {
				t.Error("the upgrade did not wait for the node to answer at its new version")
			}
		})
	}
}

// stubCluster is the engine's Kubernetes side for these tests: every node
// is always there and Ready (the Kubernetes side is proven elsewhere).
type stubCluster struct{}

func (stubCluster) Identity(context.Context, string) (rollout.Identity, error) {
	return rollout.Identity{Ready: true, UID: "u"}, nil
}
func (stubCluster) Cordon(context.Context, string) error                             { return nil }
func (stubCluster) Uncordon(context.Context, string) error                           { return nil }
func (stubCluster) Drain(context.Context, string, time.Duration, func(string)) error { return nil }
func (stubCluster) DeleteNode(context.Context, string) error                         { return nil }
func (stubCluster) WaitReady(context.Context, string, rollout.ReadyWant, time.Duration) (rollout.Identity, error) {
	return rollout.Identity{Ready: true}, nil
}

type passGate struct{}

func (passGate) Check(context.Context, rollout.GateInput) rollout.HealthResult {
	return rollout.HealthResult{Checks: []rollout.CheckResult{{Name: "stub", Passed: true}}}
}

func engine(api *API, guard *Guard) *rollout.Engine {
	e := &rollout.Engine{Cluster: stubCluster{}, Upgrader: api, Health: passGate{}, Journal: &journal.Memory{}, Clock: clock.Real{}, RunID: "t",
		Policy: rollout.Policy{DrainTimeout: time.Second, ReadyTimeout: time.Second, HealthTimeout: time.Second, HealthAttempts: 1, HealthInterval: 10 * time.Millisecond}}
	if guard != nil {
		e.Guard = guard
		e.Preflights = []rollout.Preflight{guard}
	}
	return e
}

func TestFailedUpgradeStreamIsRolledBack(t *testing.T) {
	f := testenv.NewTalosAPI()
	f.Add("127.0.0.21", "w-1", "v1.13.0", 0)
	f.SetExitCode("v1.13.1", 1)
	api, _ := connect(t, f)
	n := config.Node{Name: "w-1", Role: config.RoleWorker, IP: "127.0.0.21"}
	p := plan.Build(plan.Input{Nodes: []config.Node{n}, Strategy: version.Pets, From: pair("v1.13.0"), To: pair("v1.13.1"), MaxParallelWorkers: 1})
	rep, err := engine(api, nil).Run(context.Background(), p)
	var halt *rollout.HaltError
	if !errors.As(err, &halt) || !strings.Contains(err.Error(), "exited with code 1") {
		t.Fatalf("err = %v, want a halt naming the exit code", err)
	}
	if got := rep.Node("w-1").Outcome; got != rollout.OutcomeRolledBack {
		t.Fatalf("outcome %s", got)
	}
	if v, _ := api.NodeVersion(context.Background(), n); v.String() != "v1.13.0" {
		t.Fatalf("w-1 at %s after the rollback", v)
	}
	if got := f.CallsOf("LifecycleUpgrade"); len(got) != 2 {
		t.Fatalf("lifecycle upgrade calls %v: want the failed one and the rollback", got)
	}
}

func TestUpgradeErrors(t *testing.T) {
	f := testenv.NewTalosAPI()
	f.Add("127.0.0.21", "w-1", "v1.13.0", 0)
	f.Fail("ImagePull", status.Error(codes.NotFound, "image not found in the factory"))
	api, _ := connect(t, f)
	n := config.Node{Name: "w-1", IP: "127.0.0.21"}
	if err := api.Upgrade(context.Background(), pn(n, "v1.13.0"), pair("v1.13.1")); err == nil || !strings.Contains(err.Error(), "image not found") {
		t.Fatalf("err = %v", err)
	}
	if got := f.CallsOf("LifecycleUpgrade"); len(got) != 0 {
		t.Fatal("upgraded although the image pull failed")
	}
	bad := *api
	bad.Talos = config.Talos{InstallerImage: "factory.talos.dev/nocloud-installer/not-a-schematic:{version}"}
	if err := bad.Upgrade(context.Background(), pn(n, "v1.13.0"), pair("v1.13.1")); err == nil || !strings.Contains(err.Error(), "64-hex schematic") {
		t.Fatalf("bad schematic: %v", err)
	}
}

func newGuard(api *API, dir string) *Guard {
	return &Guard{Etcd: Etcd{API: api}, ControlPlane: cps, Clock: clock.Real{}, SnapshotDir: dir, Keep: 2, Timeout: 2 * time.Second, PollInterval: 50 * time.Millisecond, Log: api.Log}
}

func etcdCluster(f *testenv.TalosAPI) {
	for i, n := range cps {
		f.Add(n.IP, n.Name, "v1.13.0", uint64(101+i))
	}
	f.SetLeader(102) // cp-2 leads
}

func TestUnhealthyEtcdBlocksBeforeAnyChange(t *testing.T) {
	tests := []struct {
		name    string
		breakIt func(f *testenv.TalosAPI)
		want    string
	}{
		{"a member reports errors", func(f *testenv.TalosAPI) { f.SetEtcdErrors("127.0.0.13", "etcdserver: no leader") }, "no leader"},
		{"a member is missing", func(f *testenv.TalosAPI) { f.SetMember("127.0.0.13", 0) }, "2 members"},
		{"a node does not answer", func(f *testenv.TalosAPI) { f.Fail("EtcdStatus 127.0.0.12", status.Error(codes.Unavailable, "down")) }, "down"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := testenv.NewTalosAPI()
			etcdCluster(f)
			tc.breakIt(f)
			api, _ := connect(t, f)
			p := plan.Build(plan.Input{Nodes: cps, Strategy: version.Pets, From: pair("v1.13.0"), To: pair("v1.13.1"), MaxParallelWorkers: 1})
			rep, err := engine(api, newGuard(api, t.TempDir())).Run(context.Background(), p)
			var blocked *rollout.BlockedError
			var unhealthy *EtcdUnhealthyError
			if !errors.As(err, &blocked) || !errors.As(err, &unhealthy) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want a block naming %q", err, tc.want)
			}
			if rep.Result != rollout.ResultBlocked || len(f.CallsOf("LifecycleUpgrade")) != 0 || len(f.CallsOf("EtcdSnapshot")) != 0 {
				t.Fatalf("something changed: result %s, calls %v", rep.Result, f.Calls())
			}
		})
	}
}

func TestSnapshotIsWrittenAndRotated(t *testing.T) {
	f := testenv.NewTalosAPI()
	etcdCluster(f)
	api, logs := connect(t, f)
	dir := t.TempDir()
	g := newGuard(api, dir)
	v := clock.NewVirtual(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	g.Clock = v
	var paths []string
	for i := range 3 {
		snap, err := g.BeforeNode(context.Background(), pn(cps[0], "v1.13.0"))
		if err != nil {
			t.Fatal(err)
		}
		path := snap.Path
		data, err := os.ReadFile(path)
		if err != nil || !bytes.Contains(data, []byte("etcd-snapshot-chunk-2-from-cp-1")) {
			t.Fatalf("snapshot %d at %s: %q, %v", i, path, data, err)
		}
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
			t.Fatalf("snapshot mode %v", fi.Mode())
		}
		paths = append(paths, path)
		_ = v.Sleep(context.Background(), time.Minute)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(left) != 2 || left[0] != paths[1] || left[1] != paths[2] {
		t.Fatalf("kept %v, want the two newest of %v", left, paths)
	}
	if !strings.Contains(logs.String(), "etcd snapshot") {
		t.Errorf("log: %s", logs)
	}
}

// failingUpload is an uploader whose store refuses everything.
type failingUpload struct{ calls *int }

func (f failingUpload) Upload(context.Context, string) (string, error) {
	*f.calls++
	return "", errors.New("AccessDenied: the bucket refuses the upload")
}

// TestAFailedSnapshotUploadStopsTheNode: with talos.etcdSnapshotUpload
// set, a snapshot that cannot be uploaded fails the guard before the node
// is touched, leadership included. (The upload itself is tested against a
// real S3 server in internal/objstore and in the CLI's end-to-end run.)
func TestAFailedSnapshotUploadStopsTheNode(t *testing.T) {
	f := testenv.NewTalosAPI()
	etcdCluster(f)
	api, _ := connect(t, f)
	g := newGuard(api, t.TempDir())
	calls := 0
	g.Upload = failingUpload{&calls}
	snap, err := g.BeforeNode(context.Background(), pn(cps[1], "v1.13.0"))
	if err == nil || !strings.Contains(err.Error(), "upload the etcd snapshot") || calls != 1 {
		t.Fatalf("err = %v after %d uploads", err, calls)
	}
	if snap.Path == "" || snap.URL != "" {
		t.Fatalf("snapshot %+v", snap)
	}
	if got := f.CallsOf("EtcdForfeitLeadership"); len(got) != 0 {
		t.Fatalf("leadership moved after a failed upload: %v", got)
	}
}

func TestLeadershipForfeitedOnlyOnTheLeader(t *testing.T) {
	f := testenv.NewTalosAPI()
	etcdCluster(f)
	api, _ := connect(t, f)
	g := newGuard(api, t.TempDir())
	if _, err := g.BeforeNode(context.Background(), pn(cps[0], "v1.13.0")); err != nil {
		t.Fatal(err)
	}
	if got := f.CallsOf("EtcdForfeitLeadership"); len(got) != 0 {
		t.Fatalf("cp-1 is not the leader but forfeited: %v", got)
	}
	if _, err := g.BeforeNode(context.Background(), pn(cps[1], "v1.13.0")); err != nil {
		t.Fatal(err)
	}
	if got := f.CallsOf("EtcdForfeitLeadership"); len(got) != 1 || got[0] != "127.0.0.12" {
		t.Fatalf("forfeit calls %v, want one on cp-2", got)
	}
	if f.Leader() == 102 {
		t.Fatal("cp-2 still leads")
	}
}

func TestMemberLeavesBeforeDestroyAndComesBack(t *testing.T) {
	f := testenv.NewTalosAPI()
	etcdCluster(f)
	api, _ := connect(t, f)
	g := newGuard(api, t.TempDir())
	ctx := context.Background()
	if err := g.BeforeDestroy(ctx, pn(cps[2], "v1.13.0")); err != nil {
		t.Fatal(err)
	}
	if got := f.CallsOf("EtcdLeaveCluster"); len(got) != 1 || got[0] != "127.0.0.13" {
		t.Fatalf("leave calls %v", got)
	}
	// The member is gone, so the node must not count as back yet.
	err := g.AfterNode(ctx, pn(cps[2], "v1.13.0"))
	var te *clock.TimeoutError
	if !errors.As(err, &te) || !strings.Contains(te.Last, "2 members") {
		t.Fatalf("err = %v, want a timeout while a member is missing", err)
	}
	// The new VM joins: membership is whole again.
	f.SetMember("127.0.0.13", 201)
	if err := g.AfterNode(ctx, pn(cps[2], "v1.13.0")); err != nil {
		t.Fatal(err)
	}
}

func TestResolveTalosconfig(t *testing.T) {
	f := testenv.NewTalosAPI()
	f.Add("127.0.0.21", "w-1", "v1.13.0", 0)
	cfg := f.Serve(t)
	dir := t.TempDir()
	flagFile := filepath.Join(dir, "flag")
	envFile := filepath.Join(dir, "env")
	home := filepath.Join(dir, "home")
	inPod := filepath.Join(dir, "inpod")
	for _, p := range []string{flagFile, envFile, filepath.Join(home, ".talos", "config"), inPod} {
		_ = os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, cfg, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "TALOSCONFIG" {
				return v
			}
			return ""
		}
	}
	tests := []struct {
		name       string
		src        ConfigSource
		wantPath   string
		wantSource string
	}{
		{"flag first", ConfigSource{Flag: flagFile, Getenv: env(envFile), Home: home, InPod: inPod}, flagFile, "--talosconfig"},
		{"TALOSCONFIG as a path", ConfigSource{Getenv: env(envFile), Home: home, InPod: inPod}, envFile, "TALOSCONFIG="},
		{"home", ConfigSource{Getenv: env(""), Home: home, InPod: inPod}, filepath.Join(home, ".talos", "config"), ".talos/config"},
		{"in-pod mount last", ConfigSource{Getenv: env(""), Home: filepath.Join(dir, "nohome"), InPod: inPod}, inPod, "ServiceAccount"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := tc.src.Resolve()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Cleanup()
			if r.Path != tc.wantPath || !strings.Contains(r.Source, tc.wantSource) {
				t.Fatalf("got %s (%s)", r.Path, r.Source)
			}
		})
	}
	if _, err := (ConfigSource{Getenv: env(""), Home: filepath.Join(dir, "nohome"), InPod: filepath.Join(dir, "none")}).Resolve(); !errors.Is(err, ErrNoTalosconfig) {
		t.Fatalf("nothing: %v", err)
	}
}

// TestBase64Talosconfig: a TALOSCONFIG holding the file in base64 (as the
// GitHub secret does) is decoded into a 0600 temporary file that works,
// is removed afterwards, and whose content never shows in a message.
func TestBase64Talosconfig(t *testing.T) {
	f := testenv.NewTalosAPI()
	f.Add("127.0.0.21", "w-1", "v1.13.0", 0)
	cfg := f.Serve(t)
	const canary = "canary-talos-secret-7f3a"
	cfg = append(cfg, []byte("# "+canary+"\n")...)
	encoded := base64.StdEncoding.EncodeToString(cfg)
	tmp := t.TempDir()
	r, err := ConfigSource{Getenv: func(k string) string { return map[string]string{"TALOSCONFIG": encoded}[k] }, TempDir: tmp}.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(r.Path)
	if err != nil || fi.Mode().Perm() != 0o600 || filepath.Dir(r.Path) != tmp {
		t.Fatalf("decoded file %s: %v %v", r.Path, fi, err)
	}
	if strings.Contains(r.Source, canary) || strings.Contains(r.Source, encoded) {
		t.Fatal("the source description shows the secret")
	}
	c, err := client.New(context.Background(), client.WithConfigFromFile(r.Path))
	if err != nil {
		t.Fatal(err)
	}
	api := &API{Client: c, Clock: clock.Real{}, Talos: talosCfg}
	if v, err := api.NodeVersion(context.Background(), config.Node{Name: "w-1", IP: "127.0.0.21"}); err != nil || v.String() != "v1.13.0" {
		t.Fatalf("the decoded talosconfig does not work: %s %v", v, err)
	}
	_ = c.Close()
	r.Cleanup()
	if _, err := os.Stat(r.Path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the decoded talosconfig is still there: %v", err)
	}

	// Garbage that decodes but is no talosconfig: the error hides it.
	bad := base64.StdEncoding.EncodeToString([]byte("key: " + canary))
	_, err = ConfigSource{Getenv: func(k string) string { return map[string]string{"TALOSCONFIG": bad}[k] }, TempDir: tmp}.Resolve()
	if err == nil || strings.Contains(err.Error(), canary) || strings.Contains(err.Error(), bad) {
		t.Fatalf("err = %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "*")); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
}

func TestInstallerImage(t *testing.T) {
	if img, err := InstallerImage(talosCfg, version.MustParse("v1.13.1")); err != nil || img != "factory.talos.dev/nocloud-installer/"+schematic+":v1.13.1" {
		t.Fatalf("%s %v", img, err)
	}
	for _, bad := range []string{"", "ghcr.io/siderolabs/installer:{version}", "factory.talos.dev/nocloud-installer/ABC:{version}"} {
		if _, err := InstallerImage(config.Talos{InstallerImage: bad}, version.MustParse("v1.13.1")); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestLinksThroughTheTalosAPI: the real client lists the node's LinkStatus
// and AddressStatus resources over the COSI state API; drover keeps the
// physical links, with their hardware addresses and addresses.
func TestLinksThroughTheTalosAPI(t *testing.T) {
	f := testenv.NewTalosAPI()
	f.Add("127.0.0.5", "k8s-work-1", "v1.12.0", 0)
	f.SetLinks("127.0.0.5", []testenv.Link{
		{Name: "eth0", MAC: "bc:24:11:1f:a5:00", Addresses: []string{"127.0.0.5/24", "fd00::5/64"}},
		{Name: "eth1", MAC: "bc:24:11:1f:a5:01"},
	})
	api, _ := connect(t, f)
	n := pn(config.Node{Name: "k8s-work-1", IP: "127.0.0.5"}, "v1.12.0")
	links, err := api.Links(context.Background(), n)
	if err != nil {
		t.Fatal(err)
	}
	want := []rollout.Link{
		{Name: "eth0", HardwareAddr: "bc:24:11:1f:a5:00", Addresses: []string{"127.0.0.5/24", "fd00::5/64"}},
		{Name: "eth1", HardwareAddr: "bc:24:11:1f:a5:01"},
	}
	if fmt.Sprint(links) != fmt.Sprint(want) {
		t.Fatalf("links %+v, want %+v", links, want)
	}
	// A node that does not answer is an error, not an empty identity.
	if _, err := api.Links(context.Background(), pn(config.Node{Name: "gone", IP: "127.0.0.99"}, "v1.12.0")); err == nil {
		t.Fatal("a silent node gave links")
	}
}

// TestEachNodeKeepsItsOwnImage: the Talos API tells each node's install
// image, schematic and extensions (the GPU worker's NVIDIA ones); an
// in-place upgrade installs the node's own image at the target version.
func TestEachNodeKeepsItsOwnImage(t *testing.T) {
	const gpu = "9f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
	f := testenv.NewTalosAPI()
	f.Add("127.0.0.21", "w-1", "v1.13.0", 0)
	f.Add("127.0.0.22", "gpu-1", "v1.13.0", 0)
	f.SetImage("127.0.0.21", "factory.talos.dev/nocloud-installer/"+schematic+":v1.13.0")
	f.SetImage("127.0.0.22", "factory.talos.dev/nocloud-installer/"+gpu+":v1.13.0")
	f.SetSchematic(schematic, "qemu-guest-agent")
	f.SetSchematic(gpu, "nvidia-container-toolkit-production", "nonfree-kmod-nvidia-production")
	api, _ := connect(t, f)
	gpuNode := pn(config.Node{Name: "gpu-1", Role: config.RoleWorker, IP: "127.0.0.22"}, "v1.13.0")
	img, err := api.NodeImage(context.Background(), gpuNode)
	if err != nil {
		t.Fatal(err)
	}
	if img.Ref != "factory.talos.dev/nocloud-installer/"+gpu+":v1.13.0" || img.Schematic != gpu ||
		strings.Join(img.Extensions, ",") != "nonfree-kmod-nvidia-production,nvidia-container-toolkit-production" {
		t.Fatalf("image %+v", img)
	}
	gpuNode.Image = WithVersion(img.Ref, "v1.13.1")
	if err := api.Upgrade(context.Background(), gpuNode, version.Pair{Talos: version.MustParse("v1.13.1")}); err != nil {
		t.Fatal(err)
	}
	if got := f.NodeImage("127.0.0.22"); got != "factory.talos.dev/nocloud-installer/"+gpu+":v1.13.1" {
		t.Fatalf("the GPU worker was installed from %s", got)
	}
	if got, _ := api.NodeImage(context.Background(), gpuNode); got.Schematic != gpu || len(got.Extensions) != 2 {
		t.Fatalf("after its upgrade the GPU worker boots %+v", got)
	}
}

func TestImageReferences(t *testing.T) {
	for _, tc := range []struct{ ref, schematic, at string }{
		{"factory.talos.dev/nocloud-installer/" + schematic + ":v1.11.3", schematic, "factory.talos.dev/nocloud-installer/" + schematic + ":v1.12.0"},
		{"factory.talos.dev/metal-installer-secureboot/" + schematic + "@sha256:" + strings.Repeat("a", 64), schematic, "factory.talos.dev/metal-installer-secureboot/" + schematic + ":v1.12.0"},
		{"ghcr.io/siderolabs/installer:v1.11.3", "", "ghcr.io/siderolabs/installer:v1.12.0"},
		{"127.0.0.1:5000/talos/installer", "", "127.0.0.1:5000/talos/installer:v1.12.0"},
	} {
		if got := SchematicOf(tc.ref); got != tc.schematic {
			t.Errorf("SchematicOf(%s) = %q", tc.ref, got)
		}
		if got := WithVersion(tc.ref, "v1.12.0"); got != tc.at {
			t.Errorf("WithVersion(%s) = %q, want %q", tc.ref, got, tc.at)
		}
	}
}

// TestTheImageCheckFindsAMissingImageBeforeAnyChange: against an OCI
// registry on 127.0.0.1 (go-containerregistry's) that holds some target
// images and not others, the check names the missing one; a node that
// cannot pull its image (the Talos API's pull fails) is named too; nodes
// of a cattle plan boot templates and are not checked.
func TestTheImageCheckFindsAMissingImageBeforeAnyChange(t *testing.T) {
	const gpu = "9f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
	reg := testenv.NewRegistry(t)
	reg.Push(t, reg.Installer(schematic, "v1.13.1"))
	f := testenv.NewTalosAPI()
	f.Add("127.0.0.21", "w-1", "v1.13.0", 0)
	f.Add("127.0.0.22", "gpu-1", "v1.13.0", 0)
	api, _ := connect(t, f)
	nodes := []config.Node{{Name: "w-1", Role: config.RoleWorker, IP: "127.0.0.21"}, {Name: "gpu-1", Role: config.RoleWorker, IP: "127.0.0.22"}}
	images := map[string]plan.NodeImage{"w-1": {Image: reg.Installer(schematic, "v1.13.1")}, "gpu-1": {Image: reg.Installer(gpu, "v1.13.1")}}
	p := plan.Build(plan.Input{Nodes: nodes, Strategy: version.Pets, From: pair("v1.13.0"), To: pair("v1.13.1"), MaxParallelWorkers: 1, Images: images})
	check := ImageCheck{Talos: talosCfg, Registry: RemoteRegistry{}, Puller: api}
	err := check.Check(context.Background(), p)
	if err == nil || !strings.Contains(err.Error(), reg.Installer(gpu, "v1.13.1")+" (for gpu-1)") || strings.Contains(err.Error(), "(for w-1)") {
		t.Fatalf("err = %v: want the GPU image named missing, not the other", err)
	}
	if !strings.Contains(err.Error(), "NAME_UNKNOWN: Unknown name") {
		t.Errorf("the registry's answer is not in the error: %v", err)
	}
	reg.Push(t, reg.Installer(gpu, "v1.13.1"))
	f.SetMissing(reg.Installer(gpu, "v1.13.1"))
	if err := check.Check(context.Background(), p); err == nil || !strings.Contains(err.Error(), "gpu-1 cannot pull") {
		t.Fatalf("err = %v: want gpu-1's pull named", err)
	}
	if got := f.CallsOf("ImagePull"); len(got) != 2 {
		t.Errorf("pre-pulls %v: want one per node", got)
	}
	cattle := plan.Build(plan.Input{Nodes: nodes, Strategy: version.Cattle, From: pair("v1.13.0"), To: pair("v1.14.0"), MaxParallelWorkers: 1, Images: images})
	if err := check.Check(context.Background(), cattle); err != nil {
		t.Fatalf("a cattle plan: %v", err)
	}
}

// TestSnapshotsAreEncryptedBeforeTheyAreWritten: with recipients, the etcd
// snapshot is encrypted with age as it streams: the file (NAME.snapshot.age)
// holds no plaintext byte, the copy in S3 (a real MinIO) is the encrypted
// file, and the operator's identity decrypts either to the very bytes etcd
// sent.
func TestSnapshotsAreEncryptedBeforeTheyAreWritten(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	f := testenv.NewTalosAPI()
	etcdCluster(f)
	api, _ := connect(t, f)
	s := testenv.StartMinIO(t, "prox-ops-state")
	up, err := objstore.New(config.SnapshotUpload{URL: "s3://prox-ops-state/etcd-snapshots/", Endpoint: s.Endpoint, PathStyle: true},
		func(k string) string {
			return map[string]string{"AWS_ACCESS_KEY_ID": s.AccessKey, "AWS_SECRET_ACCESS_KEY": s.SecretKey}[k]
		})
	if err != nil {
		t.Fatal(err)
	}
	g := newGuard(api, t.TempDir())
	g.Recipients, g.Upload = Recipients([]string{id.Recipient().String()}), up
	snap, err := g.BeforeNode(context.Background(), pn(cps[0], "v1.13.0"))
	if err != nil {
		t.Fatal(err)
	}
	want := []byte("etcd-snapshot-chunk-0-from-cp-1;etcd-snapshot-chunk-1-from-cp-1;etcd-snapshot-chunk-2-from-cp-1;")
	onDisk, err := os.ReadFile(snap.Path)
	if err != nil || !strings.HasSuffix(snap.Path, ".snapshot.age") || bytes.Contains(onDisk, []byte("etcd-snapshot-chunk")) {
		t.Fatalf("%s (%v): want an age file with no plaintext in it", snap.Path, err)
	}
	obj, err := s.Client(t).GetObject(context.Background(), "prox-ops-state", "etcd-snapshots/"+filepath.Base(snap.Path), minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	inBucket, err := io.ReadAll(obj)
	if err != nil || !bytes.Equal(inBucket, onDisk) || !strings.HasSuffix(snap.URL, ".snapshot.age") {
		t.Fatalf("the bucket holds %d bytes (%v) at %s: want the encrypted file", len(inBucket), err, snap.URL)
	}
	for where, data := range map[string][]byte{"the file": onDisk, "the bucket": inBucket} {
		r, err := age.Decrypt(bytes.NewReader(data), id)
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s decrypts to %q (%v), want the snapshot etcd sent", where, got, err)
		}
	}
	// Without recipients the snapshot stays plaintext in the workspace.
	g.Recipients, g.Upload = nil, nil
	snap, err = g.BeforeNode(context.Background(), pn(cps[1], "v1.13.0"))
	if err != nil || strings.HasSuffix(snap.Path, ".age") {
		t.Fatalf("without recipients: %s %v", snap.Path, err)
	}
}
