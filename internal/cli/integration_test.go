package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prox-ops/drover/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { os.Exit(testenv.Main(m, &env)) }

// TestPlanReadsNodeVersionsFromTheCluster: plan against a real API server
// (through --kubeconfig) skips the node that already runs the target.
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
	r := drover(t, "plan", "--config", cfg, "--kubeconfig", env.Kubeconfig, "--from-talos", "v1.11.3", "--to-talos", "v1.12.0", "--output", "json")
	if r.code != ExitOK {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	var p struct {
		Batches []struct {
			Nodes []struct{ Name string } `json:"nodes"`
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
	if strings.Join(planned, ",") != "cli-cp-1,cli-w-2" || len(p.Skipped) != 1 || p.Skipped[0].Name != "cli-w-1" {
		t.Fatalf("planned %v, skipped %+v", planned, p.Skipped)
	}

	// A --context that the kubeconfig lacks is a usage error.
	r = drover(t, "plan", "--config", cfg, "--kubeconfig", env.Kubeconfig, "--context", "nope", "--from-talos", "v1.11.3", "--to-talos", "v1.12.0")
	if r.code != ExitUsage || !strings.Contains(r.stderr, "nope") {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
}
