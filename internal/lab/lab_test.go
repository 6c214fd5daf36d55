package lab

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/journal"
	"github.com/prox-ops/drover/internal/kube"
	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/talos"
	"github.com/prox-ops/drover/internal/version"
)

var (
	start   = version.Pair{Talos: DefaultTalos, Kubernetes: DefaultKubernetes}
	minor   = version.Pair{Talos: version.MustParse("v1.12.0"), Kubernetes: DefaultKubernetes}
	patch   = version.Pair{Talos: version.MustParse("v1.11.4"), Kubernetes: DefaultKubernetes}
	k8sBump = version.Pair{Talos: version.MustParse("v1.12.0"), Kubernetes: version.MustParse("v1.35.0")}
)

type run struct {
	lab     *Lab
	report  *rollout.Report
	err     error
	journal *journal.Memory
	events  []rollout.Event
}

func upgrade(t *testing.T, cfg config.Config, s version.Strategy, to version.Pair, faults map[string]Fault) run {
	t.Helper()
	return upgradeWith(t, cfg, s, to, faults, false)
}

func upgradeWith(t *testing.T, cfg config.Config, s version.Strategy, to version.Pair, faults map[string]Fault, skipDrainPreflight bool) run {
	t.Helper()
	l, err := New(Options{Config: cfg, Faults: faults})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	p := plan.Build(plan.Input{Nodes: cfg.Nodes, Strategy: s, From: start, To: to, MaxParallelWorkers: cfg.Rollout.MaxParallelWorkers, Images: ownImages(t, l, cfg.Nodes, to)})
	j := &journal.Memory{}
	r := run{lab: l, journal: j}
	var mu sync.Mutex // parallel nodes emit concurrently
	eng := l.Engine(j, rollout.SinkFunc(func(e rollout.Event) {
		mu.Lock()
		defer mu.Unlock()
		r.events = append(r.events, e)
	}), "test-run")
	if skipDrainPreflight {
		eng.Preflights = nil
	}
	r.report, r.err = eng.Run(context.Background(), p)
	if r.report == nil {
		t.Fatalf("no report: %v", r.err)
	}
	return r
}

// ownImages are the nodes' images as a run resolves them: each node's
// own image at the target version (run.Plan does the same).
func ownImages(t testing.TB, l *Lab, nodes []config.Node, to version.Pair) map[string]plan.NodeImage {
	t.Helper()
	out := map[string]plan.NodeImage{}
	for _, n := range nodes {
		img, err := l.Talos().NodeImage(context.Background(), plan.Node{Node: n})
		if err != nil {
			t.Fatal(err)
		}
		out[n.Name] = plan.NodeImage{Image: talos.WithVersion(img.Ref, to.Talos.String()), Schematic: img.Schematic}
	}
	return out
}

func outcomes(r *rollout.Report) map[string]rollout.Outcome {
	out := map[string]rollout.Outcome{}
	for _, n := range r.Nodes {
		out[n.Name] = n.Outcome
	}
	return out
}

// nodeState reads a node back from the lab's API.
func nodeState(t *testing.T, l *Lab, name string) (ready, cordoned bool, talos string) {
	t.Helper()
	n, err := l.Client.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("node %s: %v", name, err)
	}
	v, _ := kube.TalosVersion(n.Status.NodeInfo.OSImage)
	return kube.IsReady(n), n.Spec.Unschedulable, v.String()
}

func TestFullRunsSucceed(t *testing.T) {
	tests := []struct {
		name     string
		strategy version.Strategy
		to       version.Pair
		parallel int
	}{
		{"cattle minor, one worker at a time", version.Cattle, minor, 1},
		{"cattle minor, three workers at once", version.Cattle, minor, 3},
		{"pets patch", version.Pets, patch, 1},
		{"cattle with a Kubernetes bump", version.Cattle, k8sBump, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Rollout.MaxParallelWorkers = tc.parallel
			r := upgrade(t, cfg, tc.strategy, tc.to, nil)
			if r.err != nil {
				t.Fatalf("run failed: %v", r.err)
			}
			if r.report.Result != rollout.ResultSucceeded {
				t.Fatalf("result %s", r.report.Result)
			}
			for _, n := range r.report.Nodes {
				if n.Outcome != rollout.OutcomeUpgraded {
					t.Errorf("%s: %s (%s)", n.Name, n.Outcome, n.Reason)
				}
				ready, cordoned, talos := nodeState(t, r.lab, n.Name)
				if !ready || cordoned || talos != tc.to.Talos.String() {
					t.Errorf("%s after the run: ready=%v cordoned=%v talos=%s", n.Name, ready, cordoned, talos)
				}
				if v, ok := r.lab.Versions(n.Name); !ok || v != tc.to {
					t.Errorf("%s VM at %v, want %v", n.Name, v, tc.to)
				}
			}
			st := r.lab.Stats()
			if st.PDBViolations != 0 || st.MaxControlPlaneDown != 1 {
				t.Errorf("stats = %+v, want 0 PDB violations and 1 control-plane node down at most", st)
			}
			if st.Evictions == 0 {
				t.Errorf("no evictions: drain did nothing")
			}
			// Control-plane nodes go first, one at a time, in batch order,
			// each behind an etcd snapshot.
			for i, n := range r.report.Nodes[:3] {
				if n.Role != "controlplane" || n.Batch != i+1 {
					t.Errorf("node %d is %s (%s, batch %d)", i, n.Name, n.Role, n.Batch)
				}
				if !strings.Contains(n.EtcdSnapshot, "etcd-") || !strings.HasSuffix(n.EtcdSnapshot, n.Name+".snapshot") {
					t.Errorf("%s: etcd snapshot %q", n.Name, n.EtcdSnapshot)
				}
			}
			steps := map[string]bool{}
			for _, e := range r.journal.Entries() {
				if e.Status == rollout.StatusStarted {
					steps[e.Node+"/"+string(e.Step)] = true
				}
			}
			if tc.strategy == version.Cattle && (!steps["k8s-ctrl-1/etcd-leave"] || steps["k8s-work-1/etcd-leave"]) {
				t.Errorf("etcd-leave must run before destroying a control-plane node, and only then: %v", steps)
			}
			if !steps["k8s-ctrl-3/etcd-rejoin"] {
				t.Error("no wait for etcd membership after a control-plane node")
			}
		})
	}
}

// TestEveryFault drives the engine's state machine through each lab fault.
func TestEveryFault(t *testing.T) {
	const victim = "k8s-work-1"
	tests := []struct {
		name        string
		strategy    version.Strategy
		to          version.Pair
		fault       Fault
		wantResult  rollout.Result
		wantErr     any
		wantOutcome rollout.Outcome
		wantChecks  []string
		wantReason  string
		wantTalos   string // the victim's version after the run
	}{
		{"health-fail cattle rolls back", version.Cattle, minor, FaultHealthFail, rollout.ResultHalted, new(*rollout.HaltError), rollout.OutcomeRolledBack, []string{"Pod Health"}, "CrashLoopBackOff", "v1.11.3"},
		{"health-fail pets rolls back", version.Pets, patch, FaultHealthFail, rollout.ResultHalted, new(*rollout.HaltError), rollout.OutcomeRolledBack, []string{"Pod Health"}, "", "v1.11.3"},
		{"never-ready rolls back", version.Cattle, minor, FaultNeverReady, rollout.ResultHalted, new(*rollout.HaltError), rollout.OutcomeRolledBack, nil, "not Ready", "v1.11.3"},
		{"replace-fails cattle rolls back", version.Cattle, minor, FaultReplaceFails, rollout.ResultHalted, new(*rollout.HaltError), rollout.OutcomeRolledBack, nil, "storage error", "v1.11.3"},
		{"replace-fails pets rolls back", version.Pets, patch, FaultReplaceFails, rollout.ResultHalted, new(*rollout.HaltError), rollout.OutcomeRolledBack, nil, "installer exited", "v1.11.3"},
		{"drain-blocked halts untouched", version.Cattle, minor, FaultDrainBlocked, rollout.ResultHalted, new(*kube.DrainTimeoutError), rollout.OutcomeFailed, nil, "PodDisruptionBudget apps/ledger-k8s-work-1", "v1.11.3"},
		{"rollback-fails cattle needs a human", version.Cattle, minor, FaultRollbackFails, rollout.ResultRollbackFailed, new(*rollout.RollbackFailedError), rollout.OutcomeFailed, []string{"Pod Health"}, "rollback failed", ""},
		{"rollback-fails pets needs a human", version.Pets, patch, FaultRollbackFails, rollout.ResultRollbackFailed, new(*rollout.RollbackFailedError), rollout.OutcomeFailed, []string{"Pod Health"}, "rollback failed", "v1.11.4"},
		// Pods with a budget land on the node after its uncordon: its
		// rollback drains them first, so no budget is violated.
		{"late-fail cattle drains before its rollback", version.Cattle, minor, FaultLateFail, rollout.ResultHalted, new(*rollout.HaltError), rollout.OutcomeRolledBack, []string{"Pod Health"}, "CrashLoopBackOff", "v1.11.3"},
		{"late-fail pets drains before its rollback", version.Pets, patch, FaultLateFail, rollout.ResultHalted, new(*rollout.HaltError), rollout.OutcomeRolledBack, []string{"Pod Health"}, "cilium", "v1.11.3"},
		// Caught Running at every poll, but restarting between them.
		{"flapping pods fail the gate", version.Cattle, minor, FaultFlapping, rollout.ResultHalted, new(*rollout.HaltError), rollout.OutcomeRolledBack, []string{"Pod Health"}, "restarted", "v1.11.3"},
		{"an alert that starts firing fails the gate", version.Cattle, minor, FaultAlertFires, rollout.ResultHalted, new(*rollout.HaltError), rollout.OutcomeRolledBack, []string{"Alerts"}, "alert NodeNetworkReceiveErrs firing", "v1.11.3"},
		{"a NIC lost in the replacement fails the gate", version.Cattle, minor, FaultLinkLost, rollout.ResultHalted, new(*rollout.HaltError), rollout.OutcomeRolledBack, []string{"Node Readiness"}, "link eth2 (bc:24:11:1f:a5:02) is gone", "v1.11.3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The drain preflight would stop drain-blocked before any change
			// (TestDrainPreflightBlocks); skip it to reach the drain itself.
			r := upgradeWith(t, DefaultConfig(), tc.strategy, tc.to, map[string]Fault{victim: tc.fault}, tc.fault == FaultDrainBlocked)
			if r.report.Result != tc.wantResult {
				t.Fatalf("result = %s (%v), want %s", r.report.Result, r.err, tc.wantResult)
			}
			if !errors.As(r.err, tc.wantErr) {
				t.Fatalf("err = %T %v, want %T", r.err, r.err, tc.wantErr)
			}
			got := outcomes(r.report)
			if got[victim] != tc.wantOutcome {
				t.Fatalf("%s outcome %s, want %s", victim, got[victim], tc.wantOutcome)
			}
			after := false
			for _, n := range r.report.Nodes {
				switch {
				case n.Name == victim:
					after = true
					nr := r.report.Node(victim)
					if strings.Join(nr.FailedChecks, ",") != strings.Join(tc.wantChecks, ",") {
						t.Errorf("failed checks %v, want %v", nr.FailedChecks, tc.wantChecks)
					}
					if !strings.Contains(nr.Reason+healthText(nr), tc.wantReason) {
						t.Errorf("reason %q (health %q) lacks %q", nr.Reason, healthText(nr), tc.wantReason)
					}
				case after && n.Outcome != rollout.OutcomeUntouched:
					t.Errorf("%s after the failed node is %s, want untouched", n.Name, n.Outcome)
				case !after && n.Outcome != rollout.OutcomeUpgraded:
					t.Errorf("%s before the failed node is %s, want upgraded", n.Name, n.Outcome)
				}
			}
			if tc.wantTalos != "" {
				ready, cordoned, talos := nodeState(t, r.lab, victim)
				if talos != tc.wantTalos {
					t.Errorf("%s runs %s after the run, want %s", victim, talos, tc.wantTalos)
				}
				if tc.wantResult == rollout.ResultHalted && (!ready || cordoned) {
					t.Errorf("%s after a clean halt: ready=%v cordoned=%v; want Ready and uncordoned", victim, ready, cordoned)
				}
			}
			if st := r.lab.Stats(); st.PDBViolations != 0 || st.MaxControlPlaneDown > 1 || st.EtcdLeaderLost != 0 {
				t.Errorf("stats = %+v", st)
			}
			if tc.fault == FaultLateFail && !landedAndDrained(r, victim) {
				t.Errorf("the late workload did not land on %s and leave it through evictions before the rollback", victim)
			}
		})
	}
}

// TestAGateThatFailsOnceThenHoldsPasses: one failing run resets the count
// of passes; two in a row after it pass the node.
func TestAGateThatFailsOnceThenHoldsPasses(t *testing.T) {
	r := upgrade(t, DefaultConfig(), version.Cattle, minor, map[string]Fault{"k8s-work-1": FaultFailOnce})
	if r.err != nil {
		t.Fatalf("run: %v", r.err)
	}
	nr := r.report.Node("k8s-work-1")
	if nr.Outcome != rollout.OutcomeUpgraded || nr.Health == nil {
		t.Fatalf("k8s-work-1: %s", nr.Outcome)
	}
	if a := nr.Health.Checks[0].Attempts; a != 3 {
		t.Fatalf("the gate ran %d times, want 3: a failure, then two passes in a row", a)
	}
	var failedOnce bool
	for _, e := range r.events {
		if e.Node == "k8s-work-1" && e.Kind == rollout.EventLog && strings.Contains(e.Message, "run 1 failed ([Pod Health]; 1/3 failures)") {
			failedOnce = true
		}
	}
	if !failedOnce {
		t.Fatal("the first gate run did not fail")
	}
}

// TestAPodPendingBeforeTheRunBlamesNoNode: a pod Pending from before the
// run crosses its grace during the run; the baseline knows it, so no node
// is blamed, and the report lists it as known before the run.
func TestAPodPendingBeforeTheRunBlamesNoNode(t *testing.T) {
	r := upgrade(t, DefaultConfig(), version.Cattle, minor, map[string]Fault{"k8s-work-1": FaultPendingBefore})
	if r.err != nil {
		t.Fatalf("run: %v", r.err)
	}
	known := strings.Join(r.report.KnownBeforeRun, "\n")
	if !strings.Contains(known, "Pod Health: pod apps/backlog-") {
		t.Fatalf("known before the run: %q", r.report.KnownBeforeRun)
	}
	if nr := r.report.Node("k8s-ctrl-1"); nr.Health == nil || len(nr.Health.Known()) == 0 {
		t.Fatal("the first node's verdict does not list what was known before the run")
	}
}

// landedAndDrained: after the node's uncordon its rollback drained it, and
// the late workload runs elsewhere now, all its pods Ready.
func landedAndDrained(r run, node string) bool {
	uncordoned, drained := false, false
	for _, e := range r.events {
		switch {
		case e.Kind == rollout.EventStep && e.Node == node && e.Step == rollout.StepUncordon && e.Status == rollout.StatusDone:
			uncordoned = true
		case e.Kind == rollout.EventLog && e.Node == node && strings.Contains(e.Message, "draining before the rollback"):
			drained = uncordoned
		}
	}
	pods, err := r.lab.Client.CoreV1().Pods("apps").List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=reports-" + node})
	if err != nil || len(pods.Items) != 2 {
		return false
	}
	for _, p := range pods.Items {
		if p.Spec.NodeName == node || !podReady(&p) {
			return false
		}
	}
	return drained && r.lab.Stats().Evictions > 0
}

func healthText(n *rollout.NodeReport) string {
	if n.Health == nil {
		return ""
	}
	var b strings.Builder
	for _, c := range n.Health.Checks {
		b.WriteString(strings.Join(c.Diagnostics, "\n"))
	}
	return b.String()
}

func TestDrainBlockedTakesEveryDrainAttempt(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Rollout.DrainTimeout = config.D(2 * time.Minute)
	cfg.Rollout.DrainAttempts = 3
	r := upgradeWith(t, cfg, version.Cattle, minor, map[string]Fault{"k8s-work-1": FaultDrainBlocked}, true)
	var drain *rollout.StepRecord
	for i, s := range r.report.Node("k8s-work-1").Steps {
		if s.Step == rollout.StepDrain {
			drain = &r.report.Node("k8s-work-1").Steps[i]
		}
	}
	if drain == nil || drain.Status != rollout.StatusFailed {
		t.Fatalf("drain step = %+v", drain)
	}
	if d := drain.Finished.Sub(drain.Started); d != 6*time.Minute {
		t.Fatalf("drain gave up after %s of simulated time, want 3 attempts of 2m", d)
	}
	if !strings.Contains(drain.Detail, "3 drain attempts failed") || !strings.Contains(drain.Detail, "ledger-k8s-work-1") {
		t.Fatalf("drain detail %q does not name the attempts and the blocked pod", drain.Detail)
	}
	// While it waits, the operator sees each refusal once per attempt.
	notes := r.report.Node("k8s-work-1").Notes
	if len(notes) != 3 {
		t.Fatalf("notes %q, want one refusal per attempt", notes)
	}
	for i, n := range notes {
		want := fmt.Sprintf("drain attempt %d/3: eviction of apps/ledger-k8s-work-1-", i+1)
		if !strings.HasPrefix(n, want) || !strings.Contains(n, "refused by PodDisruptionBudget apps/ledger-k8s-work-1 (disruptions allowed: 0") {
			t.Errorf("note %q, want %q... naming the budget", n, want)
		}
	}
	if r.lab.Stats().EvictionsRefused == 0 {
		t.Fatal("no eviction was refused: the PDB was not consulted")
	}
}

// TestJournalRecordsEachTransitionBeforeActing: each step is journaled as
// started before it is done, in state-machine order.
func TestJournalRecordsEachTransitionBeforeActing(t *testing.T) {
	r := upgrade(t, DefaultConfig(), version.Cattle, minor, nil)
	var steps []string
	for _, e := range r.journal.Entries() {
		if e.Node == "k8s-work-1" && e.Status == rollout.StatusStarted {
			steps = append(steps, string(e.Step))
		}
	}
	want := "preflight cordon drain volumes destroy create wait-ready uncordon health soak"
	if got := strings.Join(steps, " "); got != want {
		t.Fatalf("journal steps %q, want %q", got, want)
	}
	open := map[string]bool{}
	for _, e := range r.journal.Entries() {
		key := e.Node + "/" + string(e.Step)
		switch e.Status {
		case rollout.StatusStarted:
			open[key] = true
		default:
			if e.Step != rollout.StepRun && e.Step != rollout.StepDone && !open[key] {
				t.Fatalf("%s finished without being journaled as started first", key)
			}
		}
	}
}

// TestEveryNodeSoaks: every node soaks its 5 minutes (the workers and the
// last control-plane node in the background).
func TestEveryNodeSoaks(t *testing.T) {
	r := upgrade(t, DefaultConfig(), version.Pets, patch, nil)
	for _, n := range r.report.Nodes {
		soaked := false
		for _, s := range n.Steps {
			if s.Step == rollout.StepSoak {
				soaked = true
				// The window is 5m; its last gate run (with its probe pods) ends a little after.
				if d := s.Finished.Sub(s.Started); d < 5*time.Minute || d > 5*time.Minute+30*time.Second {
					t.Errorf("%s soaked %s, want the 5m window", n.Name, d)
				}
			}
		}
		if !soaked {
			t.Errorf("%s (%s) did not soak", n.Name, n.Role)
		}
	}
}

func TestParseFault(t *testing.T) {
	tests := []struct {
		in      string
		node    string
		fault   Fault
		wantErr string
	}{
		{in: "k8s-work-1=health-fail", node: "k8s-work-1", fault: FaultHealthFail},
		{in: "k8s-ctrl-2=rollback-fails", node: "k8s-ctrl-2", fault: FaultRollbackFails},
		{in: "k8s-work-1", wantErr: "NODE=KIND"},
		{in: "k8s-work-1=melt", wantErr: `unknown kind "melt"`},
	}
	for _, tc := range tests {
		node, f, err := ParseFault(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseFault(%q) err = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || node != tc.node || f != tc.fault {
			t.Errorf("ParseFault(%q) = %s, %s, %v", tc.in, node, f, err)
		}
	}
}

func TestUnknownFaultNodeIsRefused(t *testing.T) {
	if _, err := New(Options{Faults: map[string]Fault{"k8s-work-99": FaultHealthFail}}); err == nil {
		t.Fatal("a fault for a node that does not exist was accepted")
	}
}

func TestExampleMatchesTheLab(t *testing.T) {
	c, err := config.Load("../../examples/prox-ops/drover.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	if len(c.Nodes) != len(want.Nodes) {
		t.Fatalf("example has %d nodes, the lab %d", len(c.Nodes), len(want.Nodes))
	}
	for i := range want.Nodes {
		if c.Nodes[i] != want.Nodes[i] {
			t.Errorf("node %d: example %+v, lab %+v", i, c.Nodes[i], want.Nodes[i])
		}
	}
	if c.Talos.InstallerImage != want.Talos.InstallerImage {
		t.Errorf("installer image differs")
	}
}

func TestDrainPreflightBlocksBeforeAnyChange(t *testing.T) {
	r := upgrade(t, DefaultConfig(), version.Cattle, minor, map[string]Fault{"k8s-work-1": FaultDrainBlocked})
	var blocked *rollout.BlockedError
	var db *kube.DrainBlockedError
	if !errors.As(r.err, &blocked) || !errors.As(r.err, &db) {
		t.Fatalf("err = %v, want a BlockedError from the drain preflight", r.err)
	}
	if len(db.Blockers) != 1 {
		t.Fatalf("blockers %+v, want exactly the ledger app's budget", db.Blockers)
	}
	b := db.Blockers[0]
	if b.Namespace != "apps" || b.PDB != "ledger-k8s-work-1" || b.Workload != "Deployment/ledger-k8s-work-1" || b.Node != "k8s-work-1" ||
		!strings.Contains(b.Reason, "single-replica") || !strings.Contains(b.Reason, "never allow") {
		t.Fatalf("blocker %+v", b)
	}
	for _, n := range r.report.Nodes {
		if n.Outcome != rollout.OutcomeUntouched {
			t.Errorf("%s is %s after a blocked run", n.Name, n.Outcome)
		}
	}
	if r.lab.Stats().Evictions != 0 {
		t.Fatal("the preflight let a drain start")
	}
}

// With forceDrainAfterTimeout the drain deletes the protected pod after the
// timeout: the run goes on, and the lab counts the budget it broke.
func TestForceDrainAfterTimeoutIsCountedAsAViolation(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Rollout.ForceDrainAfterTimeout = true
	cfg.Rollout.DrainTimeout = config.D(time.Minute)
	r := upgradeWith(t, cfg, version.Cattle, minor, map[string]Fault{"k8s-work-1": FaultDrainBlocked}, true)
	if r.err != nil {
		t.Fatalf("forced run failed: %v", r.err)
	}
	if got := r.lab.Stats().PDBViolations; got != 1 {
		t.Fatalf("PDB violations %d, want 1 (the forced deletion)", got)
	}
}

func TestPetsKubernetesUpgradeRunsAfterTheNodes(t *testing.T) {
	tests := []struct {
		name        string
		to          version.Pair
		wantNodes   int
		wantKubelet string
	}{
		{"Talos and Kubernetes patches", version.Pair{Talos: version.MustParse("v1.11.4"), Kubernetes: version.MustParse("v1.34.2")}, 15, "v1.34.2"},
		{"a Kubernetes patch alone touches no node's Talos", version.Pair{Talos: DefaultTalos, Kubernetes: version.MustParse("v1.34.2")}, 0, "v1.34.2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			l, err := New(Options{Config: cfg})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			p := plan.Build(plan.Input{Nodes: cfg.Nodes, Strategy: version.Pets, From: start, To: tc.to, MaxParallelWorkers: 1, Images: ownImages(t, l, cfg.Nodes, tc.to)})
			if p.NodeCount() != tc.wantNodes || !p.KubernetesPhase || p.Empty() {
				t.Fatalf("plan: %d nodes, kubernetes phase %v", p.NodeCount(), p.KubernetesPhase)
			}
			j := &journal.Memory{}
			rep, err := l.Engine(j, nil, "k8s").Run(context.Background(), p)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Result != rollout.ResultSucceeded {
				t.Fatalf("result %s", rep.Result)
			}
			for _, n := range cfg.Nodes {
				id, _ := (&kube.Client{Client: l.Client, Clock: l.Clock}).Identity(context.Background(), n.Name)
				if id.KubeletVersion != tc.wantKubelet || id.OSImage != "Talos ("+tc.to.Talos.String()+")" {
					t.Errorf("%s: kubelet %s, %s", n.Name, id.KubeletVersion, id.OSImage)
				}
			}
			last := ""
			for _, e := range j.Entries() {
				if e.Node != "" && e.Status == rollout.StatusStarted {
					last = "node"
				}
				if e.Step == rollout.StepKubernetes && e.Status == rollout.StatusStarted {
					last = "kubernetes"
				}
			}
			if last != "kubernetes" {
				t.Fatal("the Kubernetes phase did not run after every node")
			}
		})
	}
}

// TestHealthFaultsFailTheirCheck: each category's fault, active once the
// node runs the new version, fails exactly its check and rolls the node back.
func TestHealthFaultsFailTheirCheck(t *testing.T) {
	tests := []struct {
		fault     Fault
		node      string
		wantCheck string
		wantDiag  string
	}{
		{FaultDNSDown, "k8s-work-1", "DNS Resolution", "no servers could be reached"},
		{FaultCephWarn, "k8s-work-2", "Storage Health", "OSD_DOWN"},
		{FaultFluxFailed, "k8s-work-1", "Flux Reconciliation", "HelmRelease ai/ollama"},
		{FaultGPULost, "k8s-work-4", "GPU Availability", "allocatable nvidia.com/gpu 0"},
		{FaultCrashloop, "k8s-work-3", "Pod Health", "node-exporter"},
	}
	for _, tc := range tests {
		t.Run(string(tc.fault), func(t *testing.T) {
			r := upgrade(t, DefaultConfig(), version.Cattle, minor, map[string]Fault{tc.node: tc.fault})
			nr := r.report.Node(tc.node)
			if nr.Outcome != rollout.OutcomeRolledBack {
				t.Fatalf("%s: %s (%v)", tc.node, nr.Outcome, r.err)
			}
			if !slices.Contains(nr.FailedChecks, tc.wantCheck) {
				t.Fatalf("failed checks %v, want %s", nr.FailedChecks, tc.wantCheck)
			}
			if !strings.Contains(healthText(nr), tc.wantDiag) {
				t.Errorf("diagnostics lack %q:\n%s", tc.wantDiag, healthText(nr))
			}
		})
	}
}

// TestStopMidStepLeavesTheNodeSafe: a stop (SIGINT/SIGTERM cancel the run's
// context) lets the current atomic step finish, leaves the node safe and
// says so in the journal.
func TestStopMidStepLeavesTheNodeSafe(t *testing.T) {
	tests := []struct {
		name     string
		faults   map[string]Fault
		stopAt   rollout.Step // stop when this step of k8s-work-1 starts
		wantStep rollout.Step
		wantVM   bool
	}{
		{"mid-drain", map[string]Fault{"k8s-work-1": FaultDrainBlocked}, rollout.StepDrain, rollout.StepDrain, true},
		{"during destroy", nil, rollout.StepDestroy, rollout.StepDestroy, false},
		// The lab node is Ready as wait-ready starts, so the wait ends at once
		// and the stop lands in the health gate.
		{"during wait-ready", nil, rollout.StepWaitReady, rollout.StepHealth, true},
		{"never-ready wait", map[string]Fault{"k8s-work-1": FaultNeverReady}, rollout.StepWaitReady, rollout.StepWaitReady, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			l, err := New(Options{Config: cfg, Faults: tc.faults})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			ctx, stop := context.WithCancel(context.Background())
			defer stop()
			j := &journal.Memory{}
			eng := l.Engine(j, rollout.SinkFunc(func(e rollout.Event) {
				if e.Kind == rollout.EventStep && e.Node == "k8s-work-1" && e.Step == tc.stopAt && e.Status == rollout.StatusStarted {
					stop()
				}
			}), "stop")
			eng.Preflights = nil
			p := plan.Build(plan.Input{Nodes: cfg.Nodes, Strategy: version.Cattle, From: start, To: minor, MaxParallelWorkers: 1})
			rep, err := eng.Run(ctx, p)
			var ie *rollout.InterruptedError
			if !errors.As(err, &ie) || ie.Node != "k8s-work-1" || ie.Step != tc.wantStep || ie.VMExists != tc.wantVM {
				t.Fatalf("err = %#v", err)
			}
			if rep.Result != rollout.ResultInterrupted || rep.Node("k8s-work-1").Outcome != rollout.OutcomeInterrupted || rep.Node("k8s-work-2").Outcome != rollout.OutcomeUntouched {
				t.Fatalf("result %s, k8s-work-1 %s, k8s-work-2 %s", rep.Result, rep.Node("k8s-work-1").Outcome, rep.Node("k8s-work-2").Outcome)
			}
			found := false
			for _, e := range j.Entries() {
				if e.Node == "k8s-work-1" && e.Status == rollout.StatusInterrupted {
					found = true
				}
			}
			if !found {
				t.Fatal("the journal does not record the stop")
			}
			_, running := l.Versions("k8s-work-1")
			if running != tc.wantVM {
				t.Fatalf("VM running %v, want %v", running, tc.wantVM)
			}
			if tc.wantVM {
				if _, cordoned, _ := nodeState(t, l, "k8s-work-1"); cordoned {
					t.Fatal("the node was left cordoned")
				}
			}
		})
	}
}

// TestMoreThanAHundredNodes: a generated 120-node lab upgrades end to end
// (the fake clientset's watchers once overflowed past 100 nodes), and so
// does a lab whose inventory has no GPU node.
func TestMoreThanAHundredNodes(t *testing.T) {
	for name, cfg := range map[string]config.Config{
		"120 nodes": GeneratedConfig(120, 3, 30),
		"no GPU node": func() config.Config {
			c := DefaultConfig()
			for i := range c.Nodes {
				c.Nodes[i].GPUs = 0
			}
			return c
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			cfg.Rollout.MaxParallelWorkers = 4
			r := upgrade(t, cfg, version.Cattle, minor, nil)
			if r.err != nil {
				t.Fatalf("run: %v", r.err)
			}
			for _, n := range r.report.Nodes {
				if n.Outcome != rollout.OutcomeUpgraded {
					t.Fatalf("%s: %s %s", n.Name, n.Outcome, n.Reason)
				}
			}
			if st := r.lab.Stats(); st.PDBViolations != 0 || st.MaxControlPlaneDown > 1 || st.EtcdLeaderLost != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestRebuiltTemplatesAreRebuiltForARollback: with templates at fixed ids
// (terraform.templates: rebuild) the new templates replace the old; a
// rollback rebuilds the old ones before it recreates the node, and takes
// that much longer.
func TestRebuiltTemplatesAreRebuiltForARollback(t *testing.T) {
	rollbackTime := func(templates string) time.Duration {
		cfg := DefaultConfig()
		cfg.Terraform.Templates = templates
		r := upgrade(t, cfg, version.Cattle, minor, map[string]Fault{"k8s-work-1": FaultHealthFail})
		nr := r.report.Node("k8s-work-1")
		if nr.Outcome != rollout.OutcomeRolledBack {
			t.Fatalf("%s: k8s-work-1 %s: %s", templates, nr.Outcome, nr.Reason)
		}
		if _, _, talos := nodeState(t, r.lab, "k8s-work-1"); talos != "v1.11.3" {
			t.Fatalf("%s: k8s-work-1 runs %s after its rollback", templates, talos)
		}
		for _, s := range nr.Steps {
			if s.Step == rollout.StepRollback {
				return s.Finished.Sub(s.Started)
			}
		}
		t.Fatalf("%s: no rollback step", templates)
		return 0
	}
	keep, rebuild := rollbackTime(config.TemplatesKeep), rollbackTime(config.TemplatesRebuild)
	if rebuild-keep != DefaultDurations().Template {
		t.Fatalf("rollback took %s with kept templates and %s with rebuilt ones; want the difference to be one template build (%s)", keep, rebuild, DefaultDurations().Template)
	}
}

// TestAThousandNodeLab: a generated lab of 1000 nodes with 30 pods each
// upgrades end to end, safely. (Its speed is a benchmark's business:
// make bench reports the wall time and memory against their targets.)
func TestAThousandNodeLab(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the 1000-node lab takes about 20 s")
	}
	cfg := GeneratedConfig(1000, 0, 0)
	cfg.Rollout.MaxParallelWorkers = 4
	l, err := New(Options{Config: cfg, PodsPerNode: 30})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if n := len(l.store.all); n < 29000 {
		t.Fatalf("the lab runs %d pods, want about 30 per node", n)
	}
	p := plan.Build(plan.Input{Nodes: cfg.Nodes, Strategy: version.Cattle, From: start, To: minor, MaxParallelWorkers: 4})
	rep, err := l.Engine(&journal.Memory{}, nil, "big").Run(context.Background(), p)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, n := range rep.Nodes {
		if n.Outcome != rollout.OutcomeUpgraded {
			t.Fatalf("%s: %s %s", n.Name, n.Outcome, n.Reason)
		}
	}
	if st := l.Stats(); st.PDBViolations != 0 || st.MaxControlPlaneDown > 1 || st.EtcdLeaderLost != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestASavedLabKeepsItsPods: a lab saved and started again has the same
// pods on the same nodes (a run resumed mid-drain finds the pods it had not
// evicted), and new pods do not take the names of old ones.
func TestASavedLabKeepsItsPods(t *testing.T) {
	l, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	names := func(l *Lab, node string) []string {
		l.mu.Lock()
		defer l.mu.Unlock()
		var out []string
		for _, p := range l.store.sorted(l.store.onNode[node]) {
			out = append(out, p.Name)
		}
		return out
	}
	before := names(l, "k8s-work-1")
	st := l.Snapshot()
	l.Close()
	if len(before) < 3 || len(st.Pods) == 0 {
		t.Fatalf("the lab had %d pods on k8s-work-1, %d saved", len(before), len(st.Pods))
	}
	again, err := New(Options{State: &st})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if after := names(again, "k8s-work-1"); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("k8s-work-1 runs %v after the restore, %v before", after, before)
	}
	if again.seq != st.Seq {
		t.Fatalf("the pod sequence restarts at %d, not %d", again.seq, st.Seq)
	}
}
