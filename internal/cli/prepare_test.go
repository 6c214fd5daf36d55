package cli

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prox-ops/drover/internal/run"
)

// TestPrepareBuildsTheTemplatesAheadInTheLab: drover prepare builds the
// next version's templates in a kept lab; the upgrade then finds them and
// its template phase costs nothing, ten simulated minutes less.
func TestPrepareBuildsTheTemplatesAheadInTheLab(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "lab.json")
	r := drover(t, "prepare", "--lab", "--lab-state", state, "--to-talos", "v1.12.0", "--output", "json")
	var res run.Templates
	if r.code != ExitOK || json.Unmarshal([]byte(r.stdout), &res) != nil || res.Result != "built" || res.Seconds != 600 {
		t.Fatalf("prepare: exit %d %+v\n%s%s", r.code, res, r.stdout, r.stderr)
	}
	if r = drover(t, "prepare", "--lab", "--lab-state", state, "--to-talos", "v1.12.0"); r.code != ExitOK || !strings.Contains(r.stdout, "already there") {
		t.Fatalf("prepare again: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	templates := func(args ...string) float64 {
		t.Helper()
		report := filepath.Join(t.TempDir(), "report.json")
		r := droverContinued(t, append([]string{"upgrade", "--lab", "--to-talos", "v1.12.0", "--yes", "--output", "json", "--report", report}, args...)...)
		if r.code != ExitOK {
			t.Fatalf("upgrade %v: exit %d\n%s", args, r.code, lastLines(r.stderr, 20))
		}
		var rep struct {
			Result           string  `json:"result"`
			TemplatesSeconds float64 `json:"templatesSeconds"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || rep.Result != "succeeded" {
			t.Fatalf("report %+v %v", rep, err)
		}
		return rep.TemplatesSeconds
	}
	if got := templates("--lab-state", state, "--journal", filepath.Join(dir, "j.jsonl")); got != 0 {
		t.Errorf("with the templates prepared, the template phase took %vs", got)
	}
	if got := templates(); got != 600 {
		t.Errorf("without them, the template phase took %vs, want the lab's 10 minutes", got)
	}
}

// TestPrepareRefusesWhatItCannotDoAhead: rebuilt templates cannot be built
// ahead (exit 2, the field named); a pets upgrade has nothing to prepare.
func TestPrepareRefusesWhatItCannotDoAhead(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "drover.yaml")
	write(t, cfg, "cluster: {name: rb}\nnodes:\n  - {name: rb-cp-1, role: controlplane, ip: 127.0.0.21, proxmoxHost: a, vmId: 1}\n  - {name: rb-w-1, role: worker, ip: 127.0.0.22, proxmoxHost: b, vmId: 2}\nterraform: {templates: rebuild}\n")
	r := drover(t, "prepare", "--lab", "--config", cfg, "--to-talos", "v1.12.0")
	if r.code != ExitUsage || !strings.Contains(r.stderr, "terraform.templates: rebuild replaces the templates in place") {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	r = drover(t, "prepare", "--lab", "--config", cfg, "--to-talos", "v1.11.4")
	if r.code != ExitOK || !strings.Contains(r.stdout, "Nothing to prepare: a pets upgrade") {
		t.Fatalf("pets: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestPrepareAppliesTheTemplatesWithTerraform: against the prox-ops-shaped
// Terraform fixture (real Terraform, the stand-in bpg/proxmox provider),
// prepare applies only the templates, at the target, and touches no VM.
func TestPrepareAppliesTheTemplatesWithTerraform(t *testing.T) {
	bin := tfBinary(t)
	tfDir, vmDir := t.TempDir(), t.TempDir()
	if err := os.CopyFS(tfDir, os.DirFS("../terraform/testdata/prox-ops")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TF_VAR_vm_dir", vmDir)
	cmd := exec.Command(bin, "init", "-input=false")
	cmd.Dir = tfDir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	cfg := filepath.Join(t.TempDir(), "drover.yaml")
	write(t, cfg, `cluster: {name: tp}
nodes:
  - {name: k8s-ctrl-1, role: controlplane, ip: 127.0.0.61, proxmoxHost: baldar, vmId: 8001}
  - {name: k8s-work-1, role: worker, ip: 127.0.0.71, proxmoxHost: baldar, vmId: 8101}
terraform:
  binary: `+bin+`
  workingDir: `+tfDir+`
`)
	r := drover(t, "prepare", "--config", cfg, "--from-talos", "v1.11.3", "--to-talos", "v1.12.0")
	if r.code != ExitOK || !strings.Contains(r.stdout, "built the Talos v1.12.0 templates") {
		t.Fatalf("exit %d\n%s\n%s", r.code, r.stdout, lastLines(r.stderr, 30))
	}
	// Again: an empty plan, nothing applied, and it says so.
	r = drover(t, "prepare", "--config", cfg, "--from-talos", "v1.11.3", "--to-talos", "v1.12.0")
	if r.code != ExitOK || !strings.Contains(r.stdout, "templates are already there") || strings.Contains(r.stderr, "Apply complete") {
		t.Fatalf("prepare again: exit %d\n%s\n%s", r.code, r.stdout, lastLines(r.stderr, 30))
	}
	entries, _ := os.ReadDir(vmDir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, " "); got != "template-v1.11.3 template-v1.12.0" {
		t.Fatalf("the simulated hypervisor holds %q, want both templates and no VM", got)
	}
}
