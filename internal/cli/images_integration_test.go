package cli

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/prox-ops/drover/internal/testenv"
)

// gpuSchematic is the tests' GPU workers' schematic (NVIDIA extensions).
const gpuSchematic = "9f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"

// TestEachNodeIsUpgradedWithItsOwnImage, against the real API server, the
// real Talos client and an OCI registry on 127.0.0.1: a cluster with two
// schematics (the GPU worker's NVIDIA one and the base) is planned and
// upgraded in place with each node's own image at the new version; a node
// whose machine configuration names another schematic than it booted is
// refused before any change; talos.installerImages with a label selector
// changes the selected nodes' schematic on purpose.
func TestEachNodeIsUpgradedWithItsOwnImage(t *testing.T) {
	testenv.Require(t, env)
	dir := t.TempDir()
	nodes := []e2eNode{{"img-cp-1", "127.0.0.81", "v1.13.0", 811}, {"img-w-1", "127.0.0.82", "v1.13.0", 0}, {"img-gpu-1", "127.0.0.83", "v1.13.0", 0}}
	ta, talosconfig := talosCluster(t, dir, nodes)
	base := installerImage(t)
	gpuImage := strings.Replace(base, testenv.Schematic, gpuSchematic, 1)
	reg := &testenv.Registry{Host: strings.SplitN(base, "/", 2)[0]}
	reg.Push(t, reg.Installer(gpuSchematic, "v1.13.0"), reg.Installer(gpuSchematic, "v1.13.1"))
	ta.SetSchematic(testenv.Schematic, "qemu-guest-agent")
	ta.SetSchematic(gpuSchematic, "nonfree-kmod-nvidia-production", "nvidia-container-toolkit-production", "qemu-guest-agent")
	ta.SetImage("127.0.0.83", strings.ReplaceAll(gpuImage, "{version}", "v1.13.0"))
	cfg := filepath.Join(dir, "drover.yaml")
	conf := func(extra string) {
		write(t, cfg, `cluster: {name: img}
nodes:
  - {name: img-cp-1, role: controlplane, ip: 127.0.0.81, proxmoxHost: a, vmId: 1}
  - {name: img-w-1, role: worker, ip: 127.0.0.82, proxmoxHost: a, vmId: 2}
  - {name: img-gpu-1, role: worker, ip: 127.0.0.83, proxmoxHost: b, vmId: 3}
talos:
  installerImage: `+base+`
  etcdSnapshotDir: `+filepath.Join(dir, "snapshots")+`
`+extra+`rollout: {controlPlaneSoak: 1s, workerSoak: 1s, healthInterval: 1s, readyTimeout: 1m}
health: {disable: [DNS Resolution, Network Connectivity]}
`)
	}
	conf("")
	args := []string{"--config", cfg, "--kubeconfig", env.Kubeconfig, "--talosconfig", talosconfig, "--to-talos", "v1.13.1"}
	// A GPU worker whose machine configuration names the base schematic
	// though it booted the GPU one: its own image would drop its NVIDIA
	// extensions. Refused, nothing touched.
	ta.SetImage("127.0.0.83", strings.ReplaceAll(base, "{version}", "v1.13.0"))
	ta.SetBooted("127.0.0.83", gpuSchematic)
	r := drover(t, append([]string{"upgrade", "--yes", "--journal", filepath.Join(dir, "j0.jsonl")}, args...)...)
	if r.code != ExitBlocked || !strings.Contains(r.stderr, "img-gpu-1 runs schematic "+gpuSchematic[:12]+"… (nonfree-kmod-nvidia-production") {
		t.Fatalf("a schematic change nobody asked for: exit %d\n%s", r.code, lastLines(r.stderr, 5))
	}
	if got := ta.CallsOf("LifecycleUpgrade"); len(got) != 0 {
		t.Fatalf("upgraded %v before refusing", got)
	}
	ta.SetImage("127.0.0.83", strings.ReplaceAll(gpuImage, "{version}", "v1.13.0"))
	r = drover(t, append([]string{"plan", "--output", "json"}, args...)...)
	var p struct {
		Batches []struct {
			Nodes []struct {
				Name  string `json:"name"`
				Image struct {
					Current struct {
						Schematic  string   `json:"schematic"`
						Extensions []string `json:"extensions"`
					} `json:"current"`
					Target string `json:"target"`
				} `json:"image"`
			} `json:"nodes"`
		} `json:"batches"`
	}
	if r.code != ExitOK || json.Unmarshal([]byte(r.stdout), &p) != nil {
		t.Fatalf("plan: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, b := range p.Batches {
		for _, n := range b.Nodes {
			want := reg.Installer(testenv.Schematic, "v1.13.1")
			if n.Name == "img-gpu-1" {
				want = reg.Installer(gpuSchematic, "v1.13.1")
				if len(n.Image.Current.Extensions) != 3 {
					t.Errorf("the GPU worker's extensions: %v", n.Image.Current.Extensions)
				}
			}
			if n.Image.Target != want {
				t.Errorf("%s: target %s, want %s", n.Name, n.Image.Target, want)
			}
		}
	}
	r = drover(t, append([]string{"upgrade", "--yes", "--journal", filepath.Join(dir, "j1.jsonl")}, args...)...)
	if r.code != ExitOK {
		t.Fatalf("upgrade: exit %d\n%s", r.code, lastLines(r.stdout+r.stderr, 20))
	}
	for ip, want := range map[string]string{"127.0.0.81": reg.Installer(testenv.Schematic, "v1.13.1"), "127.0.0.82": reg.Installer(testenv.Schematic, "v1.13.1"), "127.0.0.83": reg.Installer(gpuSchematic, "v1.13.1")} {
		if got := ta.NodeImage(ip); got != want {
			t.Errorf("%s was installed from %s, want %s", ip, got, want)
		}
	}
	// An intended change of schematic, by label selector: the worker
	// labelled for it gets the GPU image; the others keep theirs.
	if _, err := env.Client.CoreV1().Nodes().Patch(context.Background(), "img-w-1", types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"example.com/gpu-soon":"true"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	reg.Push(t, reg.Installer(gpuSchematic, "v1.13.2"), reg.Installer(testenv.Schematic, "v1.13.2"))
	conf(`  installerImages:
    - selector: {example.com/gpu-soon: "true"}
      image: ` + gpuImage + "\n")
	args[len(args)-1] = "v1.13.2"
	r = drover(t, append([]string{"upgrade", "--yes", "--journal", filepath.Join(dir, "j2.jsonl")}, args...)...)
	if r.code != ExitOK {
		t.Fatalf("upgrade with installerImages: exit %d\n%s", r.code, lastLines(r.stdout+r.stderr, 20))
	}
	if got := ta.NodeImage("127.0.0.82"); got != reg.Installer(gpuSchematic, "v1.13.2") {
		t.Errorf("the selected worker was installed from %s", got)
	}
	if got := ta.NodeImage("127.0.0.81"); got != reg.Installer(testenv.Schematic, "v1.13.2") {
		t.Errorf("the control plane was installed from %s", got)
	}
}
