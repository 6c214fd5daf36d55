package cli

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAHaltedCanaryResumesNothing: a canary worker that fails its gate
// halts the run; --resume then changes nothing (the control plane is not
// touched) until --retry-node names the halted node.
func TestAHaltedCanaryResumesNothing(t *testing.T) {
	dir := t.TempDir()
	j, state := filepath.Join(dir, "j.jsonl"), filepath.Join(dir, "s.json")
	args := []string{"upgrade", "--lab", "--lab-state", state, "--to-talos", "v1.12.0", "--yes", "--journal", j}
	if r := drover(t, append(args, "--canary", "1", "--lab-fault", "k8s-work-1=health-fail")...); r.code != ExitHalted {
		t.Fatalf("canary run: exit %d\n%s", r.code, lastLines(r.stderr, 5))
	}
	before, _ := os.ReadFile(j)
	r := drover(t, append(args, "--resume")...)
	if r.code != ExitUsage || !strings.Contains(r.stderr, "the run halted at k8s-work-1") || !strings.Contains(r.stderr, "--retry-node") {
		t.Fatalf("resume of a halted run: exit %d\n%s", r.code, lastLines(r.stderr+r.stdout, 5))
	}
	if after, _ := os.ReadFile(j); string(after) != string(before) {
		t.Errorf("the refused resume wrote to the journal")
	}
}

// TestCanaryIsNeverDroppedSilently: a --canary that cannot pause as asked
// is refused (exit 2) and says why; rollout.canary naming nodes the run
// does not change is filled from the other workers, and the plan says so.
func TestCanaryIsNeverDroppedSilently(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"only control-plane nodes", []string{"--only", "k8s-ctrl-1", "--canary", "1"}, "this run changes no worker"},
		{"more than the workers", []string{"--only", "k8s-work-1,k8s-work-2", "--canary", "3"}, "changes only 2 worker(s)"},
		{"nothing after it", []string{"--only", "k8s-work-1", "--canary", "1"}, "nothing is left to pause for"},
		{"an empty --only", []string{"--only", ""}, "names no node"},
		{"a stray comma", []string{"--only", "k8s-work-1,"}, `empty node name in "k8s-work-1,"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := drover(t, append([]string{"plan", "--lab", "--to-talos", "v1.12.0"}, tc.args...)...)
			if r.code != ExitUsage || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, want 2 with %q\n%s", r.code, tc.want, lastLines(r.stderr, 3))
			}
		})
	}
	dir := t.TempDir()
	data, err := os.ReadFile(exampleConfig)
	must(t, err)
	cfg := filepath.Join(dir, "drover.yaml")
	must(t, os.WriteFile(cfg, []byte(strings.Replace(string(data), "canary: [k8s-work-1, k8s-work-2]", "canary: [k8s-work-3, k8s-work-9]", 1)), 0o644))
	if !strings.Contains(string(data), "canary: [k8s-work-1, k8s-work-2]") {
		t.Fatal("the example has no rollout.canary line to change: the case was not made")
	}
	r := drover(t, "plan", "--lab", "--config", cfg, "--to-talos", "v1.12.0", "--only", "k8s-work-1,k8s-work-2,k8s-work-3", "--canary", "2", "--output", "json")
	if r.code != ExitOK {
		t.Fatalf("exit %d\n%s", r.code, lastLines(r.stderr, 5))
	}
	var p struct {
		Canary     []string `json:"canary"`
		CanaryNote string   `json:"canaryNote"`
	}
	must(t, json.Unmarshal([]byte(r.stdout), &p))
	if strings.Join(p.Canary, ",") != "k8s-work-3,k8s-work-1" || !strings.Contains(p.CanaryNote, "rollout.canary names k8s-work-9") {
		t.Errorf("canary %v, note %q", p.Canary, p.CanaryNote)
	}
}

// TestATargetOlderThanTheNodesIsRefused: no "nothing to do" for a
// downgrade: exit 2, naming what the nodes run.
func TestATargetOlderThanTheNodesIsRefused(t *testing.T) {
	r := drover(t, "upgrade", "--lab", "--to-talos", "v1.10.0", "--yes")
	if r.code != ExitUsage || !strings.Contains(r.stderr, "k8s-ctrl-1 runs Talos v1.11.3") || strings.Contains(r.stdout, "Nothing to do") {
		t.Errorf("exit %d\n%s%s", r.code, r.stdout, lastLines(r.stderr, 3))
	}
}

// TestRunFilesAreCheckedBeforeAnyChange: an output that cannot be written,
// or two of a run's files that are one, are refused with exit 2 before the
// first node is touched; only regular files are read.
func TestRunFilesAreCheckedBeforeAnyChange(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "drover.yaml")
	data, err := os.ReadFile(exampleConfig)
	must(t, err)
	must(t, os.WriteFile(cfg, data, 0o644))
	fifo := filepath.Join(dir, "fifo")
	must(t, syscall.Mkfifo(fifo, 0o600))
	state := filepath.Join(dir, "s.json")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"a report nobody can write", []string{"--report", filepath.Join(dir, "missing", "r.json")}, "--report " + filepath.Join(dir, "missing", "r.json") + ": cannot be created"},
		{"the report over the journal", []string{"--journal", filepath.Join(dir, "x.jsonl"), "--report", filepath.Join(dir, "x.jsonl")}, "--journal and --report both name"},
		{"the report over the config", []string{"--config", cfg, "--report", cfg}, "--config and --report both name"},
		{"the journal over the lab state", []string{"--lab-state", state, "--journal", state}, "--journal and --lab-state both name"},
		{"a FIFO as the config", []string{"--config", fifo}, "not a regular file (a named pipe (FIFO))"},
		{"a FIFO as the report", []string{"--report", fifo}, "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan result, 1)
			go func() {
				done <- drover(t, append([]string{"upgrade", "--lab", "--to-talos", "v1.12.0", "--yes"}, tc.args...)...)
			}()
			var r result
			select {
			case r = <-done:
			case <-time.After(time.Minute):
				t.Fatal("still running after a minute: a file held it")
			}
			if r.code != ExitUsage || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("exit %d, want 2 with %q\n%s", r.code, tc.want, lastLines(r.stderr, 3))
			}
			if strings.Contains(r.stdout, "[cordon]") || strings.Contains(r.stdout, "cordon") {
				t.Errorf("a node was touched before the refusal")
			}
		})
	}
}

// TestAJournalTooLargeIsAnErrorNotACut: over 64 MiB, history and resume
// refuse the journal rather than read its first part as the whole.
func TestAJournalTooLargeIsAnErrorNotACut(t *testing.T) {
	j := filepath.Join(t.TempDir(), "big.jsonl")
	f, err := os.Create(j)
	must(t, err)
	must(t, f.Truncate(65<<20))
	must(t, f.Close())
	r := drover(t, "history", "--journal", j)
	if r.code != ExitUsage || !strings.Contains(r.stderr, "over the 64 MiB drover reads") {
		t.Errorf("history: exit %d\n%s", r.code, r.stderr)
	}
}

// TestTheReportOfACrashedRunSaysInterrupted: a journal that ends without
// the run's end is an interrupted run, its node mid-step interrupted, not
// failed.
func TestTheReportOfACrashedRunSaysInterrupted(t *testing.T) {
	bin := droverBinary(t)
	dir := t.TempDir()
	j := filepath.Join(dir, "j.jsonl")
	crash := exec.Command(bin, "upgrade", "--lab", "--lab-state", filepath.Join(dir, "s.json"), "--journal", j, "--to-talos", "v1.11.4", "--yes",
		"--lab-crash-at", "k8s-work-2:upgrade")
	var ee *exec.ExitError
	if err := crash.Run(); !errors.As(err, &ee) || ee.ExitCode() != 137 {
		t.Fatalf("crash run: %v", err)
	}
	r := drover(t, "report", "--journal", j)
	if r.code != ExitOK {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "upgrade interrupted") || !strings.Contains(r.stdout, "| k8s-work-2 |") {
		t.Fatalf("report:\n%s", r.stdout)
	}
	for _, line := range strings.Split(r.stdout, "\n") {
		if strings.HasPrefix(line, "| k8s-work-2 |") && !strings.Contains(line, "interrupted") {
			t.Errorf("the crashed node is not interrupted: %s", line)
		}
	}
}

// TestLabShapes: --lab-nodes 0 is refused, small labs are born healthy,
// four workers at once keep one whole lab state and journal, and a
// rehearsed crash on a node the run does not change is refused.
func TestLabShapes(t *testing.T) {
	if r := drover(t, "plan", "--lab", "--lab-nodes", "0", "--to-talos", "v1.12.0"); r.code != ExitUsage {
		t.Errorf("--lab-nodes 0: exit %d", r.code)
	}
	for _, n := range []string{"1", "3"} {
		if r := drover(t, "health", "--lab", "--lab-nodes", n); r.code != ExitOK {
			t.Errorf("a %s-node lab is born unhealthy: exit %d\n%s", n, r.code, lastLines(r.stdout, 5))
		}
	}
	if r := drover(t, "upgrade", "--lab", "--to-talos", "v1.11.4", "--yes", "--only", "k8s-work-1", "--lab-crash-at", "k8s-work-2:drain"); r.code != ExitUsage || !strings.Contains(r.stderr, "the crash would never come") {
		t.Errorf("a crash outside --only: exit %d\n%s", r.code, r.stderr)
	}
	dir := t.TempDir()
	state, j := filepath.Join(dir, "s.json"), filepath.Join(dir, "j.jsonl")
	r := droverContinued(t, "upgrade", "--lab", "--lab-nodes", "24", "--lab-parallel-workers", "4", "--lab-state", state, "--journal", j,
		"--to-talos", "v1.12.0", "--yes", "--output", "json")
	if r.code != ExitOK {
		t.Fatalf("four workers at once with a kept lab: exit %d\n%s", r.code, lastLines(r.stderr, 5))
	}
	if h := drover(t, "history", "--journal", j); h.code != ExitOK {
		t.Errorf("the journal of four parallel workers does not read back: %s", h.stderr)
	}
}
