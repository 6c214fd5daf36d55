package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/notify"
	"github.com/prox-ops/drover/internal/testenv"
)

type result struct {
	code           int
	stdout, stderr string
}

// drover runs the CLI in-process, as a non-interactive session.
func drover(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	s := testStreams(t, &out, &errb)
	code := Run(context.Background(), s, args)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// droverContinued runs drover like drover and, while the run hands off
// (exit 6), plays the continuation as the kit's workflow does: the same
// command with --resume (and without --only or --canary), from "another
// runner". It returns the last run's result.
func droverContinued(t *testing.T, args ...string) result {
	t.Helper()
	r := drover(t, args...)
	for i := 0; r.code == ExitHandedOff; i++ {
		if i == 3 || !strings.Contains(r.stderr, "handed off: drover runs on") {
			t.Fatalf("hand-off %d: exit %d\n%s", i+1, r.code, lastLines(r.stderr, 5))
		}
		r = drover(t, continuation(args)...)
	}
	return r
}

// continuation is a run's command line as its continuation runs it.
func continuation(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "--only", "--canary", "--retry-node":
			i++
			continue
		case "--resume":
			continue
		}
		out = append(out, args[i])
	}
	return append(out, "--resume")
}

type reportNode struct {
	Name            string   `json:"name"`
	Role            string   `json:"role"`
	Batch           int      `json:"batch"`
	Outcome         string   `json:"outcome"`
	From            string   `json:"from"`
	To              string   `json:"to"`
	DurationSeconds float64  `json:"durationSeconds"`
	FailedChecks    []string `json:"failedChecks"`
	Reason          string   `json:"reason"`
}

type reportJSON struct {
	Result                   string       `json:"result"`
	Strategy                 string       `json:"strategy"`
	Nodes                    []reportNode `json:"nodes"`
	SimulatedDurationSeconds float64      `json:"simulatedDurationSeconds"`
	SkippedPreflights        []string     `json:"skippedPreflights"`
	KnownBeforeRun           []string     `json:"knownBeforeRun"`
	PDBViolations            *int         `json:"pdbViolations"`
	MaxControlPlaneDown      *int         `json:"maxControlPlaneDown"`
	Error                    string       `json:"error"`
	Hooks                    []struct {
		Point, Node, Status string
	} `json:"hooks"`
}

func decodeReport(t *testing.T, r result) reportJSON {
	t.Helper()
	var rep reportJSON
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("stdout is not a JSON report: %v\n%s\nstderr:\n%s", err, r.stdout, r.stderr)
	}
	return rep
}

func TestUpgradeLabCattleAcceptance(t *testing.T) {
	start := time.Now()
	r := drover(t, "upgrade", "--lab", "--to-talos", "v1.12.0", "--yes", "--output", "json")
	wall := time.Since(start)
	if r.code != ExitOK {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	rep := decodeReport(t, r)
	if rep.Result != "succeeded" || rep.Strategy != "cattle" || len(rep.Nodes) != 15 {
		t.Fatalf("result %s strategy %s nodes %d", rep.Result, rep.Strategy, len(rep.Nodes))
	}
	for i, n := range rep.Nodes {
		if n.Outcome != "upgraded" || n.From != "v1.11.3" || n.To != "v1.12.0" || n.DurationSeconds <= 0 {
			t.Errorf("node %s: %+v", n.Name, n)
		}
		if i < 3 && (n.Role != "controlplane" || n.Batch != i+1) {
			t.Errorf("node %d is %s (%s) in batch %d; the control plane goes first, one per batch", i, n.Name, n.Role, n.Batch)
		}
	}
	if rep.PDBViolations == nil || *rep.PDBViolations != 0 || rep.MaxControlPlaneDown == nil || *rep.MaxControlPlaneDown != 1 {
		t.Errorf("pdbViolations %v, maxControlPlaneDown %v", rep.PDBViolations, rep.MaxControlPlaneDown)
	}
	// An upgrade that takes well over an hour plays in seconds.
	if rep.SimulatedDurationSeconds < 3600 {
		t.Errorf("simulated duration %.0fs: the lab is not simulating realistic steps", rep.SimulatedDurationSeconds)
	}
	t.Logf("simulated %s in %s of wall time", time.Duration(rep.SimulatedDurationSeconds)*time.Second, wall.Round(time.Millisecond))
	if !strings.Contains(r.stderr, "k8s-ctrl-1") || !strings.Contains(r.stderr, "drain") {
		t.Errorf("no live progress on stderr:\n%s", r.stderr)
	}
}

func TestUpgradeLabOutcomes(t *testing.T) {
	tests := []struct {
		name         string
		args         []string
		wantCode     int
		wantResult   string
		wantStrategy string
		check        func(t *testing.T, rep reportJSON)
	}{
		{name: "patch takes the pets strategy", args: []string{"--to-talos", "v1.11.4"}, wantCode: ExitOK, wantResult: "succeeded", wantStrategy: "pets"},
		{name: "major without approval is blocked", args: []string{"--to-talos", "v2.0.0"}, wantCode: ExitBlocked, wantResult: "blocked", wantStrategy: "cattle",
			check: func(t *testing.T, rep reportJSON) {
				for _, n := range rep.Nodes {
					if n.Outcome != "untouched" {
						t.Errorf("%s %s on a blocked run", n.Name, n.Outcome)
					}
				}
				if !strings.Contains(rep.Error, "--approve") {
					t.Errorf("error %q does not say how to approve", rep.Error)
				}
			}},
		{name: "major with approval succeeds", args: []string{"--to-talos", "v2.0.0", "--approve"}, wantCode: ExitOK, wantResult: "succeeded", wantStrategy: "cattle"},
		{name: "health-fail rolls back and halts", args: []string{"--to-talos", "v1.12.0", "--lab-fault", "k8s-work-1=health-fail"}, wantCode: ExitHalted, wantResult: "halted", wantStrategy: "cattle",
			check: func(t *testing.T, rep reportJSON) {
				after := false
				for _, n := range rep.Nodes {
					if n.Name == "k8s-work-1" {
						after = true
						if n.Outcome != "rolled-back" || len(n.FailedChecks) == 0 || n.FailedChecks[0] != "Pod Health" {
							t.Errorf("k8s-work-1: %+v", n)
						}
						continue
					}
					if after && n.Outcome != "untouched" {
						t.Errorf("%s is %s after the halt", n.Name, n.Outcome)
					}
				}
			}},
		{name: "rollback-fails exits 3", args: []string{"--to-talos", "v1.12.0", "--lab-fault", "k8s-work-1=rollback-fails"}, wantCode: ExitRollbackFailed, wantResult: "rollback-failed", wantStrategy: "cattle"},
		{name: "drain-blocked is caught by the drain preflight", args: []string{"--to-talos", "v1.12.0", "--lab-fault", "k8s-work-1=drain-blocked"}, wantCode: ExitBlocked, wantResult: "blocked", wantStrategy: "cattle",
			check: func(t *testing.T, rep reportJSON) {
				for _, want := range []string{"NAMESPACE", "apps", "ledger-k8s-work-1", "Deployment/ledger-k8s-work-1", "single-replica", "--skip-drain-preflight"} {
					if !strings.Contains(rep.Error, want) {
						t.Errorf("error lacks %q:\n%s", want, rep.Error)
					}
				}
			}},
		{name: "drain-blocked without the preflight names the PDB", args: []string{"--to-talos", "v1.12.0", "--lab-fault", "k8s-work-1=drain-blocked", "--skip-drain-preflight"}, wantCode: ExitHalted, wantResult: "halted", wantStrategy: "cattle",
			check: func(t *testing.T, rep reportJSON) {
				if len(rep.SkippedPreflights) != 1 || rep.SkippedPreflights[0] != "drain preflight" {
					t.Errorf("skipped preflights %v: the report must say the drain preflight was skipped", rep.SkippedPreflights)
				}
				if !strings.Contains(rep.Error, "timed out after 5m0s") || !strings.Contains(rep.Error, "PodDisruptionBudget apps/ledger-k8s-work-1") || !strings.Contains(rep.Error, "uncordoned") {
					t.Errorf("error %q does not name the timeout, the blocking PDB and the uncordon", rep.Error)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"upgrade", "--lab", "--yes", "--output", "json"}, tc.args...)
			r := drover(t, args...)
			if r.code != tc.wantCode {
				t.Fatalf("exit %d, want %d\nstderr:\n%s", r.code, tc.wantCode, lastLines(r.stderr, 5))
			}
			rep := decodeReport(t, r)
			if rep.Result != tc.wantResult || rep.Strategy != tc.wantStrategy {
				t.Fatalf("result %s strategy %s, want %s %s", rep.Result, rep.Strategy, tc.wantResult, tc.wantStrategy)
			}
			if tc.check != nil {
				tc.check(t, rep)
			}
		})
	}
}

func TestUpgradeNonInteractiveWithoutYesIsBlocked(t *testing.T) {
	r := drover(t, "upgrade", "--lab", "--to-talos", "v1.12.0")
	if r.code != ExitBlocked || !strings.Contains(r.stderr, "--yes") {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestUpgradeTableOutput(t *testing.T) {
	r := drover(t, "upgrade", "--lab", "--to-talos", "v1.11.4", "--yes")
	if r.code != ExitOK {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	for _, want := range []string{"NODE", "OUTCOME", "k8s-work-14", "upgraded", "Result: succeeded", "(simulated)", "PDB violations: 0"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("table output lacks %q", want)
		}
	}
}

func TestUpgradeWritesJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.jsonl")
	r := drover(t, "upgrade", "--lab", "--to-talos", "v1.11.4", "--yes", "--output", "json", "--journal", path)
	if r.code != ExitOK {
		t.Fatalf("exit %d", r.code)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) < 15*6 || !strings.Contains(lines[0], `"step":"run"`) || !strings.Contains(lines[len(lines)-1], `"detail":"succeeded"`) {
		t.Fatalf("journal has %d lines, first %s, last %s", len(lines), lines[0], lines[len(lines)-1])
	}
}

func TestPlanLab(t *testing.T) {
	r := drover(t, "plan", "--lab", "--to-talos", "v1.12.0", "--output", "json")
	if r.code != ExitOK {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	var p struct {
		Strategy string `json:"strategy"`
		From     string `json:"from"`
		To       string `json:"to"`
		Batches  []struct {
			Nodes []struct{ Name, Role, Host string } `json:"nodes"`
		} `json:"batches"`
		ETASeconds float64 `json:"etaSeconds"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
		t.Fatal(err)
	}
	count := 0
	for i, b := range p.Batches {
		cps, hosts := 0, map[string]bool{}
		for _, n := range b.Nodes {
			count++
			if n.Role == "controlplane" {
				cps++
			}
			if hosts[n.Host] {
				t.Errorf("batch %d holds two nodes of host %s", i, n.Host)
			}
			hosts[n.Host] = true
		}
		if cps > 1 {
			t.Errorf("batch %d holds %d control-plane nodes", i, cps)
		}
	}
	if count != 15 || p.Strategy != "cattle" || p.From != "v1.11.3" || p.To != "v1.12.0" || p.ETASeconds <= 0 {
		t.Fatalf("plan: %d nodes, %+v", count, p)
	}
}

func TestPlanTable(t *testing.T) {
	r := drover(t, "plan", "--config", "../../examples/prox-ops/drover.yaml", "--from-talos", "v1.11.3", "--to-talos", "v1.11.4")
	if r.code != ExitOK {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	for _, want := range []string{"BATCH", "k8s-ctrl-1", "worker (1 GPU)", "v1.11.3 -> v1.11.4", "pets", "15 nodes in 15 batches", "ETA"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("plan lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		args         []string
		wantStrategy string
		wantLabel    string
		wantApproval bool
	}{
		{[]string{"--from", "v1.11.3", "--to", "v1.11.4"}, "pets", "upgrade-pets", false},
		{[]string{"--from", "1.11.3", "--to", "1.12.0"}, "cattle", "upgrade-cattle", false},
		{[]string{"--from", "v1.11.3", "--to", "v2.0.0"}, "cattle", "upgrade-cattle", true},
		{[]string{"--lab", "--to-talos", "v1.12.0"}, "cattle", "upgrade-cattle", false},
	}
	for _, tc := range tests {
		r := drover(t, append([]string{"classify", "--output", "json"}, tc.args...)...)
		if r.code != ExitOK {
			t.Fatalf("%v: exit %d %s", tc.args, r.code, r.stderr)
		}
		var d map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &d); err != nil {
			t.Fatal(err)
		}
		if d["strategy"] != tc.wantStrategy || d["label"] != tc.wantLabel || d["approvalRequired"] != tc.wantApproval || d["rationale"] == "" {
			t.Errorf("%v: %v", tc.args, d)
		}
		if len(d) != 4 {
			t.Errorf("classify JSON has fields %v, want exactly strategy, label, approvalRequired, rationale", d)
		}
	}
}

func TestClassifyFromVariablesFiles(t *testing.T) {
	dir := t.TempDir()
	before := filepath.Join(dir, "before.tf")
	after := filepath.Join(dir, "after.tf")
	write(t, before, "variable \"talos_version\" {\n  default = \"v1.11.3\"\n}\nvariable \"kubernetes_version\" {\n  default = \"v1.34.1\"\n}\n")
	write(t, after, "variable \"talos_version\" {\n  default = \"v1.11.3\"\n}\nvariable \"kubernetes_version\" {\n  default = \"v1.34.2\"\n}\n")
	r := drover(t, "classify", "--vars-before", before, "--vars-after", after)
	if r.code != ExitOK || !strings.Contains(r.stdout, "strategy:  pets") || !strings.Contains(r.stdout, "Kubernetes v1.34.1 -> v1.34.2") {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "drover.yaml")
	write(t, bad, "cluster:\n  name: x\nnodes:\n  - name: a\n    role: controlplane\n    ip: 127.0.0.1\n  - name: a\n    role: worker\n    ip: 127.0.0.2\n")
	big := filepath.Join(dir, "big.yaml")
	write(t, big, "# "+strings.Repeat("x", 1<<20)+"\n")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad config names the field and line", []string{"plan", "--config", bad, "--from-talos", "v1.11.3", "--to-talos", "v1.12.0"}, "line 7: nodes[1].name: duplicate node name"},
		{"missing config", []string{"plan", "--to-talos", "v1.12.0"}, "--config"},
		{"bad version", []string{"plan", "--lab", "--to-talos", "v1.12"}, "--to-talos"},
		{"pre-release refused", []string{"plan", "--lab", "--to-talos", "v1.12.0-beta.0"}, "pre-release"},
		{"downgrade refused", []string{"classify", "--from", "v1.12.0", "--to", "v1.11.0"}, "downgrade"},
		{"unknown fault kind", []string{"upgrade", "--lab", "--to-talos", "v1.12.0", "--yes", "--lab-fault", "k8s-work-1=explode"}, "unknown kind"},
		{"fault on an unknown node", []string{"upgrade", "--lab", "--to-talos", "v1.12.0", "--yes", "--lab-fault", "k8s-work-99=health-fail"}, "k8s-work-99"},
		{"unknown flag", []string{"plan", "--lab", "--frobnicate"}, "unknown flag"},
		{"bad output format", []string{"plan", "--lab", "--to-talos", "v1.12.0", "-o", "xml"}, "--output"},
		{"a real upgrade without cluster access", []string{"upgrade", "--config", "../../examples/prox-ops/drover.yaml", "--from-talos", "v1.11.3", "--to-talos", "v1.12.0", "--yes", "--report", filepath.Join(dir, "usage-report.json")}, "--kubeconfig"},
		{"an unknown command", []string{"upgrad", "--lab"}, `unknown command "upgrad" for "drover"; did you mean upgrade?`},
		{"an extra argument", []string{"plan", "--lab", "--to-talos", "v1.12.0", "k8s-work-1"}, `unknown command "k8s-work-1" for "drover plan"`},
		{"a device as the configuration", []string{"plan", "--config", "/dev/zero", "--to-talos", "v1.12.0"}, "not a regular file"},
		{"a directory as the configuration", []string{"plan", "--config", dir, "--to-talos", "v1.12.0"}, "not a regular file"},
		{"a configuration over 1 MiB", []string{"plan", "--config", big, "--to-talos", "v1.12.0"}, "more than the 1048576 a configuration may have"},
		{"a bad ConfigMap journal name", []string{"upgrade", "--lab", "--to-talos", "v1.12.0", "--yes", "--journal", "configmap:Bad_Name"}, "DNS"},
		{"a git range that is an option", []string{"plan", "--lab", "--git-range", "--output=pwned..HEAD"}, "git would read it as an option"},
		{"a git range with a command", []string{"classify", "--git-range", "$(touch pwned)..HEAD"}, "is not allowed"},
		{"--only with an unknown node", []string{"plan", "--lab", "--to-talos", "v1.12.0", "--only", "k8s-work-99"}, "--only k8s-work-99: no such node"},
		{"--only on a resume", []string{"upgrade", "--lab", "--to-talos", "v1.12.0", "--yes", "--resume", "--journal", filepath.Join(dir, "j.jsonl"), "--only", "k8s-work-1"}, "--resume continues the journal's run"},
		{"a negative canary", []string{"plan", "--lab", "--to-talos", "v1.12.0", "--canary", "-1"}, "--canary -1"},
		{"a lab start that is not a version", []string{"plan", "--lab", "--to-talos", "v1.12.0", "--lab-talos", "latest"}, "--lab-talos"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := drover(t, tc.args...)
			if r.code != ExitUsage {
				t.Fatalf("exit %d, want 2\n%s", r.code, r.stderr)
			}
			if !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("stderr %q lacks %q", r.stderr, tc.want)
			}
			// A usage error touches nothing: not even a report.
			if _, err := os.Stat(filepath.Join(dir, "usage-report.json")); err == nil {
				t.Fatal("a usage error wrote a report")
			}
		})
	}
}

func TestCompatibilityGates(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     string
	}{
		{"skipping a minor is refused", []string{"plan", "--lab", "--to-talos", "v1.13.0"}, ExitBlocked, "one minor at a time"},
		{"unless allowed", []string{"plan", "--lab", "--to-talos", "v1.13.0", "--allow-skip-minor"}, ExitOK, "Talos minor hops: v1.11 -> v1.12 -> v1.13"},
		{"an unsupported pair is refused", []string{"plan", "--lab", "--to-talos", "v1.12.0", "--to-kubernetes", "v1.36.0", "--allow-skip-minor"}, ExitBlocked, "supports Kubernetes v1.30 to v1.35"},
		{"Kubernetes skipping a minor is refused", []string{"plan", "--lab", "--to-talos", "v1.12.0", "--to-kubernetes", "v1.36.0"}, ExitBlocked, "Kubernetes v1.34.1 -> v1.36.0 skips a minor"},
		{"the skew policy is checked", []string{"plan", "--lab", "--lab-kubernetes", "v1.31.0", "--to-talos", "v1.12.0", "--to-kubernetes", "v1.35.0", "--allow-skip-minor"}, ExitBlocked, "a kubelet may be at most 3 minors older than kube-apiserver v1.35.0"},
		{"a supported pair plans", []string{"plan", "--lab", "--to-talos", "v1.12.0", "--to-kubernetes", "v1.35.0"}, ExitOK, "Talos minor hops: v1.11 -> v1.12\nKubernetes minor hops: v1.34 -> v1.35"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := drover(t, tc.args...)
			if r.code != tc.wantCode || !strings.Contains(r.stdout+r.stderr, tc.want) {
				t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	r := drover(t, "version")
	if r.code != ExitOK || !strings.HasPrefix(r.stdout, "drover dev (commit none") {
		t.Fatalf("%d %q", r.code, r.stdout)
	}
}

// TestCanaryThenResume: --canary 1 upgrades one worker, pauses with exit 5
// and a paused journal; --resume does the rest.
func TestCanaryThenResume(t *testing.T) {
	dir := t.TempDir()
	j := filepath.Join(dir, "j.jsonl")
	state := filepath.Join(dir, "lab.json")
	r := drover(t, "upgrade", "--lab", "--lab-state", state, "--to-talos", "v1.12.0", "--yes", "--canary", "1", "--journal", j, "--output", "json")
	if r.code != ExitCanary || !strings.Contains(r.stderr, "drover: paused: the canary (k8s-work-1) is upgraded and healthy") {
		t.Fatalf("exit %d, want 5\n%s", r.code, lastLines(r.stderr, 5))
	}
	rep := decodeReport(t, r)
	upgraded := 0
	for _, n := range rep.Nodes {
		if n.Outcome == "upgraded" {
			upgraded++
			if n.Name != "k8s-work-1" {
				t.Errorf("%s was upgraded with the canary", n.Name)
			}
		}
	}
	if rep.Result != "canary-paused" || upgraded != 1 {
		t.Fatalf("result %s, %d upgraded", rep.Result, upgraded)
	}
	data, _ := os.ReadFile(j)
	if !strings.Contains(string(data), "paused after the canary: k8s-work-1") {
		t.Fatalf("the journal does not say it paused:\n%s", lastLines(string(data), 3))
	}
	r = droverContinued(t, "upgrade", "--lab", "--lab-state", state, "--to-talos", "v1.12.0", "--yes", "--resume", "--journal", j, "--output", "json")
	if r.code != ExitOK {
		t.Fatalf("resume: exit %d\n%s", r.code, lastLines(r.stderr, 5))
	}
	rep = decodeReport(t, r)
	for _, n := range rep.Nodes {
		if n.Name == "k8s-work-1" && n.Outcome == "upgraded" {
			t.Error("the resume upgraded the canary again")
		}
	}
	if rep.Result != "succeeded" {
		t.Fatalf("resume: %s", rep.Result)
	}
}

func TestOnly(t *testing.T) {
	r := drover(t, "upgrade", "--lab", "--to-talos", "v1.12.0", "--yes", "--only", "k8s-work-2,k8s-ctrl-2", "--output", "json")
	if r.code != ExitOK {
		t.Fatalf("exit %d\n%s", r.code, lastLines(r.stderr, 5))
	}
	var order []string
	for _, n := range decodeReport(t, r).Nodes {
		if n.Outcome == "upgraded" {
			order = append(order, n.Name)
		}
	}
	if strings.Join(order, " ") != "k8s-ctrl-2 k8s-work-2" {
		t.Fatalf("upgraded %v, want the control-plane node first, then the worker, and nothing else", order)
	}
	// The lab's Nodes got their Events, as a real cluster's would.
	if !strings.Contains(r.stderr, "lab: drover recorded") || !strings.Contains(r.stderr, "Upgraded 2") || !strings.Contains(r.stderr, "Cordoned 2") {
		t.Errorf("no Node events in the lab:\n%s", lastLines(r.stderr, 3))
	}
}

func TestVersionFromBuildInfo(t *testing.T) {
	installed := &debug.BuildInfo{Main: debug.Module{Path: "github.com/prox-ops/drover", Version: "v0.3.1"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "4f55deb0123456789"}}}
	tests := []struct {
		name                    string
		ldVersion, ldCommit     string
		bi                      *debug.BuildInfo
		wantVersion, wantCommit string
	}{
		{"a release sets both with ldflags", "v0.3.1", "abc1234", installed, "v0.3.1", "abc1234"},
		{"go install module@version records the module version", "dev", "none", installed, "v0.3.1", "4f55deb"},
		{"a build from a checkout", "dev", "none", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev", "none"},
		{"no build info", "dev", "none", nil, "dev", "none"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, c := versionFrom(tc.ldVersion, tc.ldCommit, tc.bi)
			if v != tc.wantVersion || c != tc.wantCommit {
				t.Fatalf("got %s %s, want %s %s", v, c, tc.wantVersion, tc.wantCommit)
			}
		})
	}
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func TestUpgradeAsksOnATerminal(t *testing.T) {
	for _, tc := range []struct {
		answer   string
		wantCode int
	}{{"yes\n", ExitOK}, {"no\n", ExitBlocked}} {
		var out, errb bytes.Buffer
		s := testStreams(t, &out, &errb)
		s.In, s.IsTerminal = strings.NewReader(tc.answer), func() bool { return true }
		code := Run(context.Background(), s, []string{"upgrade", "--lab", "--to-talos", "v1.11.4"})
		if code != tc.wantCode {
			t.Fatalf("answer %q: exit %d, want %d\n%s", tc.answer, code, tc.wantCode, errb.String())
		}
		if !strings.Contains(out.String(), "BATCH") || !strings.Contains(out.String(), "Type yes to go on") {
			t.Fatalf("the plan was not shown before asking:\n%s", out.String())
		}
	}
}

// testStreams is a non-interactive session with no cluster access at all:
// no KUBECONFIG, an empty home and no in-cluster service account, so no
// test can reach a developer's real cluster.
func testStreams(t *testing.T, out, errb *bytes.Buffer) Streams {
	return Streams{
		In: strings.NewReader(""), Out: out, Err: errb, IsTerminal: func() bool { return false },
		Getenv: func(string) string { return "" }, Home: t.TempDir(),
		InCluster: func() (*rest.Config, error) { return nil, rest.ErrNotInCluster },
	}
}

func TestHealthCommand(t *testing.T) {
	r := drover(t, "health", "--lab", "--node", "k8s-work-4", "--output", "json")
	if r.code != ExitOK {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	var h struct {
		Node   string `json:"node"`
		Passed bool   `json:"passed"`
		Checks []struct {
			Name        string   `json:"name"`
			Passed      bool     `json:"passed"`
			Skipped     bool     `json:"skipped"`
			Attempts    int      `json:"attempts"`
			DurationMs  *int64   `json:"durationMs"`
			Diagnostics []string `json:"diagnostics"`
		} `json:"checks"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &h); err != nil {
		t.Fatal(err)
	}
	if h.Node != "k8s-work-4" || !h.Passed {
		t.Fatalf("%+v", h)
	}
	// A healthy node passes rollout.healthPasses (2) runs in a row: each
	// check ran twice.
	if len(h.Checks) != 8 {
		t.Fatalf("%d checks, want the 8 built-in ones", len(h.Checks))
	}
	for _, c := range h.Checks {
		if !c.Passed || c.Skipped || c.Attempts != 2 || c.DurationMs == nil {
			t.Errorf("check %+v on a healthy GPU node", c)
		}
	}

	r = drover(t, "health", "--lab", "--node", "k8s-work-1", "--lab-fault", "k8s-work-1=dns-down", "--lab-fault", "k8s-work-2=flux-failed", "--output", "markdown")
	if r.code != ExitHalted {
		t.Fatalf("exit %d, want 1", r.code)
	}
	for _, want := range []string{"### ❌ Node k8s-work-1:", "(failed: Flux Reconciliation, DNS Resolution, Network Connectivity)", "| DNS Resolution | FAILED | 3 |", "| GPU Availability | skipped |"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("markdown lacks %q:\n%s", want, r.stdout)
		}
	}
	if r.stderr != "" {
		t.Errorf("the verdict was printed twice: %q", r.stderr)
	}
}

func TestPreflightHealthBlocksOnlyWhatIsCritical(t *testing.T) {
	// --lab-faults-now makes a health fault show before any upgrade: the
	// cluster is already unhealthy. A crash-looping kube-system pod is
	// critical: the run is blocked before any change.
	r := drover(t, "upgrade", "--lab", "--to-talos", "v1.12.0", "--yes", "--output", "json", "--lab-fault", "k8s-work-1=health-fail", "--lab-faults-now")
	if r.code != ExitBlocked {
		t.Fatalf("exit %d\n%s", r.code, lastLines(r.stderr, 5))
	}
	rep := decodeReport(t, r)
	if !strings.Contains(rep.Error, "preflight health") || !strings.Contains(rep.Error, "Pod Health on k8s-work-1") {
		t.Fatalf("error %q", rep.Error)
	}
	// Ceph HEALTH_WARN before the run is known, not blocking: the run goes
	// on, its gates judge what is new, and the report lists it.
	r = drover(t, "upgrade", "--lab", "--to-talos", "v1.12.0", "--yes", "--output", "json", "--lab-fault", "k8s-work-1=ceph-warn", "--lab-faults-now")
	if r.code != ExitOK {
		t.Fatalf("exit %d\n%s", r.code, lastLines(r.stderr, 10))
	}
	if rep := decodeReport(t, r); len(rep.KnownBeforeRun) != 1 || !strings.Contains(rep.KnownBeforeRun[0], "Storage Health: CephCluster rook-ceph/rook-ceph is HEALTH_WARN") {
		t.Fatalf("known before the run %q", rep.KnownBeforeRun)
	}
	r = drover(t, "upgrade", "--lab", "--to-talos", "v1.11.4", "--yes", "--output", "json", "--lab-fault", "k8s-work-1=health-fail", "--lab-faults-now", "--skip-preflight-health")
	rep = decodeReport(t, r)
	if !slices.Contains(rep.SkippedPreflights, "preflight health") {
		t.Fatalf("skipped %v", rep.SkippedPreflights)
	}
}

// TestCanarySecretNeverLeaves: a secret value set in every secret variable
// (and, as an operator slip, used as the cluster name, so drover really
// has it to print) appears in zero bytes of stdout, stderr, journal or
// report, across a halted run; in GitHub Actions it is registered with
// ::add-mask:: on stderr (the runner reads workflow commands from both
// streams) before anything else, and stdout stays a clean JSON document.
func TestCanarySecretNeverLeaves(t *testing.T) {
	const canary = "canary-s3cr3t-9d1f"
	dir := t.TempDir()
	cfg := filepath.Join(dir, "drover.yaml")
	data, err := os.ReadFile("../../examples/prox-ops/drover.yaml")
	if err != nil {
		t.Fatal(err)
	}
	write(t, cfg, strings.Replace(string(data), "name: prox-ops", "name: "+canary, 1))
	for _, gha := range []bool{false, true} {
		t.Run(map[bool]string{false: "terminal", true: "github actions"}[gha], func(t *testing.T) {
			summary := filepath.Join(dir, fmt.Sprintf("summary-%v.md", gha))
			outputs := filepath.Join(dir, fmt.Sprintf("outputs-%v.txt", gha))
			env := map[string]string{"GITHUB_STEP_SUMMARY": summary, "GITHUB_OUTPUT": outputs, "GITHUB_ACTOR": "octocat", "GITHUB_REF": "refs/pull/42/merge"}
			reportPath := filepath.Join(dir, fmt.Sprintf("report-%v.json", gha))
			for _, k := range config.DefaultSecretEnv {
				env[k] = canary
			}
			if gha {
				env["GITHUB_ACTIONS"] = "true"
			}
			var out, errb bytes.Buffer
			s := testStreams(t, &out, &errb)
			s.Getenv = func(k string) string { return env[k] }
			journalPath := filepath.Join(dir, fmt.Sprintf("journal-%v.jsonl", gha))
			code := Run(context.Background(), s, []string{"upgrade", "--lab", "--config", cfg, "--to-talos", "v1.12.0", "--yes",
				"--lab-fault", "k8s-work-1=health-fail", "--journal", journalPath, "--output", "json", "--report", reportPath})
			if code != ExitHalted {
				t.Fatalf("exit %d\n%s", code, lastLines(errb.String(), 5))
			}
			stdout := out.String()
			if !json.Valid(out.Bytes()) {
				t.Fatalf("stdout is not one JSON document:\n%s", stdout)
			}
			stderr := errb.String()
			if gha {
				// The masks come first on stderr; strip them, and the canary
				// must be gone.
				lines := strings.Split(stderr, "\n")
				i := 0
				for ; i < len(lines) && strings.HasPrefix(lines[i], "::add-mask::"); i++ {
				}
				if i == 0 {
					t.Fatal("no ::add-mask:: before the output")
				}
				stderr = strings.Join(lines[i:], "\n")
				if !strings.Contains(errb.String(), "::group::drover: node k8s-ctrl-1") || !strings.Contains(errb.String(), "::error title=drover%3A node k8s-work-1 rolled-back::") {
					t.Errorf("no groups or error annotations:\n%s", lastLines(errb.String(), 10))
				}
				sum, _ := os.ReadFile(summary)
				outs, _ := os.ReadFile(outputs)
				if !strings.Contains(string(sum), "| k8s-work-1 | cattle | v1.11.3 → v1.12.0 |") || !strings.Contains(string(outs), "result=halted\nfailed_node=k8s-work-1\nrun_id=") {
					t.Errorf("step summary or outputs wrong:\n%s\n%s", sum, outs)
				}
				if strings.Contains(string(sum)+string(outs), canary) {
					t.Error("the canary reached the GitHub files")
				}
			}
			j, _ := os.ReadFile(journalPath)
			report, _ := os.ReadFile(reportPath)
			if !strings.Contains(string(report), `"actor": "octocat"`) || !strings.Contains(string(report), `"pullRequest": "42"`) || !strings.Contains(string(report), `"steps"`) {
				t.Errorf("audit report lacks the trigger or the steps:\n%s", report)
			}
			for name, text := range map[string]string{"stdout": stdout, "stderr": stderr, "journal": string(j), "report": string(report)} {
				if strings.Contains(text, canary) {
					t.Errorf("the canary secret leaked into %s", name)
				}
			}
			if !strings.Contains(errb.String(), "cluster ***") {
				t.Errorf("the masked cluster name is not in the progress: the test did not exercise masking")
			}
		})
	}
}

// TestDiscordNotificationsOfALabRun: the webhook from DISCORD_WEBHOOK_URL
// gets the run's events, and the report says what was delivered; a webhook
// that fails does not fail the run.
func TestDiscordNotificationsOfALabRun(t *testing.T) {
	var mu sync.Mutex
	var titles []string
	fail := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m notify.Message
		_ = json.NewDecoder(r.Body).Decode(&m)
		mu.Lock()
		defer mu.Unlock()
		for _, e := range m.Embeds {
			titles = append(titles, e.Title)
		}
		if fail {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	for _, failing := range []bool{false, true} {
		fail = failing
		var out, errb bytes.Buffer
		s := testStreams(t, &out, &errb)
		s.Getenv = func(k string) string { return map[string]string{"DISCORD_WEBHOOK_URL": srv.URL}[k] }
		code := Run(context.Background(), s, []string{"upgrade", "--lab", "--to-talos", "v1.11.4", "--yes", "--output", "json"})
		if code != ExitOK {
			t.Fatalf("failing webhook %v: exit %d\n%s", failing, code, lastLines(errb.String(), 20))
		}
		var rep struct {
			Notifications []notify.Delivery `json:"notifications"`
		}
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			t.Fatal(err)
		}
		// Start, 15 nodes done, the hand-off before drover's own node, the
		// continuation's start, the summary.
		count := map[string]int{}
		for _, d := range rep.Notifications {
			count[d.Event]++
		}
		if len(rep.Notifications) != 19 || count["node-done"] != 15 || count["handed-off"] != 1 || count["run-start"] != 2 || count["run-summary"] != 1 {
			t.Fatalf("%d notifications: %+v", len(rep.Notifications), rep.Notifications)
		}
		for _, d := range rep.Notifications {
			if d.Delivered == failing {
				t.Fatalf("failing webhook %v: %+v", failing, d)
			}
		}
		if failing {
			break
		}
		mu.Lock()
		got := strings.Join(titles, "|")
		mu.Unlock()
		if !strings.Contains(got, "drover: upgrade started") || !strings.Contains(got, "✅ k8s-work-14 upgraded") || !strings.Contains(got, "drover: run succeeded") ||
			!strings.Contains(got, "🔁 drover: the run continues on another runner") {
			t.Fatalf("titles %s", got)
		}
	}
}

// discordRun is streams whose DISCORD_WEBHOOK_URL is a stand-in for
// Discord (it cannot be dialled from here) that keeps every embed it gets.
func discordRun(t *testing.T) (s Streams, out, errb *bytes.Buffer, embeds func() []notify.Embed) {
	t.Helper()
	var mu sync.Mutex
	var got []notify.Embed
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m notify.Message
		_ = json.NewDecoder(r.Body).Decode(&m)
		mu.Lock()
		got = append(got, m.Embeds...)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	out, errb = &bytes.Buffer{}, &bytes.Buffer{}
	s = testStreams(t, out, errb)
	s.Getenv = func(k string) string { return map[string]string{"DISCORD_WEBHOOK_URL": srv.URL}[k] }
	return s, out, errb, func() []notify.Embed {
		mu.Lock()
		defer mu.Unlock()
		return append([]notify.Embed(nil), got...)
	}
}

// TestARolledBackNodeIsToldToDiscord: a lab run whose node fails its gate
// sends that node its own message (rolled back, the rollback's duration,
// the failing check, the strategy) besides the rollback and the summary.
func TestARolledBackNodeIsToldToDiscord(t *testing.T) {
	s, _, errb, embeds := discordRun(t)
	if code := Run(context.Background(), s, []string{"upgrade", "--lab", "--to-talos", "v1.12.0", "--yes", "--lab-fault", "k8s-work-1=dns-down"}); code != ExitHalted {
		t.Fatalf("exit %d\n%s", code, lastLines(errb.String(), 10))
	}
	got := embeds()
	for _, e := range got {
		if e.Title != "↩️ k8s-work-1 rolled back" {
			continue
		}
		body, _ := json.Marshal(e)
		for _, w := range []string{"cattle", "completed in", "DNS Resolution"} {
			if !strings.Contains(string(body), w) {
				t.Errorf("the node's message lacks %q: %s", w, body)
			}
		}
		return
	}
	t.Fatalf("no message for the rolled-back node among %d", len(got))
}

// TestABlockedRunIsToldToDiscord: a run refused before it starts (here: a
// non-interactive run without --yes) sends one message with the reason.
func TestABlockedRunIsToldToDiscord(t *testing.T) {
	s, out, errb, embeds := discordRun(t)
	code := Run(context.Background(), s, []string{"upgrade", "--lab", "--to-talos", "v1.12.0", "--output", "json"})
	if code != ExitBlocked {
		t.Fatalf("exit %d, want 4\n%s", code, errb.String())
	}
	got := embeds()
	if len(got) != 1 || !strings.Contains(got[0].Title, "blocked") || !strings.Contains(got[0].Description, "refusing to upgrade without --yes") {
		t.Fatalf("messages %+v", got)
	}
	var rep struct {
		Notifications []notify.Delivery `json:"notifications"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || len(rep.Notifications) != 1 || !rep.Notifications[0].Delivered {
		t.Fatalf("report notifications: %v %+v", err, rep.Notifications)
	}
}

// TestMaintenanceWindow: the lab's clock starts Thursday 2026-01-01 02:00
// UTC. A run outside the window is blocked; one that outlives it pauses
// between batches with exit 4.
func TestMaintenanceWindow(t *testing.T) {
	data, err := os.ReadFile("../../examples/prox-ops/drover.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfgWith := func(window string) string {
		p := filepath.Join(t.TempDir(), "drover.yaml")
		write(t, p, string(data)+"\nmaintenanceWindow:\n"+window)
		return p
	}
	closed := cfgWith("  days: [Sat, Sun]\n  start: \"01:00\"\n  end: \"05:00\"\n  timezone: UTC\n")
	r := drover(t, "upgrade", "--lab", "--config", closed, "--to-talos", "v1.12.0", "--yes", "--output", "json")
	if r.code != ExitBlocked || !strings.Contains(decodeReport(t, r).Error, "outside the maintenance window") {
		t.Fatalf("exit %d: %s", r.code, r.stdout)
	}
	if r := drover(t, "upgrade", "--lab", "--config", closed, "--to-talos", "v1.11.4", "--yes", "--force-window"); r.code != ExitOK {
		t.Fatalf("--force-window: exit %d", r.code)
	}
	short := cfgWith("  start: \"01:30\"\n  end: \"03:00\"\n  timezone: Europe/London\n")
	r = drover(t, "upgrade", "--lab", "--config", short, "--to-talos", "v1.12.0", "--yes", "--output", "json")
	rep := decodeReport(t, r)
	if r.code != ExitBlocked || rep.Result != "paused" {
		t.Fatalf("exit %d, result %s", r.code, rep.Result)
	}
	upgraded, untouched := 0, 0
	for _, n := range rep.Nodes {
		switch n.Outcome {
		case "upgraded":
			upgraded++
		case "untouched":
			untouched++
		default:
			t.Errorf("%s is %s after a pause", n.Name, n.Outcome)
		}
	}
	if upgraded == 0 || untouched == 0 {
		t.Fatalf("%d upgraded, %d untouched: the pause did not fall between batches", upgraded, untouched)
	}
}

// TestMetricsOfALabRun: with metrics.pushgateway set, a lab run's metrics
// are on a real Pushgateway when it ends.
func TestMetricsOfALabRun(t *testing.T) {
	url := testenv.StartPushgateway(t)
	data, err := os.ReadFile("../../examples/prox-ops/drover.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "drover.yaml")
	write(t, cfg, strings.Replace(string(data), `pushgateway: ""`, "pushgateway: "+url, 1))
	r := drover(t, "upgrade", "--lab", "--config", cfg, "--to-talos", "v1.11.4", "--yes", "--output", "json")
	if r.code != ExitOK {
		t.Fatalf("exit %d\n%s", r.code, lastLines(r.stderr, 10))
	}
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	text := string(body)
	for _, want := range []string{`drover_run_result{cluster="prox-ops",instance="",job="drover",result="succeeded",run="`, `drover_run_running{cluster="prox-ops"`, `drover_node_outcome{cluster="prox-ops",instance="",job="drover",node="k8s-work-14",outcome="upgraded"`} {
		if !strings.Contains(text, want) {
			t.Errorf("the Pushgateway lacks %s", want)
		}
	}
	if n := strings.Count(text, "\ndrover_node_outcome{"); n != 15 {
		t.Errorf("%d node outcomes, want 15", n)
	}
}
