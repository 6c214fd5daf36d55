package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/run"
)

type upgradeFlags struct {
	src         sourceFlags
	target      targetFlags
	out         outputFlag
	yes         bool
	approve     bool
	journalPath string
	skipDrainPF bool
	skipHealth  bool
	skipImages  bool
	forceWindow bool
	lock        lockFlags
	resume      bool
	retryNodes  []string
	reportPath  string
}

func newUpgradeCmd(s Streams) *cobra.Command {
	f := &upgradeFlags{}
	cmd := &cobra.Command{
		Use:   "upgrade",
		Short: "Upgrade the cluster node by node, with a health gate and rollback",
		Long: `Upgrade the cluster node by node.

drover first reads what every node runs (the kubelet and Talos versions of
its Node object, and the Talos API of every node that answers): the plan is
made from that. --from-talos, --from-kubernetes and the variables file's
"before" value are cross-checks; a node that disagrees stops the run before
any change (exit 4), named with what it runs.

Each node goes through preflight, the etcd guard (control plane), cordon,
drain (PDB-aware eviction), replace (cattle: one Terraform destroy and one
apply for the whole batch) or upgrade (pets: in place through the Talos API),
wait Ready, uncordon, the health gate and a soak. A node that fails is
cordoned and drained again, rolled back to its old version, and the run
halts with exit 1; no later node is touched. Every transition is written to
the journal before it is acted on.

Without --yes, drover shows the plan and asks on a terminal; without a
terminal it refuses (exit 4). A major upgrade, or a target on the approval
list, also needs --approve (exit 4 without it).

--resume continues the run of --journal. The journal is a hint: drover looks
at each unfinished node (Node object, Ready, cordoned, versions, its VM in
the Terraform state, its etcd membership) and starts it where the cluster
shows it stands; a control-plane node with a destructive step ahead gets its
etcd snapshot and leadership hand-off again. An edited or spliced journal is
refused (exit 2).

The run holds a Lease (the run lock) and renews it; if the lock is lost or
taken over, drover finishes the current atomic step, leaves the node safe
and exits 4. SIGINT or SIGTERM does the same and exits 130; a second signal
stops at once (exit 130) after saying where each node stood.

On a real cluster (--config without --lab) drover uses the cluster access of
--kubeconfig/--context, the Talos API (--talosconfig), Terraform or OpenTofu
for cattle, and talosctl for the Kubernetes phase of a pets run. The journal
goes to drover-journal.jsonl unless --journal says otherwise. Rehearse with
--lab.`,
		Example: `  drover upgrade --lab --to-talos v1.12.0 --yes
  drover upgrade --lab --to-talos v1.12.0 --yes --lab-fault k8s-work-1=health-fail
  drover upgrade --lab --to-talos v2.0.0 --approve --yes --output json
  drover upgrade --config drover.yaml --git-range "$BASE..$HEAD" --yes --journal configmap`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return f.run(cmd.Context(), s)
		},
	}
	f.src.register(cmd.Flags())
	f.target.register(cmd.Flags())
	f.out.register(cmd.Flags())
	cmd.Flags().BoolVarP(&f.yes, "yes", "y", false, "do not ask for confirmation")
	cmd.Flags().BoolVar(&f.approve, "approve", false, "approve a major upgrade or a version on the approval list")
	f.lock.register(cmd.Flags())
	cmd.Flags().StringVar(&f.reportPath, "report", "", "write the audit report (JSON: trigger, versions, strategy, approval, every node's steps, snapshots, notifications) to this file (default for a real cluster: drover-report.json)")
	cmd.Flags().BoolVar(&f.resume, "resume", false, "continue the interrupted or halted run of --journal: finished nodes are skipped, each unfinished node starts where the cluster shows it stands, halted nodes stay halted")
	cmd.Flags().StringArrayVar(&f.retryNodes, "retry-node", nil, "with --resume, try this halted node again (repeatable)")
	cmd.Flags().BoolVar(&f.forceWindow, "force-window", false, "run outside the configured maintenance window (and do not pause when it closes)")
	cmd.Flags().BoolVar(&f.skipHealth, "skip-preflight-health", false, "do not stop before any change when the cluster is already unhealthy (the report says it was skipped)")
	cmd.Flags().BoolVar(&f.skipImages, "skip-image-check", false, "do not check, before any change, that the target installer images are in their registry and that each node can pull its own (for an air-gapped registry drover cannot reach; the report says it was skipped)")
	cmd.Flags().BoolVar(&f.skipDrainPF, "skip-drain-preflight", false, "do not stop before any change when a PodDisruptionBudget would block a drain (the drain itself still honours it)")
	cmd.Flags().StringVar(&f.journalPath, "journal", "", "where the run's journal goes: a file (JSON lines; default drover-journal.jsonl, in memory in the lab), or configmap[:[NAMESPACE/]NAME] (default drover-journal in the lock's namespace) so a new runner pod can --resume")
	return cmd
}

// run is the command: plan (reading the journal to resume, if any), then
// hand the plan to the run, and print what it reports.
func (f *upgradeFlags) run(ctx context.Context, s Streams) error {
	if err := f.out.validate(); err != nil {
		return err
	}
	if len(f.retryNodes) > 0 && !f.resume {
		return usage(errors.New("--retry-node goes with --resume"))
	}
	if f.resume && (len(f.target.only) > 0 || f.target.canary > 0) {
		return usage(errors.New("--only and --canary choose the nodes of a new run; --resume continues the journal's run with its own selection"))
	}
	progress := s.Out
	if f.out.json() {
		progress = s.Err
	}
	var con *console
	logf := func(node, msg string) {
		if con != nil {
			con.labLog(node, msg)
		}
	}
	o := planOptions{target: f.target, lockNamespace: f.lock.namespace, log: logf, tfOut: progress}
	if f.resume {
		o.resume = &run.ResumeInputs{Journal: f.journalPath, RetryNodes: f.retryNodes}
	}
	p, err := f.src.planFor(ctx, s, o)
	if err != nil {
		return err
	}
	defer p.Close()
	con = newConsole(progress, p.Site.Clock().Now)
	con.github = s.getenv("GITHUB_ACTIONS") == "true"
	con.groups = con.github && p.Config.Rollout.MaxParallelWorkers == 1
	opts := run.Options{
		Yes: f.yes, Approve: f.approve, Journal: f.journalPath, NeedsJournal: f.src.labState != "" || f.src.crashAt != "",
		Report: f.reportPath, SkipDrainPreflight: f.skipDrainPF, SkipPreflightHealth: f.skipHealth, SkipImageCheck: f.skipImages, ForceWindow: f.forceWindow,
		Lock: run.Lock{Namespace: f.lock.namespace, Name: f.lock.name, TTL: f.lock.ttl}, Runner: runnerName(s),
		Progress: con, Log: con.labLog, Out: progress, Version: Version,
	}
	if s.Where != nil {
		opts.Watchers = append(opts.Watchers, s.Where)
	}
	if s.IsTerminal != nil && s.IsTerminal() {
		opts.Confirm = func() bool { return confirm(s, progress, p) }
	}
	out, err := run.NewUpgrade(p, opts).Run(ctx)
	if out == nil {
		return err
	}
	if f.out.json() {
		if werr := writeJSON(s, out); werr != nil {
			return werr
		}
		return err
	}
	if out.Result != rollout.ResultBlocked && len(out.Nodes) > 0 {
		printSummary(s.Out, out)
	}
	for _, d := range out.Notifications {
		if !d.Delivered {
			fmt.Fprintf(s.Out, "notification %s not delivered after %d attempts: %s\n", d.Event, d.Attempts, d.Error)
		}
	}
	return err
}

// confirm shows the plan and asks the operator on the terminal.
func confirm(s Streams, w io.Writer, p *run.Planned) bool {
	printPlan(w, p.Plan, p.Decision)
	fmt.Fprintf(w, "\nUpgrade %d nodes of cluster %s? Type yes to go on: ", p.Plan.NodeCount(), p.Config.Cluster.Name)
	if fl, ok := w.(interface{ Flush() error }); ok {
		_ = fl.Flush()
	}
	answer, _ := bufio.NewReader(s.In).ReadString('\n')
	return strings.TrimSpace(strings.ToLower(answer)) == "yes"
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
