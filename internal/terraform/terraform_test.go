package terraform

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/terraform-exec/tfexec"

	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/secrets"
	"github.com/prox-ops/drover/internal/testenv"
	"github.com/prox-ops/drover/internal/version"
)

// These tests run a real terraform or tofu binary on testdata/prox-ops, a
// fixture shaped like prox-ops whose VMs are proxmox_virtual_environment_vm
// resources of a stand-in for the bpg/proxmox provider (testdata/provider,
// built with terraform-plugin-framework and installed through dev_overrides;
// no network): it writes and removes <node>.vm files that stand in for
// Proxmox VMs, since no Proxmox host runs here.

const canary = "canary-PxM0x-pa55word"

var (
	v1113 = version.Pair{Talos: version.MustParse("v1.11.3"), Kubernetes: version.MustParse("v1.34.1")}
	v1120 = version.Pair{Talos: version.MustParse("v1.12.0"), Kubernetes: version.MustParse("v1.34.1")}
)

var fixtureNodes = []config.Node{
	{Name: "k8s-ctrl-1", Role: config.RoleControlPlane, ProxmoxHost: "baldar", VMID: 8001, IP: "127.0.0.81"},
	{Name: "k8s-work-1", Role: config.RoleWorker, ProxmoxHost: "baldar", VMID: 8101},
	{Name: "k8s-work-2", Role: config.RoleWorker, ProxmoxHost: "heimdall", VMID: 8102},
	{Name: "k8s-work-3", Role: config.RoleWorker, ProxmoxHost: "odin", VMID: 8103},
	{Name: "k8s-work-4", Role: config.RoleWorker, ProxmoxHost: "thor", VMID: 8104},
}

// tfBinary finds the kit's OpenTofu ($DROVER_TF_BIN, else the cache), or
// one on PATH.
func tfBinary(t *testing.T) string {
	t.Helper()
	testenv.TerraformProvider(t, "testdata/provider")
	if b, ok := testenv.TofuTool.Path(); ok {
		return b
	}
	b, err := FindBinary("", nil)
	if err != nil {
		if os.Getenv(testenv.EnvRequired) != "" {
			t.Fatalf("Terraform tests required but no binary: %v (make test builds OpenTofu with hack/tofu-binary.sh)", err)
		}
		t.Skipf("no terraform or tofu binary (make test builds one with hack/tofu-binary.sh): %v", err)
	}
	return b
}

type fixture struct {
	dir, vmDir string
	bin        string
	out        *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newFixture copies the fixture, sets its environment and creates the
// cluster at v1.11.3 with a plain apply.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), vmDir: t.TempDir(), bin: tfBinary(t), out: &syncBuffer{}}
	if err := os.CopyFS(f.dir, os.DirFS("testdata/prox-ops")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TF_VAR_vm_dir", f.vmDir)
	t.Setenv("TF_VAR_proxmox_password", canary)
	t.Setenv("TF_IN_AUTOMATION", "1")
	tf, err := tfexec.NewTerraform(f.dir, f.bin)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := tf.Init(ctx); err != nil {
		t.Fatalf("init: %v", err)
	}
	if err := tf.Apply(ctx, tfexec.Var("talos_version=v1.11.3")); err != nil {
		t.Fatalf("initial apply: %v", err)
	}
	return f
}

func (f *fixture) settings() config.Terraform {
	s := config.Defaults().Terraform
	s.WorkingDir = f.dir
	s.Binary = f.bin
	s.LockTimeout = config.D(30 * time.Second)
	return s
}

func (f *fixture) runner(t *testing.T, s config.Terraform) *Runner {
	t.Helper()
	r, err := New(context.Background(), Options{
		Settings: s, Vars: version.VariableNames{Talos: "talos_version", Kubernetes: "kubernetes_version"},
		Change: version.Change{From: v1113, To: v1120}, Out: f.out,
		Masker: secrets.FromEnv(os.Getenv, config.DefaultSecretEnv),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}

func (f *fixture) vm(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(f.vmDir, name+".vm"))
	if errors.Is(err, os.ErrNotExist) {
		return "(none)"
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func node(name string) plan.Node {
	for _, n := range fixtureNodes {
		if n.Name == name {
			return plan.Node{Node: n, From: v1113}
		}
	}
	panic(name)
}

func TestReplaceNodeAndRollBack(t *testing.T) {
	f := newFixture(t)
	r := f.runner(t, f.settings())
	ctx := context.Background()
	t.Logf("running %s %s", r.Binary, r.Version)
	if r.Binary != "tofu" && r.Binary != "terraform" || r.Version == "" {
		t.Fatalf("binary %q version %q", r.Binary, r.Version)
	}
	// The fixture's first apply created both templates: an empty plan,
	// nothing applied.
	if built, err := r.BuildTemplates(ctx, v1120); err != nil || built {
		t.Fatalf("templates built %v, err %v; want present, nothing applied", built, err)
	}
	for _, v := range []string{"v1.11.3", "v1.12.0"} {
		if _, err := os.Stat(filepath.Join(f.vmDir, "template-"+v)); err != nil {
			t.Fatalf("template %s: %v", v, err)
		}
	}
	n := node("k8s-work-2")
	if err := r.Destroy(ctx, []plan.Node{n}); err != nil {
		t.Fatal(err)
	}
	if got := f.vm(t, "k8s-work-2"); got != "(none)" {
		t.Fatalf("VM after destroy: %s", got)
	}
	if got := f.vm(t, "k8s-work-3"); got != "v1.11.3 v1.34.1" {
		t.Fatalf("a -target destroy touched another node: k8s-work-3 is %s", got)
	}
	// Destroying a VM that is gone is not an error.
	if err := r.Destroy(ctx, []plan.Node{n}); err != nil {
		t.Fatalf("second destroy: %v", err)
	}
	if err := r.Create(ctx, []plan.Node{n}, v1120); err != nil {
		t.Fatal(err)
	}
	if got := f.vm(t, "k8s-work-2"); got != "v1.12.0 v1.34.1" {
		t.Fatalf("VM after create: %s", got)
	}
	// Rollback: destroy the new VM, create it at the old version.
	if err := r.Destroy(ctx, []plan.Node{n}); err != nil {
		t.Fatal(err)
	}
	if err := r.Create(ctx, []plan.Node{n}, v1113); err != nil {
		t.Fatal(err)
	}
	if got := f.vm(t, "k8s-work-2"); got != "v1.11.3 v1.34.1" {
		t.Fatalf("VM after rollback: %s", got)
	}
	out := f.out.String()
	if !strings.Contains(out, "[terraform k8s-work-2] ") {
		t.Errorf("output is not prefixed with the node:\n%s", out)
	}
	if strings.Contains(out, canary) {
		t.Fatalf("the canary secret leaked into drover's output")
	}
	// The console shows what Terraform plans and does, not the state
	// documents drover reads.
	if strings.Contains(out, `"format_version"`) || strings.Contains(out, `"terraform_version"`) {
		t.Fatalf("a show -json document reached the console:\n%s", out)
	}
	if !strings.Contains(out, "with password "+secrets.Mask) {
		t.Fatalf("the provisioner's echo of the secret is not in the output, so masking was not exercised:\n%s", out)
	}
}

// TestTemplatesKeepOrRebuild: under keep, a templates apply that would
// replace a template is refused and nothing changes; under rebuild the
// template at its fixed id is replaced, and applied again at the old
// version (what a rollback does first) it is rebuilt at that version.
func TestTemplatesKeepOrRebuild(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	fixed := func() string {
		data, err := os.ReadFile(filepath.Join(f.vmDir, "template-fixed"))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	s := f.settings()
	s.TemplatesAddress = "module.fixed_templates"
	err := f.runner(t, s).EnsureTemplates(ctx, v1120)
	if err == nil || !strings.Contains(err.Error(), "would destroy module.fixed_templates") || !strings.Contains(err.Error(), "terraform.templates: rebuild") {
		t.Fatalf("keep: err = %v, want a refusal naming the template and the rebuild setting", err)
	}
	if got := fixed(); got != "v1.11.3" {
		t.Fatalf("keep touched the template: %s", got)
	}
	s.Templates = config.TemplatesRebuild
	r := f.runner(t, s)
	if built, err := r.BuildTemplates(ctx, v1120); err != nil || !built {
		t.Fatalf("rebuild: built %v, err %v; want built", built, err)
	}
	if got := fixed(); got != "v1.12.0" {
		t.Fatalf("rebuild: template at %s", got)
	}
	if built, err := r.BuildTemplates(ctx, v1120); err != nil || built {
		t.Fatalf("rebuild again at the same version: built %v, err %v; want present, nothing applied", built, err)
	}
	if err := r.EnsureTemplates(ctx, v1113); err != nil {
		t.Fatal(err)
	}
	if got := fixed(); got != "v1.11.3" {
		t.Fatalf("rebuilt for a rollback: template at %s", got)
	}
}

// TestBatchDestroyAndCreateAreOneRunEach: two nodes go in one destroy and
// come back in one apply, each with its own -target; the others stay.
func TestBatchDestroyAndCreateAreOneRunEach(t *testing.T) {
	f := newFixture(t)
	r := f.runner(t, f.settings())
	ctx := context.Background()
	batch := []plan.Node{node("k8s-work-1"), node("k8s-work-3")}
	if err := r.Destroy(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if f.vm(t, "k8s-work-1") != "(none)" || f.vm(t, "k8s-work-3") != "(none)" || f.vm(t, "k8s-work-2") != "v1.11.3 v1.34.1" {
		t.Fatalf("after the batch destroy: %s %s %s", f.vm(t, "k8s-work-1"), f.vm(t, "k8s-work-3"), f.vm(t, "k8s-work-2"))
	}
	for _, n := range batch {
		if ok, err := r.VMExists(ctx, n); err != nil || ok {
			t.Fatalf("%s still in the state: %v %v", n.Name, ok, err)
		}
	}
	if err := r.Create(ctx, batch, v1120); err != nil {
		t.Fatal(err)
	}
	for _, n := range batch {
		if got := f.vm(t, n.Name); got != "v1.12.0 v1.34.1" {
			t.Fatalf("%s after the batch apply: %s", n.Name, got)
		}
	}
	out := f.out.String()
	if strings.Count(out, "[terraform k8s-work-1,k8s-work-3] Destroy complete!") != 1 || strings.Count(out, "[terraform k8s-work-1,k8s-work-3] Apply complete!") != 1 {
		t.Fatalf("want one destroy and one apply for the batch:\n%s", out)
	}
}

func TestPostApplyPlanMustBeEmpty(t *testing.T) {
	f := newFixture(t)
	r := f.runner(t, f.settings())
	t.Setenv("TF_VAR_drift", "true")
	err := r.Create(context.Background(), []plan.Node{node("k8s-work-1")}, v1120)
	var de *DriftError
	if !errors.As(err, &de) || de.Address != `module.nodes["k8s-work-1"]` {
		t.Fatalf("err = %v, want DriftError", err)
	}
}

func TestIdentityMismatchIsRefusedBeforeDestroy(t *testing.T) {
	f := newFixture(t)
	r := f.runner(t, f.settings())
	tests := []struct {
		name  string
		edit  func(*config.Node)
		field string
	}{
		{"vm id", func(n *config.Node) { n.VMID = 9999 }, "vm_id"},
		{"proxmox host", func(n *config.Node) { n.ProxmoxHost = "odin" }, "node_name"},
		{"address of another node", func(n *config.Node) { n.TerraformAddress = `module.nodes["k8s-work-3"]` }, "vm_id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := node("k8s-work-1")
			tc.edit(&n.Node)
			err := r.Destroy(context.Background(), []plan.Node{n})
			var im *IdentityMismatchError
			if !errors.As(err, &im) || im.Field != tc.field {
				t.Fatalf("err = %v, want an identity mismatch on %s", err, tc.field)
			}
			for _, name := range []string{"k8s-work-1", "k8s-work-3"} {
				if got := f.vm(t, name); got != "v1.11.3 v1.34.1" {
					t.Fatalf("%s was touched: %s", name, got)
				}
			}
		})
	}
}

func TestStateLockedByAnotherProcess(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	// Another apply holds the lock for a few seconds.
	other := exec.Command(f.bin, "apply", "-auto-approve", "-input=false", "-no-color",
		"-var", "talos_version=v1.11.3", "-var", "slow_seconds=6", "-var", "slow_token=busy")
	other.Dir = f.dir
	var otherOut bytes.Buffer
	other.Stdout, other.Stderr = &otherOut, &otherOut
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Wait() })
	lockFile := filepath.Join(f.dir, ".terraform.tfstate.lock.info")
	testenv.Eventually(t, 20*time.Second, "the other apply to take the lock", func() (bool, error) {
		_, err := os.Stat(lockFile)
		return err == nil, nil
	})

	refuse := f.settings()
	refuse.WaitForLock = false
	err := Preflight{Runner: f.runner(t, refuse), At: v1113}.Check(ctx, plan.Plan{})
	var le *LockedError
	if !errors.As(err, &le) {
		t.Fatalf("err = %v, want LockedError", err)
	}
	host, _ := os.Hostname()
	if !strings.Contains(le.Who, host) || le.ID == "" || !strings.Contains(le.Error(), le.Who) {
		t.Fatalf("lock holder not named: %+v / %v", le, le)
	}

	wait := f.settings()
	wait.WaitForLock = true
	start := time.Now()
	if err := (Preflight{Runner: f.runner(t, wait), At: v1113}).Check(ctx, plan.Plan{}); err != nil {
		t.Fatalf("waiting for the lock: %v\nother apply:\n%s", err, otherOut.String())
	}
	t.Logf("got the lock after waiting %s", time.Since(start).Round(100*time.Millisecond))
}

func TestUnreachableBackendBlocks(t *testing.T) {
	f := newFixture(t)
	// Point the state at an http backend on a closed loopback port.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	override := `terraform {
  backend "http" {}
}
`
	if err := os.WriteFile(filepath.Join(f.dir, "backend_override.tf"), []byte(override), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(f.dir, ".terraform")); err != nil {
		t.Fatal(err)
	}
	s := f.settings()
	s.BackendConfig = map[string]string{"address": fmt.Sprintf("http://%s/state", addr), "retry_max": "0", "retry_wait_max": "1"}
	r, err := New(context.Background(), Options{Settings: s, Vars: version.VariableNames{Talos: "talos_version", Kubernetes: "kubernetes_version"}, Out: f.out, Masker: secrets.New()})
	if err != nil {
		t.Fatal(err)
	}
	err = r.Init(context.Background())
	if err == nil {
		err = Preflight{Runner: r, At: v1113}.Check(context.Background(), plan.Plan{})
	}
	var su *StateUnavailableError
	if !errors.As(err, &su) || !strings.HasPrefix(err.Error(), "remote state unavailable: ") {
		t.Fatalf("err = %v, want StateUnavailableError", err)
	}
	for _, n := range fixtureNodes {
		if got := f.vm(t, n.Name); got != "v1.11.3 v1.34.1" {
			t.Fatalf("%s was touched: %s", n.Name, got)
		}
	}
}

func TestDiscoverFillsTheInventory(t *testing.T) {
	f := newFixture(t)
	r := f.runner(t, f.settings())
	partial := []config.Node{
		{Name: "k8s-work-1", Role: config.RoleWorker},
		{Name: "k8s-work-2", Role: config.RoleWorker, ProxmoxHost: "heimdall", VMID: 8102},
		{Name: "k8s-work-9", Role: config.RoleWorker},
	}
	found, err := r.Discover(context.Background(), partial)
	if err != nil {
		t.Fatal(err)
	}
	filled, src := FillInventory(partial, found)
	if filled[0].ProxmoxHost != "baldar" || filled[0].VMID != 8101 || src["k8s-work-1"] != "host from state, VM id from state" {
		t.Fatalf("k8s-work-1: %+v (%s)", filled[0], src["k8s-work-1"])
	}
	if src["k8s-work-2"] != "host from config, VM id from config" || src["k8s-work-9"] != "host from unknown, VM id from unknown" {
		t.Fatalf("sources %v", src)
	}
}

func TestAddress(t *testing.T) {
	s := config.Defaults().Terraform
	if got := Address(s, config.Node{Name: "k8s-work-1"}); got != `module.nodes["k8s-work-1"]` {
		t.Fatal(got)
	}
	if got := Address(s, config.Node{Name: "x", TerraformAddress: "module.gpu"}); got != "module.gpu" {
		t.Fatal(got)
	}
}

func TestFindBinary(t *testing.T) {
	look := func(have ...string) func(string) (string, error) {
		return func(n string) (string, error) {
			for _, h := range have {
				if h == n {
					return "/usr/bin/" + n, nil
				}
			}
			return "", exec.ErrNotFound
		}
	}
	tests := []struct {
		configured string
		have       []string
		want       string
		wantErr    bool
	}{
		{"", []string{"tofu", "terraform"}, "/usr/bin/tofu", false},
		{"", []string{"terraform"}, "/usr/bin/terraform", false},
		{"terraform", []string{"tofu", "terraform"}, "/usr/bin/terraform", false},
		{"", nil, "", true},
		{"tf-1.9", []string{"terraform"}, "", true},
	}
	for _, tc := range tests {
		got, err := FindBinary(tc.configured, look(tc.have...))
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("FindBinary(%q) with %v = %q, %v", tc.configured, tc.have, got, err)
		}
	}
}
