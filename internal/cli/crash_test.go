package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/journal"
	"github.com/prox-ops/drover/internal/lab"
	"github.com/prox-ops/drover/internal/rollout"
)

var (
	buildOnce sync.Once
	buildBin  string
	buildErr  error
)

// droverBinary builds drover once for the tests that need a real process
// (a crash, a signal).
func droverBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "drover-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildBin = filepath.Join(dir, "drover")
		if out, err := exec.Command("go", "build", "-o", buildBin, "../../cmd/drover").CombinedOutput(); err != nil {
			buildErr = errors.New(string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("build drover: %v", buildErr)
	}
	return buildBin
}

// TestCrashAtEveryStepThenResume is the lab's crash rehearsal, as a fault
// matrix: for a control-plane and a worker cattle node and a pets worker,
// drover is killed right after the journal records each step; the same
// command with --resume then finishes. Every run ends with every node at
// the target, no PDB violation, at most one control-plane node down, no
// etcd leader taken down, every destructive step of a control-plane node,
// resumed or not, preceded by its etcd guard (snapshot and hand-off), and
// every hook that succeeded run once (the example's beforeRun and afterRun;
// node hooks added for the crash in a node's hook).
func TestCrashAtEveryStepThenResume(t *testing.T) {
	bin := droverBinary(t)
	cattleCP := []string{"preflight", "etcd-guard", "cordon", "drain", "volumes", "etcd-leave", "destroy", "create", "wait-ready", "etcd-rejoin", "uncordon", "health", "soak"}
	cattleWorker := []string{"preflight", "hook", "cordon", "drain", "volumes", "destroy", "create", "wait-ready", "uncordon", "health", "soak"}
	petsWorker := []string{"preflight", "hook", "cordon", "drain", "volumes", "upgrade", "wait-ready", "uncordon", "health"}
	type tc struct{ node, step, to string }
	var cases []tc
	for _, s := range cattleCP {
		cases = append(cases, tc{"k8s-ctrl-2", s, "v1.12.0"})
	}
	for _, s := range cattleWorker {
		cases = append(cases, tc{"k8s-work-2", s, "v1.12.0"})
	}
	for _, s := range petsWorker {
		cases = append(cases, tc{"k8s-work-3", s, "v1.11.4"})
	}
	// The hand-off before drover's own node (where the lab's runner pod
	// runs), cattle and pets.
	self := runnerNode(t, "--config", "../../examples/prox-ops/drover.yaml")
	cases = append(cases, tc{self, "handoff", "v1.12.0"}, tc{self, "handoff", "v1.11.4"})
	if testing.Short() {
		// make test-unit: the step before the change (the volume wait) per
		// kind of node, the in-place change and the hand-offs; make test
		// runs every step.
		var few []tc
		for _, c := range cases {
			if c.step == "volumes" || c.step == "upgrade" || c.step == "handoff" {
				few = append(few, c)
			}
		}
		t.Logf("-short: %d of the %d crash points", len(few), len(cases))
		cases = few
	}
	// A canary secret in every secret variable, and (an operator slip) as
	// the cluster name, so drover really has it to print.
	const canary = "canary-crash-s3cret"
	example, err := os.ReadFile("../../examples/prox-ops/drover.yaml")
	if err != nil {
		t.Fatal(err)
	}
	env := os.Environ()
	for _, k := range config.DefaultSecretEnv {
		env = append(env, k+"="+canary)
	}
	for _, c := range cases {
		t.Run(c.node+":"+c.step+"@"+c.to, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "drover.yaml")
			text := strings.Replace(string(example), "name: prox-ops", "name: "+canary, 1)
			if c.step == "hook" {
				// The node's hooks, so that the crash comes in its first.
				text = strings.Replace(text, "\nhooks:\n", "\nhooks:\n  beforeNode: {image: 'busybox:1.37'}\n  afterNode: {image: 'busybox:1.37'}\n", 1)
			}
			write(t, cfg, text)
			state, jpath, report := filepath.Join(dir, "s.json"), filepath.Join(dir, "j.jsonl"), filepath.Join(dir, "r.json")
			args := []string{"upgrade", "--lab", "--config", cfg, "--lab-state", state, "--journal", jpath, "--report", report, "--to-talos", c.to, "--yes", "--output", "json"}
			crash := exec.Command(bin, append(args, "--lab-crash-at", c.node+":"+c.step)...)
			crash.Env = env
			out, err := crash.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 137 {
				t.Fatalf("the crash run: %v\n%s", err, lastLines(string(out), 5))
			}
			if c.step == "drain" && strings.HasPrefix(c.node, "k8s-work-") {
				// The saved lab keeps the pods the drain had not evicted
				// yet: the resumed drain has something to evict.
				st, err := lab.LoadState(state)
				if err != nil || st == nil {
					t.Fatalf("lab state after the crash: %v", err)
				}
				evictable := 0
				for _, p := range st.Pods {
					if p.Node == c.node && strings.HasPrefix(p.App, "apps/") {
						evictable++
					}
				}
				if evictable == 0 {
					t.Fatalf("the lab saved no app pod on %s: %+v", c.node, st.Pods)
				}
			}
			// Resumed, as the kit's workflow would, until the run ends: a
			// hand-off (exit 6) is continued with --resume once more.
			var stdout []byte
			var stderr strings.Builder
			for i := 0; ; i++ {
				resume := exec.Command(bin, append(args, "--resume")...)
				resume.Env = env
				stderr.Reset()
				resume.Stderr = &stderr
				stdout, err = resume.Output()
				if errors.As(err, &ee) && ee.ExitCode() == ExitHandedOff && i < 2 {
					continue
				}
				if err != nil {
					t.Fatalf("the resumed run: %v\n%s\n%s", err, stdout, lastLines(stderr.String(), 15))
				}
				break
			}
			j, _ := os.ReadFile(jpath)
			r, _ := os.ReadFile(report)
			for name, text := range map[string]string{"crash output": string(out), "stdout": string(stdout), "stderr": stderr.String(), "journal": string(j), "report": string(r)} {
				if strings.Contains(text, canary) {
					t.Errorf("the canary secret leaked into %s", name)
				}
			}
			var rep struct {
				Result string `json:"result"`
				Nodes  []struct {
					Name, Outcome string
				} `json:"nodes"`
				PDBViolations       int `json:"pdbViolations"`
				MaxControlPlaneDown int `json:"maxControlPlaneDown"`
				EtcdLeaderLost      int `json:"etcdLeaderLost"`
			}
			if err := json.Unmarshal(stdout, &rep); err != nil {
				t.Fatalf("%v\n%s", err, stdout)
			}
			if rep.Result != "succeeded" || rep.PDBViolations != 0 || rep.MaxControlPlaneDown > 1 || rep.EtcdLeaderLost != 0 {
				t.Fatalf("result %s, PDB violations %d, control-plane down %d, etcd leader lost %d", rep.Result, rep.PDBViolations, rep.MaxControlPlaneDown, rep.EtcdLeaderLost)
			}
			guardedEveryControlPlaneChange(t, j)
			hooksRanOnce(t, j, c.step == "hook")
			st, err := lab.LoadState(state)
			if err != nil || st == nil {
				t.Fatalf("lab state: %v", err)
			}
			if len(st.VMs) != 15 {
				t.Fatalf("%d VMs: a node was lost", len(st.VMs))
			}
			for name, vm := range st.VMs {
				if !vm.Running || vm.Talos != c.to || vm.Unschedulable {
					t.Errorf("%s after the resume: %+v", name, vm)
				}
			}
			if len(st.Etcd.Members) != 3 {
				t.Errorf("etcd has %d members after the resume", len(st.Etcd.Members))
			}
		})
	}
}

// runnerNode is the node the lab's runner pod (drover's) runs on.
func runnerNode(t *testing.T, args ...string) string {
	t.Helper()
	r := drover(t, append([]string{"plan", "--lab", "--to-talos", "v1.12.0", "--output", "json"}, args...)...)
	var p struct {
		RunsOn struct {
			Node string `json:"node"`
		} `json:"runsOn"`
	}
	if r.code != ExitOK || json.Unmarshal([]byte(r.stdout), &p) != nil || p.RunsOn.Node == "" {
		t.Fatalf("plan: exit %d, no runsOn\n%s%s", r.code, r.stdout, r.stderr)
	}
	return p.RunsOn.Node
}

// guardedEveryControlPlaneChange reads a journal: each control-plane
// node's destroy or upgrade is preceded, in the same process, by its etcd
// guard (health, snapshot, leadership hand-off) done; and every
// control-plane node was guarded at least once.
func guardedEveryControlPlaneChange(t *testing.T, journalText []byte) {
	t.Helper()
	log, err := journal.Read(bytes.NewReader(journalText))
	if err != nil {
		t.Fatal(err)
	}
	guarded := map[string]bool{}
	ever := map[string]bool{}
	for _, e := range log.Entries {
		cp := strings.HasPrefix(e.Node, "k8s-ctrl-")
		switch {
		case e.Header != nil:
			guarded = map[string]bool{} // a new process: nothing is guarded yet
		case cp && e.Step == rollout.StepEtcdGuard && e.Status == rollout.StatusDone:
			guarded[e.Node], ever[e.Node] = true, true
		case cp && (e.Step == rollout.StepDestroy || e.Step == rollout.StepUpgrade) && e.Status == rollout.StatusStarted && !guarded[e.Node]:
			t.Errorf("%s: %s started without its etcd guard in that process", e.Node, e.Step)
		}
	}
	for _, n := range []string{"k8s-ctrl-1", "k8s-ctrl-2", "k8s-ctrl-3"} {
		if !ever[n] {
			t.Errorf("%s was never guarded (no etcd snapshot)", n)
		}
	}
}

// hooksRanOnce reads a journal: beforeRun and afterRun succeeded exactly
// once across the crash and the resume, and, with node hooks, every
// node's beforeNode and afterNode succeeded once.
func hooksRanOnce(t *testing.T, journalText []byte, nodeHooks bool) {
	t.Helper()
	log, err := journal.Read(bytes.NewReader(journalText))
	if err != nil {
		t.Fatal(err)
	}
	done := map[string]int{}
	for _, e := range log.Entries {
		if e.Step == rollout.StepHook && e.Status == rollout.StatusDone {
			done[e.Detail+" "+e.Node]++
		}
	}
	want := map[string]int{"beforeRun ": 1, "afterRun ": 1}
	if nodeHooks {
		for _, n := range []string{"k8s-ctrl-1", "k8s-work-2", "k8s-work-14"} {
			want["beforeNode "+n], want["afterNode "+n] = 1, 1
		}
	}
	for k, n := range want {
		if done[k] != n {
			t.Errorf("hook %q succeeded %d times, want %d (all: %v)", k, done[k], n, done)
		}
	}
}

// TestResumeHaltedNodesAndBadJournals: a halted node stays halted on
// --resume until --retry-node names it; a corrupted or foreign journal is
// refused with exit 2.
func TestResumeHaltedNodesAndBadJournals(t *testing.T) {
	dir := t.TempDir()
	state, jpath := filepath.Join(dir, "s.json"), filepath.Join(dir, "j.jsonl")
	args := []string{"upgrade", "--lab", "--lab-state", state, "--journal", jpath, "--to-talos", "v1.12.0", "--yes", "--output", "json"}
	r := drover(t, append(args, "--lab-fault", "k8s-work-1=health-fail")...)
	if r.code != ExitHalted {
		t.Fatalf("first run: exit %d", r.code)
	}
	// The fault is gone (say the operator fixed the cause), but the node
	// stays halted without --retry-node.
	// Resuming changes nothing until the halted node is retried: exit 2,
	// naming the flag that would retry it.
	r = drover(t, append(args, "--resume")...)
	if r.code != ExitUsage || !strings.Contains(r.stderr, "--retry-node k8s-work-1") {
		t.Fatalf("resume without retry: exit %d %s", r.code, r.stderr)
	}
	r = droverContinued(t, append(args, "--resume", "--retry-node", "k8s-work-1")...)
	if r.code != ExitOK {
		t.Fatalf("resume with retry: exit %d\n%s", r.code, lastLines(r.stderr, 5))
	}
	if r := drover(t, append(args, "--resume")...); r.code != ExitOK || !strings.Contains(r.stderr, "Nothing to resume") {
		t.Fatalf("resume of a finished run: %d %s", r.code, r.stderr)
	}

	bad := filepath.Join(dir, "bad.jsonl")
	for name, content := range map[string]string{
		"corrupted": "{\"run\":\"r\",\"step\":\"run\",\"status\":\"started\"\ngarbage\n",
		"foreign":   "{\"time\":\"2026-01-01T00:00:00Z\",\"run\":\"r\",\"step\":\"run\",\"status\":\"started\",\"header\":{\"cluster\":\"other\",\"strategy\":\"cattle\",\"from\":\"x\",\"to\":\"y\"}}\n",
		"no header": "{\"time\":\"2026-01-01T00:00:00Z\",\"run\":\"r\",\"node\":\"k8s-work-1\",\"step\":\"drain\",\"status\":\"started\"}\n",
	} {
		write(t, bad, content)
		r := drover(t, "upgrade", "--lab", "--journal", bad, "--resume", "--to-talos", "v1.12.0", "--yes")
		if r.code != ExitUsage || !strings.Contains(r.stderr, "resume") {
			t.Errorf("%s journal: exit %d %s", name, r.code, r.stderr)
		}
	}
}

func TestHistoryListsTheRuns(t *testing.T) {
	dir := t.TempDir()
	jpath := filepath.Join(dir, "j.jsonl")
	if r := drover(t, "upgrade", "--lab", "--journal", jpath, "--to-talos", "v1.11.4", "--yes"); r.code != ExitOK {
		t.Fatal(r.stderr)
	}
	if r := drover(t, "upgrade", "--lab", "--journal", jpath, "--to-talos", "v1.12.0", "--yes", "--lab-fault", "k8s-work-1=health-fail"); r.code != ExitHalted {
		t.Fatal(r.stderr)
	}
	r := drover(t, "history", "--journal", jpath, "--output", "json")
	var runs []struct {
		Header   struct{ Strategy, To string } `json:"header"`
		Result   string                        `json:"result"`
		Attempts int                           `json:"attempts"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &runs); err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || runs[0].Header.Strategy != "pets" || runs[0].Result != "succeeded" || runs[1].Header.To != "Talos v1.12.0, Kubernetes v1.34.1" || runs[1].Result != "halted" {
		t.Fatalf("%+v", runs)
	}
	if r := drover(t, "history", "--journal", jpath); !strings.Contains(r.stdout, "RESULT") || !strings.Contains(r.stdout, "halted") {
		t.Fatal(r.stdout)
	}
}

// TestCrashDuringTheCanaryKeepsThePause: the canary is part of the run's
// identity (its journal header): drover killed during the canary, then
// resumed, still pauses after the canary (exit 5) having upgraded no other
// worker; the next resume does the rest.
func TestCrashDuringTheCanaryKeepsThePause(t *testing.T) {
	bin := droverBinary(t)
	for _, c := range []struct{ step, to string }{
		{"drain", "v1.12.0"}, {"destroy", "v1.12.0"}, {"health", "v1.12.0"}, {"soak", "v1.12.0"},
		{"upgrade", "v1.11.4"}, {"wait-ready", "v1.11.4"},
	} {
		t.Run(c.step+"@"+c.to, func(t *testing.T) {
			dir := t.TempDir()
			args := []string{"upgrade", "--lab", "--lab-state", filepath.Join(dir, "s.json"), "--journal", filepath.Join(dir, "j.jsonl"),
				"--to-talos", c.to, "--yes", "--output", "json"}
			crash := exec.Command(bin, append(args, "--canary", "1", "--lab-crash-at", "k8s-work-1:"+c.step)...)
			var ee *exec.ExitError
			if out, err := crash.CombinedOutput(); !errors.As(err, &ee) || ee.ExitCode() != 137 {
				t.Fatalf("the crash run: %v\n%s", err, lastLines(string(out), 5))
			}
			resume := exec.Command(bin, append(args, "--resume")...)
			var stderr strings.Builder
			resume.Stderr = &stderr
			stdout, err := resume.Output()
			if !errors.As(err, &ee) || ee.ExitCode() != ExitCanary {
				t.Fatalf("the resumed run did not pause after the canary: %v\n%s", err, lastLines(stderr.String(), 5))
			}
			var rep struct {
				Nodes []struct{ Name, Outcome string } `json:"nodes"`
			}
			if err := json.Unmarshal(stdout, &rep); err != nil {
				t.Fatal(err)
			}
			for _, n := range rep.Nodes {
				if strings.HasPrefix(n.Name, "k8s-work-") && n.Name != "k8s-work-1" && n.Outcome == "upgraded" {
					t.Errorf("%s was upgraded before the canary's pause", n.Name)
				}
			}
			for i := 0; ; i++ {
				next := exec.Command(bin, append(args, "--resume")...)
				out, err := next.CombinedOutput()
				if errors.As(err, &ee) && ee.ExitCode() == ExitHandedOff && i < 2 {
					continue
				}
				if err != nil {
					t.Fatalf("the run after the pause: %v\n%s", err, lastLines(string(out), 5))
				}
				break
			}
		})
	}
}
