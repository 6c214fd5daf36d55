package cli

import (
	"bufio"
	"context"
	"errors"
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
	"github.com/prox-ops/drover/internal/lab"
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
	cmd.Flags().StringVar(&f.reportPath, "report", "", "write the audit report (JSON: trigger, versions, strategy, approval, every node's steps, snapshots, notifications) to this file (default for a real cluster: drover-report.json)")
	cmd.Flags().BoolVar(&f.resume, "resume", false, "continue the interrupted or halted run of --journal: finished nodes are skipped, a node caught mid-step starts again where it stood, halted nodes stay halted")
	cmd.Flags().StringArrayVar(&f.retryNodes, "retry-node", nil, "with --resume, try this halted node again (repeatable)")
	cmd.Flags().BoolVar(&f.forceWindow, "force-window", false, "run outside the configured maintenance window (and do not pause when it closes)")
	cmd.Flags().BoolVar(&f.skipHealth, "skip-preflight-health", false, "do not stop before any change when the cluster is already unhealthy (the report says it was skipped)")
	cmd.Flags().BoolVar(&f.skipDrainPF, "skip-drain-preflight", false, "do not stop before any change when a PodDisruptionBudget would block a drain (the drain itself still honours it)")
	cmd.Flags().StringVar(&f.journalPath, "journal", "", "where the run's journal goes: a file (JSON lines; default drover-journal.jsonl, in memory in the lab), or configmap[:NAMESPACE/NAME] (default drover-journal in the lock's namespace) so a new runner pod can --resume")
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
	// Approved: the run was approved with --approve.
	Approved bool `json:"approved"`
	// Trigger says who and what started the run.
	Trigger *Trigger `json:"trigger,omitempty"`
}

// Trigger is who and what started a run, from the GitHub Actions
// environment when there is one.
type Trigger struct {
	Actor      string `json:"actor,omitempty"`
	Repository string `json:"repository,omitempty"`
	PR         string `json:"pullRequest,omitempty"`
	SHA        string `json:"commit,omitempty"`
	Workflow   string `json:"workflow,omitempty"`
	RunURL     string `json:"runUrl,omitempty"`
}

func triggerOf(s Streams) *Trigger {
	t := &Trigger{Actor: s.getenv("GITHUB_ACTOR"), Repository: s.getenv("GITHUB_REPOSITORY"), SHA: s.getenv("GITHUB_SHA"),
		Workflow: s.getenv("GITHUB_WORKFLOW"), PR: s.getenv("DROVER_PR_NUMBER")}
	if ref := s.getenv("GITHUB_REF"); t.PR == "" && strings.HasPrefix(ref, "refs/pull/") {
		t.PR = strings.Split(strings.TrimPrefix(ref, "refs/pull/"), "/")[0]
	}
	if srv, id := s.getenv("GITHUB_SERVER_URL"), s.getenv("GITHUB_RUN_ID"); srv != "" && id != "" && t.Repository != "" {
		t.RunURL = srv + "/" + t.Repository + "/actions/runs/" + id
	}
	if *t == (Trigger{}) {
		u := s.getenv("USER")
		if u == "" {
			u = "unknown"
		}
		t.Actor = u + " (command line)"
	}
	return t
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

	var resume *rollout.ResumeState
	if f.resume {
		if resume, err = f.readResume(ctx, s, p); err != nil {
			return err
		}
		if resume.Finished {
			fmt.Fprintf(progress, "Nothing to resume: run %s finished.\n", resume.RunID)
			return nil
		}
		runID = resume.RunID
		inFlight := map[string]bool{}
		for name, ns := range resume.Nodes {
			if !ns.Done {
				inFlight[name] = true
			}
		}
		p.rebuildPlan(inFlight)
	} else if len(f.retryNodes) > 0 {
		return usage(errors.New("--retry-node goes with --resume"))
	}
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
	if f.journalPath == "" && (f.src.labState != "" || f.src.crashAt != "") {
		return usage(errors.New("--lab-state and --lab-crash-at need --journal, to resume from"))
	}
	if cm := f.configMapJournal(s, p, kc); cm != nil {
		j = cm
	} else if f.journalPath != "" {
		fj, err := journal.OpenFile(f.journalPath)
		if err != nil {
			return usage(err)
		}
		fj.Mask = s.Masker.Mask
		defer fj.Close()
		j = fj
	}
	if p.lab != nil && (f.src.labState != "" || f.src.crashAt != "") {
		cj, err := f.crashJournal(j, p)
		if err != nil {
			return err
		}
		j = cj
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
	eng.Header = rollout.RunHeader{Cluster: p.cfg.Cluster.Name, Strategy: string(p.plan.Strategy), From: p.plan.From.String(), To: p.plan.To.String()}
	eng.Resume = resume
	var discord *notify.Discord
	if env := p.cfg.Notifications.Discord.WebhookEnv; env != "" && s.getenv(env) != "" {
		if u := s.getenv(env); strings.HasPrefix(u, "https://") || strings.HasPrefix(u, "http://") {
			discord = &notify.Discord{URL: u, Mask: s.Masker.Mask}
			eng.Sink = sinks{con, discord}
		} else {
			fmt.Fprintf(progress, "drover: warning: %s is not an http(s) URL; Discord notifications are off\n", env)
		}
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
	if p.lab != nil && f.src.labState != "" {
		if err := p.lab.SaveState(f.src.labState); err != nil {
			fmt.Fprintf(s.Err, "drover: warning: save the lab state: %v\n", err)
		}
	}
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
	full := upgradeOutput{Report: rep, labStats: stats, Rationale: p.decision.Rationale, ApprovalRequired: p.decision.ApprovalRequired,
		Notifications: f.deliveries, Approved: f.approve, Trigger: triggerOf(s)}
	path := f.reportPath
	if path == "" && p.lab == nil {
		path = "drover-report.json"
	}
	if path != "" {
		var b strings.Builder
		if err := writeJSON(&b, full); err == nil {
			if err := os.WriteFile(path, []byte(s.Masker.Mask(b.String())), 0o600); err != nil {
				fmt.Fprintf(s.Err, "drover: warning: write the report: %v\n", err)
			}
		}
	}
	if f.out.json() {
		if err := writeJSON(s.Out, full); err != nil {
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

// readResume reads --journal for --resume and checks it is this run's.
func (f *upgradeFlags) readResume(ctx context.Context, s Streams, p *prepared) (*rollout.ResumeState, error) {
	if f.journalPath == "" && p.lab != nil {
		return nil, usage(errors.New("--resume needs --journal: the journal of the run to continue"))
	}
	if f.journalPath == "" {
		f.journalPath = "drover-journal.jsonl"
	}
	entries, err := f.journalEntries(ctx, s, p)
	if err != nil {
		return nil, err
	}
	st, err := rollout.ReadResume(rollout.LastRun(entries))
	if err != nil {
		return nil, usage(err)
	}
	want := rollout.RunHeader{Cluster: p.cfg.Cluster.Name, Strategy: string(p.plan.Strategy), From: p.plan.From.String(), To: p.plan.To.String()}
	// The journal is written masked: compare what it could hold.
	want.Cluster = s.Masker.Mask(want.Cluster)
	if st.Header != want {
		return nil, usage(&rollout.JournalError{Why: fmt.Sprintf("the journal is for %s %s %s -> %s, this run is %s %s %s -> %s",
			st.Header.Cluster, st.Header.Strategy, st.Header.From, st.Header.To, want.Cluster, want.Strategy, want.From, want.To)})
	}
	for _, n := range f.retryNodes {
		ns, ok := st.Nodes[n]
		if !ok || !ns.Halted {
			return nil, usage(fmt.Errorf("--retry-node %s: the journal has no halted node of that name", n))
		}
		delete(st.Nodes, n)
	}
	return st, nil
}

// crashJournal saves the lab after every record (--lab-state) and kills
// the process right after it records --lab-crash-at NODE:STEP.
func (f *upgradeFlags) crashJournal(inner rollout.Journal, p *prepared) (rollout.Journal, error) {
	cj := &labJournal{inner: inner, lab: p.lab, state: f.src.labState}
	if f.src.crashAt != "" {
		node, step, ok := strings.Cut(f.src.crashAt, ":")
		if !ok || node == "" || step == "" {
			return nil, usage(fmt.Errorf("--lab-crash-at %q: want NODE:STEP, such as k8s-work-2:destroy", f.src.crashAt))
		}
		if _, ok := p.cfg.NodeByName(node); !ok {
			return nil, usage(fmt.Errorf("--lab-crash-at: no node %q in the inventory", node))
		}
		if step == "replace" { // the replacement as a whole: it starts with the destroy (or the in-place upgrade)
			step = string(rollout.StepDestroy)
			if p.plan.Strategy == version.Pets {
				step = string(rollout.StepUpgrade)
			}
		}
		if !rollout.IsNodeStep(rollout.Step(step)) {
			return nil, usage(fmt.Errorf("--lab-crash-at: unknown step %q; steps are %s", step, rollout.NodeSteps()))
		}
		cj.node, cj.step = node, rollout.Step(step)
	}
	return cj, nil
}

type labJournal struct {
	inner rollout.Journal
	lab   *lab.Lab
	state string
	node  string
	step  rollout.Step
}

func (j *labJournal) Record(ctx context.Context, e rollout.Entry) error {
	if err := j.inner.Record(ctx, e); err != nil {
		return err
	}
	if j.state != "" {
		if err := j.lab.SaveState(j.state); err != nil {
			return fmt.Errorf("save the lab state: %w", err)
		}
	}
	if j.node != "" && e.Node == j.node && e.Step == j.step && e.Status == rollout.StatusStarted {
		// The rehearsed crash: no cleanup, no lock release, nothing flushed.
		os.Exit(137)
	}
	return nil
}

// configMapJournal is the --journal configmap[:NS/NAME] store, or nil.
func (f *upgradeFlags) configMapJournal(s Streams, p *prepared, kc kubernetes.Interface) *journal.ConfigMap {
	ns, name, ok, err := journal.ParseConfigMapRef(f.journalPath, f.lock.lease(kc, clock.Real{}, s).Namespace)
	if !ok || err != nil || kc == nil {
		return nil
	}
	return &journal.ConfigMap{Client: kc, Namespace: ns, Name: name, Mask: s.Masker.Mask}
}

// journalEntries reads the journal of --journal (a file or a ConfigMap).
func (f *upgradeFlags) journalEntries(ctx context.Context, s Streams, p *prepared) ([]rollout.Entry, error) {
	if _, _, ok, err := journal.ParseConfigMapRef(f.journalPath, ""); ok {
		if err != nil {
			return nil, usage(err)
		}
		kc := p.kube
		if p.lab != nil {
			kc = p.lab.Client
		}
		if kc == nil {
			return nil, usage(fmt.Errorf("--journal %s needs cluster access", f.journalPath))
		}
		entries, err := f.configMapJournal(s, p, kc).Entries(ctx)
		if err != nil {
			return nil, usage(&rollout.JournalError{Why: err.Error()})
		}
		return entries, nil
	}
	fh, err := os.Open(f.journalPath)
	if err != nil {
		return nil, usage(fmt.Errorf("--resume: %w", err))
	}
	defer fh.Close()
	entries, err := journal.Read(fh)
	if err != nil {
		return nil, usage(&rollout.JournalError{Why: err.Error()})
	}
	return entries, nil
}
