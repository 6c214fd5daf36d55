package cli

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prox-ops/drover/internal/lab"
)

// TestEveryNodeKeepsItsOwnImageInTheLab: the reference cluster runs two
// schematics (the GPU workers' with the NVIDIA extensions, the rest's);
// the plan shows both, a pets run upgrades each node with its own and
// keeps the GPUs, and a cattle run verifies each node booted its own.
func TestEveryNodeKeepsItsOwnImageInTheLab(t *testing.T) {
	r := drover(t, "plan", "--lab", "--to-talos", "v1.11.4")
	if !strings.Contains(r.stdout, "schematic b94d1cfa9e0a… (nonfree-kmod-nvidia-production, nvidia-container-toolkit-production, qemu-guest-agent): k8s-work-4, k8s-work-14") ||
		!strings.Contains(r.stdout, "schematic 376567988ad3… (qemu-guest-agent): k8s-ctrl-1") {
		t.Fatalf("the plan does not show the two schematics:\n%s", r.stdout)
	}
	r = drover(t, "plan", "--lab", "--to-talos", "v1.11.4", "--output", "json")
	var p struct {
		Batches []struct {
			Nodes []struct {
				Name  string `json:"name"`
				Image struct {
					Current struct{ Schematic string } `json:"current"`
					Target  string                     `json:"target"`
				} `json:"image"`
			} `json:"nodes"`
		} `json:"batches"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		t.Fatal(err)
	}
	for _, b := range p.Batches {
		for _, n := range b.Nodes {
			want := "factory.talos.dev/nocloud-installer/" + n.Image.Current.Schematic + ":v1.11.4"
			if n.Image.Target != want {
				t.Errorf("%s: target %s, want its own schematic %s", n.Name, n.Image.Target, want)
			}
		}
	}
	for _, to := range []string{"v1.11.4", "v1.12.0"} {
		state := filepath.Join(t.TempDir(), "s.json")
		r := droverContinued(t, "upgrade", "--lab", "--to-talos", to, "--yes", "--lab-state", state, "--journal", filepath.Join(t.TempDir(), "j.jsonl"))
		if r.code != ExitOK {
			t.Fatalf("%s: exit %d\n%s", to, r.code, lastLines(r.stdout+r.stderr, 10))
		}
		st, _ := lab.LoadState(state)
		for _, gpu := range []string{"k8s-work-4", "k8s-work-14"} {
			if !strings.Contains(st.VMs[gpu].Image, lab.GPUSchematic+":"+to) {
				t.Errorf("%s: after the %s run %s boots %s", to, to, gpu, st.VMs[gpu].Image)
			}
		}
		if strings.Contains(st.VMs["k8s-work-1"].Image, lab.GPUSchematic) {
			t.Errorf("k8s-work-1 boots the GPU schematic")
		}
	}
}

// TestAWrongOrMissingImageStopsTheRun: a target image that would change a
// node's schematic (wrong-image, pets) or that the registry lacks
// (image-missing) stops the run before the first cordon (exit 4, nothing
// touched); a replaced node that boots another schematic (wrong-image,
// cattle) fails its gate and is rolled back (exit 1).
func TestAWrongOrMissingImageStopsTheRun(t *testing.T) {
	for _, tc := range []struct {
		name, to, fault string
		code            int
		want            string
	}{
		{"pets: a schematic change nobody asked for", "v1.11.4", "wrong-image", ExitBlocked, "k8s-work-4 runs schematic b94d1cfa9e0a… (nonfree-kmod-nvidia-production, nvidia-container-toolkit-production, qemu-guest-agent) but would get 376567988ad3…"},
		{"pets: the registry lacks the target", "v1.11.4", "image-missing", ExitBlocked, "the target images are not in their registry"},
		{"cattle: the new VM boots another schematic", "v1.12.0", "wrong-image", ExitHalted, "schematic changed " + lab.GPUSchematic},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state := filepath.Join(t.TempDir(), "s.json")
			r := drover(t, "upgrade", "--lab", "--to-talos", tc.to, "--yes", "--lab-state", state, "--journal", filepath.Join(t.TempDir(), "j.jsonl"),
				"--lab-fault", "k8s-work-4="+tc.fault)
			if r.code != tc.code || !strings.Contains(r.stdout+r.stderr, tc.want) {
				t.Fatalf("exit %d, want %d naming %q\n%s", r.code, tc.code, tc.want, lastLines(r.stdout+r.stderr, 12))
			}
			st, _ := lab.LoadState(state)
			if tc.code == ExitBlocked && st != nil {
				for name, vm := range st.VMs {
					if vm.Talos != "v1.11.3" || vm.Unschedulable {
						t.Errorf("%s was touched: %+v", name, vm)
					}
				}
			}
			if tc.code == ExitHalted && !strings.Contains(st.VMs["k8s-work-4"].Image, lab.GPUSchematic+":v1.11.3") {
				t.Errorf("k8s-work-4 after its rollback boots %s", st.VMs["k8s-work-4"].Image)
			}
		})
	}
}
