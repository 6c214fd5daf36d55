package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prox-ops/drover/internal/rollout"
)

// TestGraceADrainWaitsForTheGracePeriod: the lab's pods take their
// termination grace period (30 s, the default) to stop once evicted, as a
// kubelet keeps them; every drain waits for it on the virtual clock.
func TestGraceADrainWaitsForTheGracePeriod(t *testing.T) {
	rep := filepath.Join(t.TempDir(), "r.json")
	if r := drover(t, "upgrade", "--lab", "--to-talos", "v1.12.0", "--yes", "--only", "k8s-work-1", "--report", rep); r.code != ExitOK {
		t.Fatalf("exit %d\n%s", r.code, lastLines(r.stderr, 10))
	}
	var report rollout.Report
	data, err := os.ReadFile(rep)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &report); err != nil {
		t.Fatal(err)
	}
	for _, n := range report.Nodes {
		for _, s := range n.Steps {
			if s.Step == rollout.StepDrain {
				if took := s.Finished.Sub(s.Started); took < 30*time.Second {
					t.Fatalf("the drain of %s took %s: its pods were gone before their 30 s grace", n.Name, took)
				}
				return
			}
		}
	}
	t.Fatal("no drain in the report")
}

// TestGraceLongerThanTheDrainTimeout: a database on k8s-work-1 takes its
// 10-minute grace period to stop, the drain timeout is 5 minutes. The plan
// warns about it beforehand; with one drain attempt the run halts there,
// naming the pod and its grace period, the node uncordoned; with the
// default three attempts the drain outlasts the grace (the node is
// cordoned again between attempts) and the run goes on.
func TestGraceLongerThanTheDrainTimeout(t *testing.T) {
	data, err := os.ReadFile("../../examples/prox-ops/drover.yaml")
	if err != nil {
		t.Fatal(err)
	}
	one := filepath.Join(t.TempDir(), "drover.yaml")
	write(t, one, strings.Replace(string(data), "  drainAttempts: 3 ", "  drainAttempts: 1 ", 1))
	fault := []string{"--lab-fault", "k8s-work-1=slow-shutdown", "--to-talos", "v1.12.0"}

	plan := drover(t, append([]string{"plan", "--lab", "--config", one, "--output", "json"}, fault...)...)
	var pj struct{ Warnings []string }
	if err := json.Unmarshal([]byte(plan.stdout), &pj); err != nil || len(pj.Warnings) != 1 ||
		!strings.Contains(pj.Warnings[0], "apps/postgres-k8s-work-1") || !strings.Contains(pj.Warnings[0], "grace period of 10m0s, longer than rollout.drainTimeout (5m0s)") {
		t.Fatalf("the plan's warnings: %q (%v)", pj.Warnings, err)
	}

	r := drover(t, append([]string{"upgrade", "--lab", "--config", one, "--yes", "--output", "json"}, fault...)...)
	rep := decodeReport(t, r)
	if r.code != ExitHalted || !strings.Contains(rep.Error, "apps/postgres-k8s-work-1") || !strings.Contains(rep.Error, "its grace period is 10m0s, longer than the drain timeout of 5m0s") {
		t.Fatalf("exit %d: %s", r.code, rep.Error)
	}
	if !strings.Contains(rep.Error, "uncordoned") {
		t.Errorf("the halt does not say the node was left uncordoned: %s", rep.Error)
	}
	if !strings.Contains(r.stderr, "warning: pod apps/postgres-k8s-work-1") {
		t.Errorf("the upgrade did not warn before it started:\n%s", lastLines(r.stderr, 20))
	}

	if r := drover(t, append([]string{"upgrade", "--lab", "--yes", "--only", "k8s-work-1"}, fault...)...); r.code != ExitOK {
		t.Fatalf("three attempts: exit %d\n%s", r.code, lastLines(r.stderr, 10))
	}
}

// TestVolumesDetachBeforeTheVMGoes: after each drain the run waits for the
// node's volumes to detach (the lab's grafana has a Ceph RBD volume); a
// volume that never detaches (volume-stuck) halts the run with exit 1 at
// that node, its VM untouched, the volume, claim and pod named.
func TestVolumesDetachBeforeTheVMGoes(t *testing.T) {
	r := drover(t, "upgrade", "--lab", "--to-talos", "v1.12.0", "--yes")
	if out := r.stdout + r.stderr; r.code != ExitOK || !strings.Contains(out, "waiting for 1 volume(s) to detach: pvc-apps-grafana") || !strings.Contains(out, "volumes detached") {
		t.Fatalf("exit %d; the progress does not show the volume wait:\n%s", r.code, lastLines(r.stdout, 30))
	}
	r = drover(t, "upgrade", "--lab", "--to-talos", "v1.12.0", "--yes", "--lab-fault", "k8s-work-1=volume-stuck", "--output", "json")
	rep := decodeReport(t, r)
	if r.code != ExitHalted || !strings.Contains(rep.Error, "still attached to k8s-work-1") || !strings.Contains(rep.Error, "claim apps/recorder-k8s-work-1, used by pod apps/recorder-k8s-work-1-") ||
		!strings.Contains(rep.Error, "the VM was not touched") {
		t.Fatalf("exit %d: %s", r.code, rep.Error)
	}
	for _, n := range rep.Nodes {
		if n.Name == "k8s-work-1" && n.Outcome != "failed" {
			t.Errorf("k8s-work-1: %s", n.Outcome)
		}
	}
}

// TestABusyNodeIsLeftForLast: a transcode annotated do-not-disrupt holds
// k8s-work-1 (it ends two hours into the lab): the plan takes the node last
// among the workers and says why; the run waits there until the transcode
// ended and goes on. Alone (--only), the node is reached at once, the
// transcode outlasts rollout.blockingTimeout (1h) and the run stops with
// exit 4, the node untouched.
func TestABusyNodeIsLeftForLast(t *testing.T) {
	fault := []string{"--to-talos", "v1.12.0", "--lab-fault", "k8s-work-1=busy"}
	plan := drover(t, append([]string{"plan", "--lab", "--output", "json"}, fault...)...)
	var pj struct {
		Held    map[string][]string
		Batches []struct{ Nodes []struct{ Name string } }
	}
	if err := json.Unmarshal([]byte(plan.stdout), &pj); err != nil {
		t.Fatal(err)
	}
	// Last among the workers, but for drover's own node (the lab's
	// runner pod runs on k8s-work-7), which hands off after every other.
	var order []string
	for _, b := range pj.Batches {
		for _, n := range b.Nodes {
			order = append(order, n.Name)
		}
	}
	if len(pj.Held["k8s-work-1"]) != 1 || !strings.HasPrefix(pj.Held["k8s-work-1"][0], "media/transcode-k8s-work-1-") ||
		len(order) < 2 || order[len(order)-2] != "k8s-work-1" || order[len(order)-1] != "k8s-work-7" {
		t.Fatalf("held %v; order %v", pj.Held, order)
	}
	r := drover(t, append([]string{"upgrade", "--lab", "--yes"}, fault...)...)
	if out := r.stdout + r.stderr; r.code != ExitOK || !strings.Contains(out, "held by media/transcode-k8s-work-1-") || !strings.Contains(out, "the pods that held it finished") {
		t.Fatalf("exit %d\n%s", r.code, lastLines(r.stdout, 20))
	}
	r = drover(t, append([]string{"upgrade", "--lab", "--yes", "--only", "k8s-work-1", "--output", "json"}, fault...)...)
	rep := decodeReport(t, r)
	if r.code != ExitBlocked || !strings.Contains(rep.Error, "for more than rollout.blockingTimeout (1h0m0s); the node was not touched") {
		t.Fatalf("exit %d: %s", r.code, rep.Error)
	}
	if len(rep.Nodes) == 0 || rep.Nodes[0].Outcome != "untouched" {
		t.Errorf("nodes: %+v", rep.Nodes)
	}
}

// TestABatchWithoutRoomIsNotStarted: plex needs a GPU and every other GPU
// of the lab is taken (no-room on k8s-work-4): the run stops before that
// batch with exit 4, naming the pod and why each node cannot take it; the
// nodes done before stay done, k8s-work-4 is untouched. The plan warned of
// it for the whole run beforehand (and warns of nothing without the fault).
func TestABatchWithoutRoomIsNotStarted(t *testing.T) {
	var pj struct{ Warnings []string }
	for _, fault := range []string{"", "k8s-work-4=no-room"} {
		args := []string{"plan", "--lab", "--to-talos", "v1.12.0", "--output", "json"}
		if fault != "" {
			args = append(args, "--lab-fault", fault)
		}
		plan := drover(t, args...)
		pj.Warnings = nil
		if err := json.Unmarshal([]byte(plan.stdout), &pj); err != nil {
			t.Fatal(err)
		}
		warned := len(pj.Warnings) > 0 && strings.Contains(pj.Warnings[0], "when k8s-work-4 is drained, 1 pod(s) would find no other node") &&
			strings.Contains(pj.Warnings[0], "media/plex-k8s-work-4-")
		if warned != (fault != "") || fault == "" && len(pj.Warnings) > 0 {
			t.Fatalf("fault %q: the plan's warnings: %q", fault, pj.Warnings)
		}
	}
	r := drover(t, "upgrade", "--lab", "--to-talos", "v1.12.0", "--yes", "--lab-fault", "k8s-work-4=no-room", "--output", "json")
	rep := decodeReport(t, r)
	if r.code != ExitBlocked || !strings.Contains(rep.Error, "batch k8s-work-4 not started") || !strings.Contains(rep.Error, "media/plex-k8s-work-4-") ||
		!strings.Contains(rep.Error, "insufficient nvidia.com/gpu: wants 1, 0 free (k8s-work-14)") || !strings.Contains(rep.Error, "the nodes done so far stay done") {
		t.Fatalf("exit %d: %s", r.code, rep.Error)
	}
	for _, n := range rep.Nodes {
		if n.Name == "k8s-work-4" && n.Outcome != "untouched" {
			t.Errorf("k8s-work-4: %s", n.Outcome)
		}
	}
}

// TestHooksAndSilencesInTheLab: a cattle run of the reference cluster
// (the example's silences and Ceph noout hooks) silences each node before
// its cordon and lets the silence go once it passed its gate, and runs
// beforeRun first and afterRun last, both in the report. The hook-fails
// fault fails a node's beforeNode hook: exit 4, that node untouched, the
// failure in the report, and afterRun still runs.
func TestHooksAndSilencesInTheLab(t *testing.T) {
	r := drover(t, "upgrade", "--lab", "--config", "../../examples/prox-ops/drover.yaml", "--to-talos", "v1.12.0", "--yes")
	if r.code != ExitOK {
		t.Fatalf("exit %d\n%s", r.code, lastLines(r.stderr, 20))
	}
	silenced, expired := map[string]int{}, map[string]int{}
	for _, line := range strings.Split(r.stdout, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) < 3:
		case strings.Contains(line, "its alerts are silenced in Alertmanager"):
			silenced[f[1]]++
		case strings.Contains(line, "its silence expired"):
			expired[f[1]]++
		}
	}
	if len(silenced) != 15 || len(expired) != 15 {
		t.Fatalf("silenced %v, expired %v", silenced, expired)
	}
	for n := range silenced {
		if silenced[n] != 1 || expired[n] != 1 {
			t.Errorf("%s: silenced %d times, expired %d", n, silenced[n], expired[n])
		}
	}
	before, after := strings.Index(r.stdout, "hook beforeRun: Job"), strings.Index(r.stdout, "hook afterRun: Job")
	first, last := strings.Index(r.stdout, "cordon"), strings.LastIndex(r.stdout, "uncordon")
	if before < 0 || after < 0 || before > first || after < last {
		t.Fatalf("beforeRun at %d, afterRun at %d; first cordon %d, last uncordon %d\n%s", before, after, first, last, lastLines(r.stdout, 30))
	}

	r = drover(t, "upgrade", "--lab", "--config", "../../examples/prox-ops/drover.yaml", "--to-talos", "v1.12.0", "--yes", "--lab-fault", "k8s-work-2=hook-fails", "--output", "json")
	rep := decodeReport(t, r)
	if r.code != ExitBlocked || !strings.Contains(rep.Error, "node k8s-work-2 was not touched: hook beforeNode of k8s-work-2 failed") || !strings.Contains(rep.Error, "lab fault hook-fails") {
		t.Fatalf("exit %d: %s", r.code, rep.Error)
	}
	var hooks []string
	for _, h := range rep.Hooks {
		hooks = append(hooks, h.Point+" "+h.Node+" "+h.Status)
	}
	if len(hooks) < 3 || hooks[0] != "beforeRun  done" || hooks[len(hooks)-2] != "beforeNode k8s-work-2 failed" || hooks[len(hooks)-1] != "afterRun  done" {
		t.Fatalf("hooks reported: %q", hooks)
	}
	for _, n := range rep.Nodes {
		if n.Name == "k8s-work-2" && n.Outcome != "untouched" {
			t.Errorf("k8s-work-2: %s", n.Outcome)
		}
	}
}
