package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/journal"
	"github.com/prox-ops/drover/internal/kube"
	"github.com/prox-ops/drover/internal/notify"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/version"
)

type upgradeFlags struct {
	src         sourceFlags
	out         outputFlag
	yes         bool
	approve     bool
	journalPath string
	skipDrainPF bool
	skipHealth  bool
	forceWindow bool
	talosconfig string
	deliveries  []notify.Delivery
	lock        lockFlags
}

func newUpgradeCmd(s Streams) *cobra.Command {
	f := &upgradeFlags{}
	cmd := &cobra.Command{
		Use:   "upgrade",
		Short: "Upgrade the cluster node by node, with a health gate and rollback",
		Long: `Upgrade the cluster node by node.

Each node goes through preflight, cordon, drain (PDB-aware eviction), replace
(cattle: destroy the VM and create it from the new template) or upgrade (pets:
in place through the Talos API), wait Ready, uncordon, the health gate and,
for control-plane nodes, a soak. A node that fails is rolled back to its old
version and the run halts with exit 1; no later node is touched. Every
transition is written to the journal before it is acted on.

Without --yes, drover shows the plan and asks on a terminal; without a
terminal it refuses (exit 4). A major upgrade, or a target on the approval
list, also needs --approve (exit 4 without it).

On a real cluster (--config without --lab) drover uses the cluster access of
--kubeconfig/--context, the Talos API (--talosconfig) for pets and for the
etcd guard of control-plane nodes, Terraform or OpenTofu for cattle, and
talosctl for the Kubernetes phase of a pets run. The journal goes to
drover-journal.jsonl unless --journal says otherwise. Rehearse with --lab.`,
		Example: `  drover upgrade --lab --to-talos v1.12.0 --yes
  drover upgrade --lab --to-talos v1.12.0 --yes --lab-fault k8s-work-1=health-fail
  drover upgrade --lab --to-talos v2.0.0 --approve --yes --output json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd.Context(), s)
		},
	}
	f.src.register(cmd.Flags())
	f.out.register(cmd.Flags())
	cmd.Flags().BoolVarP(&f.yes, "yes", "y", false, "do not ask for confirmation")
	cmd.Flags().BoolVar(&f.approve, "approve", false, "approve a major upgrade or a version on the approval list")
	f.lock.register(cmd.Flags())
	cmd.Flags().StringVar(&f.talosconfig, "talosconfig", "", "talosconfig file; without it drover uses, like talosctl, TALOSCONFIG (a path or the file in base64), then ~/.talos/config, then the Talos ServiceAccount mount")
	cmd.Flags().BoolVar(&f.forceWindow, "force-window", false, "run outside the configured maintenance window (and do not pause when it closes)")
	cmd.Flags().BoolVar(&f.skipHealth, "skip-preflight-health", false, "do not stop before any change when the cluster is already unhealthy (the report says it was skipped)")
	cmd.Flags().BoolVar(&f.skipDrainPF, "skip-drain-preflight", false, "do not stop before any change when a PodDisruptionBudget would block a drain (the drain itself still honours it)")
	cmd.Flags().StringVar(&f.journalPath, "journal", "", "append the run's journal (JSON lines) to this file (default: kept in memory in the lab)")
	return cmd
}

// labStats are the lab's safety counters in the report.
type labStats struct {
	SimulatedDurationSeconds float64 `json:"simulatedDurationSeconds"`
	PDBViolations            int     `json:"pdbViolations"`
	MaxControlPlaneDown      int     `json:"maxControlPlaneDown"`
}

// upgradeOutput is the JSON report.
type upgradeOutput struct {
	*rollout.Report
	*labStats
	Rationale        string `json:"rationale,omitempty"`
	ApprovalRequired bool   `json:"approvalRequired"`
	// Notifications says which notifications were delivered.
	Notifications []notify.Delivery `json:"notifications,omitempty"`
}

// sinks fans events out to several sinks.
type sinks []rollout.Sink

func (ss sinks) Event(e rollout.Event) {
	for _, s := range ss {
		s.Event(e)
	}
}

func (f *upgradeFlags) run(ctx context.Context, s Streams) error {
	if err := f.out.validate(); err != nil {
		return err
	}
	progress := s.Out
	if f.out.json() {
		progress = s.Err
	}
	var con *console
	p, err := prepare(ctx, s, &f.src, func(node, msg string) {
		if con != nil {
			con.labLog(node, msg)
		}
	})
	if err != nil {
		return err
	}
	defer p.close()
	now := time.Now
	if p.lab != nil {
		now = p.lab.Clock.Now
	}
	con = newConsole(progress, now)
	con.github = s.getenv("GITHUB_ACTIONS") == "true"
	con.groups = con.github && p.cfg.Rollout.MaxParallelWorkers == 1
	runID := now().UTC().Format("20060102T150405Z") + "-" + string(uuid.NewUUID())[:8]

	if p.decision.Strategy == version.NoChange || p.plan.Empty() {
		fmt.Fprintf(progress, "Nothing to do: every node is at %s.\n", p.change.To)
		return f.report(s, p, &rollout.Report{RunID: runID, Result: rollout.ResultSucceeded, Strategy: string(p.decision.Strategy), From: p.change.From.String(), To: p.change.To.String(), Nodes: []rollout.NodeReport{}}, nil)
	}
	if w := p.cfg.MaintenanceWindow; w.Set() && !f.forceWindow && !w.Open(now()) {
		err := &rollout.BlockedError{Reason: "outside the maintenance window (" + w.String() + "); wait for it or pass --force-window"}
		return f.report(s, p, blockedReport(runID, p, err), err)
	}
	if err := f.confirm(s, p, progress); err != nil {
		return f.report(s, p, blockedReport(runID, p, err), err)
	}

	fmt.Fprintf(progress, "drover %s: cluster %s, run %s\n", Version, p.cfg.Cluster.Name, runID)
	var kc kubernetes.Interface = p.kube
	var lockClock clock.Clock = clock.Real{}
	if p.lab != nil {
		kc, lockClock = p.lab.Client, p.lab.Clock
	}
	if kc == nil {
		return usage(fmt.Errorf("%w; an upgrade needs the cluster (rehearse with --lab)", kube.ErrNoCluster))
	}
	holder := journal.Holder{Runner: runnerName(s), RunID: runID, Started: now()}
	release, err := f.lock.lease(kc, lockClock, s).Acquire(ctx, holder)
	if err != nil {
		blocked := &rollout.BlockedError{Reason: "run lock", Err: err}
		return f.report(s, p, blockedReport(runID, p, blocked), blocked)
	}
	defer release()
	var j rollout.Journal = &journal.Memory{}
	if f.journalPath == "" && p.lab == nil {
		f.journalPath = "drover-journal.jsonl"
	}
	if f.journalPath != "" {
		fj, err := journal.OpenFile(f.journalPath)
		if err != nil {
			return usage(err)
		}
		fj.Mask = s.Masker.Mask
		defer fj.Close()
		j = fj
	}
	var eng *rollout.Engine
	if p.lab != nil {
		eng = p.lab.Engine(j, con, runID)
	} else {
		var cleanup func()
		eng, cleanup, err = f.realEngine(ctx, s, p, progress, con.labLog)
		defer cleanup()
		if err != nil {
			return err
		}
		eng.Journal, eng.Sink, eng.RunID = j, con, runID
	}
	var discord *notify.Discord
	if env := p.cfg.Notifications.Discord.WebhookEnv; env != "" && s.getenv(env) != "" {
		discord = &notify.Discord{URL: s.getenv(env), Mask: s.Masker.Mask}
		eng.Sink = sinks{con, discord}
	}
	var skipped []string
	if f.skipDrainPF {
		eng.Preflights, skipped = without(eng.Preflights, kube.DrainPreflightCheck{}.Name())
	}
	if w := p.cfg.MaintenanceWindow; w.Set() && !f.forceWindow {
		eng.Window, eng.WindowName = w.Open, w.String()
	}
	if f.skipHealth {
		eng.PreflightHealth = false
		skipped = append(skipped, "preflight health")
	}
	rep, runErr := eng.Run(ctx, p.plan)
	if rep == nil {
		return runErr
	}
	rep.SkippedPreflights = skipped
	if discord != nil {
		f.deliveries = discord.Close(30 * time.Second)
	}
	return f.report(s, p, rep, runErr)
}

// confirm enforces approval and confirmation; a refusal is a BlockedError.
func (f *upgradeFlags) confirm(s Streams, p *prepared, progress io.Writer) error {
	if p.decision.ApprovalRequired && !f.approve {
		return &rollout.BlockedError{Reason: "approval required: " + p.decision.Rationale + " Re-run with --approve once it is approved."}
	}
	if f.yes {
		return nil
	}
	if s.IsTerminal == nil || !s.IsTerminal() {
		return &rollout.BlockedError{Reason: "refusing to upgrade without --yes: this session is not interactive, so nobody can confirm the plan"}
	}
	printPlan(progress, p.plan, p.decision)
	fmt.Fprintf(progress, "\nUpgrade %d nodes of cluster %s? Type yes to go on: ", p.plan.NodeCount(), p.cfg.Cluster.Name)
	if f, ok := progress.(interface{ Flush() error }); ok {
		_ = f.Flush()
	}
	answer, _ := bufio.NewReader(s.In).ReadString('\n')
	if strings.TrimSpace(strings.ToLower(answer)) != "yes" {
		return &rollout.BlockedError{Reason: "not confirmed"}
	}
	return nil
}

func blockedReport(runID string, p *prepared, err error) *rollout.Report {
	r := &rollout.Report{RunID: runID, Result: rollout.ResultBlocked, Strategy: string(p.decision.Strategy), From: p.change.From.String(), To: p.change.To.String(), Error: err.Error()}
	for i, b := range p.plan.Batches {
		for _, n := range b.Nodes {
			r.Nodes = append(r.Nodes, rollout.NodeReport{Name: n.Name, Role: string(n.Role), Host: n.ProxmoxHost, Batch: i + 1, Outcome: rollout.OutcomeUntouched, From: n.From.Talos.String(), To: p.change.To.Talos.String()})
		}
	}
	return r
}

// report prints the outcome in the chosen format and passes runErr on.
func (f *upgradeFlags) report(s Streams, p *prepared, rep *rollout.Report, runErr error) error {
	if s.getenv("GITHUB_ACTIONS") == "true" {
		if err := notify.WriteGitHubFiles(s.getenv, rep, s.Masker.Mask); err != nil {
			fmt.Fprintf(s.Err, "drover: warning: %v\n", err)
		}
	}
	var stats *labStats
	if p.lab != nil {
		st := p.lab.Stats()
		stats = &labStats{SimulatedDurationSeconds: rep.Duration.Seconds(), PDBViolations: st.PDBViolations, MaxControlPlaneDown: st.MaxControlPlaneDown}
	}
	if f.out.json() {
		if err := writeJSON(s.Out, upgradeOutput{Report: rep, labStats: stats, Rationale: p.decision.Rationale, ApprovalRequired: p.decision.ApprovalRequired, Notifications: f.deliveries}); err != nil {
			return err
		}
		return runErr
	}
	if rep.Result != rollout.ResultBlocked && len(rep.Nodes) > 0 {
		printSummary(s.Out, rep, p.lab != nil, stats)
	}
	for _, d := range f.deliveries {
		if !d.Delivered {
			fmt.Fprintf(s.Out, "notification %s not delivered after %d attempts: %s\n", d.Event, d.Attempts, d.Error)
		}
	}
	return runErr
}

// without drops the named preflight and says it was skipped.
func without(pfs []rollout.Preflight, name string) (kept []rollout.Preflight, skipped []string) {
	for _, pf := range pfs {
		if pf.Name() == name {
			skipped = append(skipped, name)
			continue
		}
		kept = append(kept, pf)
	}
	return kept, skipped
}

// runnerName names this runner in the lock: the GitHub runner, else the host.
func runnerName(s Streams) string {
	for _, k := range []string{"RUNNER_NAME", "HOSTNAME"} {
		if v := s.getenv(k); v != "" {
			return v
		}
	}
	if h, err := os.Hostname(); err == nil {
		return h
	}
	return "unknown"
}
