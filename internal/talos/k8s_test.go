package talos

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/version"
)

// fakeTalosctl writes a talosctl stand-in (a real Kubernetes upgrade needs
// a real cluster) that logs its arguments and fails when asked to.
func fakeTalosctl(t *testing.T, failOn string) (bin, log string) {
	t.Helper()
	if _, err := exec.LookPath("sh"); err != nil {
		if os.Getenv("DROVER_TESTENV_REQUIRED") != "" {
			t.Fatal("no sh to run the talosctl stand-in, and make test requires every tier")
		}
		t.Skip("no sh to run the talosctl stand-in")
	}
	dir := t.TempDir()
	log = filepath.Join(dir, "calls.log")
	bin = filepath.Join(dir, "talosctl")
	script := "#!/bin/sh\necho \"$@\" >> '" + log + "'\necho \"talosctl: $*\"\n"
	if failOn != "" {
		script += "case \"$*\" in *" + failOn + "*) echo 'upgrade-k8s: pre-pull failed' >&2; exit 1;; esac\n"
	}
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, log
}

func TestUpgradeK8sDryRunFirst(t *testing.T) {
	bin, log := fakeTalosctl(t, "")
	var out bytes.Buffer
	u := &UpgradeK8s{Talosctl: bin, Talosconfig: "/tmp/tc", Node: "127.0.0.11", Out: &out}
	if err := u.UpgradeKubernetes(context.Background(), version.MustParse("v1.34.1"), version.MustParse("v1.34.2")); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(log)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	want := "--talosconfig /tmp/tc --nodes 127.0.0.11 upgrade-k8s --from 1.34.1 --to 1.34.2"
	if len(lines) != 2 || lines[0] != want+" --dry-run" || lines[1] != want {
		t.Fatalf("talosctl calls:\n%s", data)
	}
	if !strings.Contains(out.String(), "talosctl: ") {
		t.Errorf("talosctl output not passed on: %q", out.String())
	}
}

func TestUpgradeK8sStopsWhenTheDryRunFails(t *testing.T) {
	bin, log := fakeTalosctl(t, "--dry-run")
	u := &UpgradeK8s{Talosctl: bin, Node: "127.0.0.11"}
	err := u.UpgradeKubernetes(context.Background(), version.MustParse("v1.34.1"), version.MustParse("v1.34.2"))
	if err == nil || !strings.Contains(err.Error(), "--dry-run") {
		t.Fatalf("err = %v", err)
	}
	data, _ := os.ReadFile(log)
	if strings.Count(string(data), "upgrade-k8s") != 1 {
		t.Fatalf("the real upgrade ran after a failed dry run:\n%s", data)
	}
}

func TestMissingTalosctlIsReportedBeforeAnyChange(t *testing.T) {
	u := &UpgradeK8s{LookPath: func(string) (string, error) { return "", exec.ErrNotFound }}
	if err := u.Check(context.Background(), plan.Plan{KubernetesPhase: true}); err == nil || !strings.Contains(err.Error(), "install talosctl") {
		t.Fatalf("err = %v", err)
	}
	if err := u.Check(context.Background(), plan.Plan{}); err != nil {
		t.Fatalf("talosctl required without a Kubernetes phase: %v", err)
	}
}
