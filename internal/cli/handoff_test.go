package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prox-ops/drover/internal/journal"
	"github.com/prox-ops/drover/internal/lab"
	"github.com/prox-ops/drover/internal/rollout"
)

// TestThePlanPutsDroversOwnNodeLast: with drover's runner pod on a worker
// the worker goes last, alone; on a control-plane node, last of the control
// plane; from outside the cluster, nothing changes. The plan says so.
func TestThePlanPutsDroversOwnNodeLast(t *testing.T) {
	type planJSON struct {
		Batches []struct {
			Nodes []struct{ Name string } `json:"nodes"`
		} `json:"batches"`
		RunsOn *struct {
			Node    string `json:"node"`
			HandOff bool   `json:"handOff"`
			Note    string `json:"note"`
		} `json:"runsOn"`
	}
	order := func(p planJSON) []string {
		var out []string
		for _, b := range p.Batches {
			for _, n := range b.Nodes {
				out = append(out, n.Name)
			}
		}
		return out
	}
	for _, tc := range []struct {
		runner string
		last   string // the last node of its role
		at     int    // its place in the order
	}{
		{"k8s-work-3", "k8s-work-3", 14},
		{"k8s-ctrl-1", "k8s-ctrl-1", 2},
		{"none", "", -1},
	} {
		t.Run(tc.runner, func(t *testing.T) {
			r := drover(t, "plan", "--lab", "--to-talos", "v1.12.0", "--lab-runner-node", tc.runner, "--output", "json")
			var p planJSON
			if r.code != ExitOK || json.Unmarshal([]byte(r.stdout), &p) != nil {
				t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			got := order(p)
			if tc.last == "" {
				if p.RunsOn != nil || got[0] != "k8s-ctrl-1" || got[14] != "k8s-work-14" {
					t.Fatalf("from outside the cluster: runsOn %+v, order %v", p.RunsOn, got)
				}
				return
			}
			if got[tc.at] != tc.last || p.RunsOn == nil || p.RunsOn.Node != tc.runner || !p.RunsOn.HandOff || !strings.Contains(p.RunsOn.Note, "goes last") {
				t.Fatalf("order %v, runsOn %+v: want %s at %d", got, p.RunsOn, tc.last, tc.at)
			}
			text := drover(t, "plan", "--lab", "--to-talos", "v1.12.0", "--lab-runner-node", tc.runner)
			if !strings.Contains(text.stdout, "drover runs on "+tc.runner) || !strings.Contains(text.stdout, "(drover runs here)") {
				t.Fatalf("the plan does not say where drover runs:\n%s", text.stdout)
			}
		})
	}
}

// TestAHandOffThenResumeFinishesTheRun: a kept lab (--lab-state) plays the
// real path: the run reaches drover's own node, cordons it, exits 6 saying
// so; the continuation (--resume, from a runner pod that started on another
// node) finishes it. Every node ends at the target and uncordoned, and the
// journal is one run in two attempts, its chain intact.
func TestAHandOffThenResumeFinishesTheRun(t *testing.T) {
	dir := t.TempDir()
	state, jpath := filepath.Join(dir, "s.json"), filepath.Join(dir, "j.jsonl")
	args := []string{"upgrade", "--lab", "--lab-state", state, "--journal", jpath, "--to-talos", "v1.12.0", "--yes"}
	r := drover(t, args...)
	if r.code != ExitHandedOff || !strings.Contains(r.stderr, "drover: handed off: drover runs on k8s-work-7") || strings.Contains(r.stderr, "error") {
		t.Fatalf("exit %d, want 6 (handed off)\n%s", r.code, lastLines(r.stderr, 5))
	}
	st, err := lab.LoadState(state)
	if err != nil || st == nil || !st.VMs["k8s-work-7"].Unschedulable || st.VMs["k8s-work-7"].Talos != "v1.11.3" {
		t.Fatalf("after the hand-off drover's node is %+v (%v): want cordoned, untouched", st.VMs["k8s-work-7"], err)
	}
	r = drover(t, append(args, "--resume")...)
	if r.code != ExitOK || !strings.Contains(r.stdout, "Result: succeeded") {
		t.Fatalf("the continuation: exit %d\n%s", r.code, lastLines(r.stdout+r.stderr, 10))
	}
	if st, _ = lab.LoadState(state); st == nil {
		t.Fatal("no lab state")
	}
	for name, vm := range st.VMs {
		if vm.Talos != "v1.12.0" || vm.Unschedulable {
			t.Errorf("%s after the continuation: %+v", name, vm)
		}
	}
	if st.RunnerNode == "k8s-work-7" {
		t.Errorf("the continuation's runner pod runs on the node it handed off")
	}
	data, _ := os.ReadFile(jpath)
	log, err := journal.Read(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("the journal across both runs: %v", err)
	}
	runs := rollout.Runs(log.Entries)
	if len(runs) != 1 || runs[0].Attempts != 2 || runs[0].Result != "succeeded" {
		t.Fatalf("runs %+v: want one run, two attempts, succeeded", runs)
	}
	if !strings.Contains(string(data), `"step":"handoff"`) {
		t.Fatal("the journal has no hand-off entry")
	}
}

// TestTheLabPlaysTheContinuation: without --lab-state the lab plays the
// continuation itself; the timeline shows the hand-off and the new runner.
func TestTheLabPlaysTheContinuation(t *testing.T) {
	r := drover(t, "upgrade", "--lab", "--to-talos", "v1.12.0", "--yes")
	if r.code != ExitOK {
		t.Fatalf("exit %d\n%s", r.code, lastLines(r.stdout+r.stderr, 10))
	}
	for _, want := range []string{"k8s-work-7     handoff", "a new runner pod github-actions/cattle-upgrade-runner", "k8s-work-7     ✓ upgraded", "Result: succeeded"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("the timeline does not show %q", want)
		}
	}
}

// TestWhatCannotHandOffIsRefused: a run that would have to drain
// drover's own node without a hand-off (--only, --canary), or hand off
// where no other node could start a runner pod, is refused before any
// change.
func TestWhatCannotHandOffIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"--only drover's node", []string{"--only", "k8s-work-7"}, "--only k8s-work-7 would drain k8s-work-7, the node drover runs on"},
		{"a canary taking drover's node", []string{"--canary", "12"}, "--canary 12 would take k8s-work-7"},
		{"no other worker for a runner", []string{"--lab-nodes", "2"}, "no other node could start a runner pod like its own: cp-1: taint node-role.kubernetes.io/control-plane:NoSchedule not tolerated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state := filepath.Join(t.TempDir(), "s.json")
			r := drover(t, append([]string{"upgrade", "--lab", "--to-talos", "v1.12.0", "--yes", "--lab-state", state, "--journal", filepath.Join(t.TempDir(), "j.jsonl")}, tc.args...)...)
			if r.code != ExitBlocked || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("exit %d, want 4 naming %q\n%s", r.code, tc.want, lastLines(r.stderr, 3))
			}
			if st, _ := lab.LoadState(state); st != nil {
				for name, vm := range st.VMs {
					if vm.Unschedulable || vm.Talos != "v1.11.3" {
						t.Errorf("%s was touched: %+v", name, vm)
					}
				}
			}
		})
	}
}
