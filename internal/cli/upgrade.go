package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/health"
	"github.com/prox-ops/drover/internal/journal"
	"github.com/prox-ops/drover/internal/kube"
	"github.com/prox-ops/drover/internal/metrics"
	"github.com/prox-ops/drover/internal/notify"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/runreport"
	"github.com/prox-ops/drover/internal/version"
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
	cmd.Flags().BoolVar(&f.skipDrainPF, "skip-drain-preflight", false, "do not stop before any change when a PodDisruptionBudget would block a drain (the drain itself still honours it)")
	cmd.Flags().StringVar(&f.journalPath, "journal", "", "where the run's journal goes: a file (JSON lines; default drover-journal.jsonl, in memory in the lab), or configmap[:[NAMESPACE/]NAME] (default drover-journal in the lock's namespace) so a new runner pod can --resume")
	return cmd
}

// labStats are the lab's safety counters in the report.
type labStats struct {
	SimulatedDurationSeconds float64 `json:"simulatedDurationSeconds"`
	PDBViolations            int     `json:"pdbViolations"`
	MaxControlPlaneDown      int     `json:"maxControlPlaneDown"`
	// EtcdLeaderLost counts control-plane nodes taken down while leading etcd.
	EtcdLeaderLost int `json:"etcdLeaderLost"`
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
	Trigger *runreport.Trigger `json:"trigger,omitempty"`
	// VersionSources says where each node's version was read.
	VersionSources map[string]string `json:"versionSources,omitempty"`
}

// triggerOf is who and what started the run, from the GitHub Actions
// environment when there is one.
func triggerOf(s Streams) *runreport.Trigger {
	t := &runreport.Trigger{Actor: s.getenv("GITHUB_ACTOR"), Repository: s.getenv("GITHUB_REPOSITORY"), SHA: s.getenv("GITHUB_SHA"),
		Workflow: s.getenv("GITHUB_WORKFLOW"), PR: s.getenv("DROVER_PR_NUMBER")}
	if ref := s.getenv("GITHUB_REF"); t.PR == "" && strings.HasPrefix(ref, "refs/pull/") {
		t.PR = strings.Split(strings.TrimPrefix(ref, "refs/pull/"), "/")[0]
	}
	if srv, id := s.getenv("GITHUB_SERVER_URL"), s.getenv("GITHUB_RUN_ID"); srv != "" && id != "" && t.Repository != "" {
		t.RunURL = srv + "/" + t.Repository + "/actions/runs/" + id
	}
	if *t == (runreport.Trigger{}) {
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

// upgrade is one run of drover upgrade; its phases share it.
type upgrade struct {
	events   *kube.NodeEvents
	metrics  *metrics.Pusher
	f        *upgradeFlags
	s        Streams
	progress io.Writer
	con      *console
	p        *prepared
	now      func() time.Time
	runID    string
	discord  *notify.Discord
	// deliveries are the notifications sent, for the report.
	deliveries []notify.Delivery
	// skipped names the preflights the operator switched off.
	skipped []string
}

// run is the command: resolve the versions (and the journal to resume),
// admit the run, take the lock, open the journal, assemble the engine,
// attach the notifiers, run, report.
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
	u := &upgrade{f: f, s: s, progress: s.Out}
	if f.out.json() {
		u.progress = s.Err
	}
	if err := u.prepare(ctx); err != nil {
		return stoppedOr(ctx, err)
	}
	defer u.p.close()
	if done, err := u.nothingToDo(); done {
		return err
	}
	if err := u.admit(); err != nil {
		return u.refused(err)
	}
	fmt.Fprintf(u.progress, "drover %s: cluster %s, run %s\n", Version, u.p.cfg.Cluster.Name, u.runID)
	ctx, release, err := u.lock(ctx)
	if err != nil {
		return u.refused(err)
	}
	defer release()
	j, closeJournal, err := u.journal(ctx)
	if err != nil {
		return err
	}
	defer closeJournal()
	eng, cleanup, err := u.engine(ctx, j)
	defer cleanup()
	if err != nil {
		return stoppedOr(ctx, err)
	}
	u.notifiers(eng)
	defer u.closeEvents()
	rep, runErr := eng.Run(ctx, u.p.plan)
	if rep == nil {
		return runErr
	}
	return u.finish(rep, runErr)
}

// stoppedOr: an error that came from a stop (SIGINT/SIGTERM, the lock
// lost) before the engine ran is that stop.
func stoppedOr(ctx context.Context, err error) error {
	if ctx.Err() == nil {
		return err
	}
	ie := &rollout.InterruptedError{}
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
		ie.Cause = c
	}
	return ie
}

// prepare reads the journal to resume (if any), what the nodes run, and
// builds the plan.
func (u *upgrade) prepare(ctx context.Context) error {
	f := u.f
	opts := prepareOptions{target: f.target, labLog: func(node, msg string) {
		if u.con != nil {
			u.con.labLog(node, msg)
		}
	}}
	if f.resume {
		opts.resume = func(p *prepared) (*rollout.ResumeState, error) { return u.readResume(ctx, p) }
	}
	p, err := prepare(ctx, u.s, &f.src, opts)
	if err != nil {
		return err
	}
	u.p = p
	u.now = time.Now
	if p.lab != nil {
		u.now = p.lab.Clock.Now
	}
	u.con = newConsole(u.progress, u.now)
	u.con.github = u.s.getenv("GITHUB_ACTIONS") == "true"
	u.con.groups = u.con.github && p.cfg.Rollout.MaxParallelWorkers == 1
	u.runID = u.now().UTC().Format("20060102T150405Z") + "-" + string(uuid.NewUUID())[:8]
	if p.resume != nil {
		u.runID = p.resume.RunID
	}
	return nil
}

// nothingToDo ends a run that has nothing to do.
func (u *upgrade) nothingToDo() (bool, error) {
	p := u.p
	if p.resume != nil && p.resume.Finished {
		fmt.Fprintf(u.progress, "Nothing to resume: run %s finished.\n", p.resume.RunID)
		return true, nil
	}
	if p.decision.Strategy != version.NoChange && !p.plan.Empty() {
		return false, nil
	}
	fmt.Fprintf(u.progress, "Nothing to do: every node is at %s.\n", p.change.To)
	rep := rollout.NewReport(u.runID, p.plan)
	rep.Result, rep.From, rep.To = rollout.ResultSucceeded, p.change.From.String(), p.change.To.String()
	return true, u.report(rep, nil)
}

// admit checks the maintenance window, the approval and the confirmation.
func (u *upgrade) admit() error {
	p, f := u.p, u.f
	if w := p.cfg.MaintenanceWindow; w.Set() && !f.forceWindow && !w.Open(u.now()) {
		return &rollout.BlockedError{Reason: "outside the maintenance window (" + w.String() + "); wait for it or pass --force-window"}
	}
	if p.decision.ApprovalRequired && !f.approve {
		return &rollout.BlockedError{Reason: "approval required: " + p.decision.Rationale + " Re-run with --approve once it is approved."}
	}
	if f.yes {
		return nil
	}
	s := u.s
	if s.IsTerminal == nil || !s.IsTerminal() {
		return &rollout.BlockedError{Reason: "refusing to upgrade without --yes: this session is not interactive, so nobody can confirm the plan"}
	}
	printPlan(u.progress, p.plan, p.decision)
	fmt.Fprintf(u.progress, "\nUpgrade %d nodes of cluster %s? Type yes to go on: ", p.plan.NodeCount(), p.cfg.Cluster.Name)
	if fl, ok := u.progress.(interface{ Flush() error }); ok {
		_ = fl.Flush()
	}
	answer, _ := bufio.NewReader(s.In).ReadString('\n')
	if strings.TrimSpace(strings.ToLower(answer)) != "yes" {
		return &rollout.BlockedError{Reason: "not confirmed"}
	}
	return nil
}

// refused reports a run refused before it started.
func (u *upgrade) refused(err error) error {
	rep := rollout.NewReport(u.runID, u.p.plan)
	rep.Result, rep.Error = rollout.ResultOf(err), err.Error()
	rep.From, rep.To = u.p.change.From.String(), u.p.change.To.String()
	rep.Started = u.now()
	rep.Finished = rep.Started
	// A run refused before it starts is told like any other.
	if u.attachDiscord() {
		u.discord.Event(rollout.Event{Kind: rollout.EventRunFinished, Time: rep.Finished, Report: rep, Message: string(rep.Result)})
		u.deliveries = u.discord.Close(30 * time.Second)
	}
	return u.report(rep, err)
}

// client is the cluster the run lock and a ConfigMap journal live in.
func (u *upgrade) client() (kubernetes.Interface, clock.Clock) {
	if u.p.lab != nil {
		return u.p.lab.Client, u.p.lab.Clock
	}
	return u.p.kube, clock.Real{}
}

// lock takes the run lock. The returned context is cancelled, with the
// lock's loss as its cause, if the lock is lost or taken over: the engine
// then stops at its next safe point, as on SIGTERM.
func (u *upgrade) lock(ctx context.Context) (context.Context, func(), error) {
	kc, clk := u.client()
	if kc == nil {
		return ctx, func() {}, usage(fmt.Errorf("%w; an upgrade needs the cluster (rehearse with --lab)", kube.ErrNoCluster))
	}
	lease := u.f.lock.lease(kc, clk, u.s)
	lctx, cancel := context.WithCancelCause(ctx)
	lease.OnLost = func(err error) {
		u.con.line("", "run lock lost: "+err.Error()+"; stopping at the next safe point")
		cancel(err)
	}
	release, err := lease.Acquire(ctx, journal.Holder{Runner: runnerName(u.s), RunID: u.runID, Started: u.now()})
	if err != nil {
		cancel(nil)
		return ctx, func() {}, &rollout.BlockedError{Reason: "run lock", Err: err}
	}
	return lctx, func() { release(); cancel(nil) }, nil
}

// journal opens the run's journal: a file, a ConfigMap, or memory (lab).
func (u *upgrade) journal(ctx context.Context) (rollout.Journal, func(), error) {
	f, p := u.f, u.p
	none := func() {}
	if f.journalPath == "" && p.lab == nil {
		f.journalPath = "drover-journal.jsonl"
	}
	if f.journalPath == "" && (f.src.labState != "" || f.src.crashAt != "") {
		return nil, none, usage(errors.New("--lab-state and --lab-crash-at need --journal, to resume from"))
	}
	var j rollout.Journal = &journal.Memory{}
	closeJ := none
	cm, err := u.configMapJournal()
	switch {
	case err != nil:
		return nil, none, err
	case cm != nil:
		j = cm
	case f.journalPath != "":
		fj, err := journal.OpenFile(f.journalPath)
		if err != nil {
			return nil, none, usage(err)
		}
		for _, w := range fj.Warnings {
			fmt.Fprintf(u.s.Err, "drover: warning: %s\n", w)
		}
		fj.Mask = u.s.Masker.Mask
		j, closeJ = fj, func() { _ = fj.Close() }
	}
	if p.lab != nil && (f.src.labState != "" || f.src.crashAt != "") {
		cj, err := u.crashJournal(j)
		if err != nil {
			closeJ()
			return nil, none, err
		}
		j = cj
	}
	_ = ctx
	return j, closeJ, nil
}

// engine assembles the engine over the lab's or the real cluster's adapters.
func (u *upgrade) engine(ctx context.Context, j rollout.Journal) (*rollout.Engine, func(), error) {
	p, f := u.p, u.f
	cleanup := func() {}
	var eng *rollout.Engine
	if p.lab != nil {
		eng = p.lab.Engine(j, u.con, u.runID)
	} else {
		a, err := u.realAdapters(ctx, j)
		if err != nil {
			return nil, cleanup, err
		}
		// The gate reads through informers started once for the run. They
		// outlive a stop signal (a rollback still needs its gate) and stop
		// when the run ends.
		cctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		cache := health.NewCache(p.kube)
		if err := cache.Start(cctx, time.Minute); err != nil {
			stop()
			return nil, cleanup, fmt.Errorf("start the health gate's cache: %w", err)
		}
		a.Reader, cleanup = cache, stop
		eng = assembleEngine(p, a)
		eng.Journal, eng.Sink, eng.RunID = j, u.con, u.runID
	}
	eng.Header = rollout.RunHeader{Cluster: p.cfg.Cluster.Name, Strategy: string(p.plan.Strategy), From: p.plan.From.String(), To: p.plan.To.String(),
		Only: strings.Join(p.plan.Only, ",")}
	if p.resume != nil {
		eng.Header.Only = p.resume.Header.Only
	}
	eng.Resume = p.resume
	if f.skipDrainPF {
		eng.Preflights, u.skipped = without(eng.Preflights, kube.DrainPreflightCheck{}.Name())
	}
	if w := p.cfg.MaintenanceWindow; w.Set() && !f.forceWindow {
		eng.Window, eng.WindowName = w.Open, w.String()
	}
	if f.skipHealth {
		eng.PreflightHealth = false
		u.skipped = append(u.skipped, "preflight health")
	}
	return eng, cleanup, nil
}

// eventsClient is the Node events' client: on a real cluster one of its
// own, so its calls never queue behind the run's in a shared rate limiter.
func (u *upgrade) eventsClient() kubernetes.Interface {
	if u.p.lab != nil {
		return u.p.lab.Client
	}
	if u.p.rest == nil {
		return nil
	}
	kc, err := kubernetes.NewForConfig(rest.CopyConfig(u.p.rest))
	if err != nil {
		return nil
	}
	return kc
}

// attachDiscord sets u.discord when the webhook is configured and set.
func (u *upgrade) attachDiscord() bool {
	env := u.p.cfg.Notifications.Discord.WebhookEnv
	if env == "" || u.s.getenv(env) == "" {
		return false
	}
	url := u.s.getenv(env)
	if !strings.HasPrefix(url, "https://") && !strings.HasPrefix(url, "http://") {
		fmt.Fprintf(u.progress, "drover: warning: %s is not an http(s) URL; Discord notifications are off\n", env)
		return false
	}
	u.discord = &notify.Discord{URL: url, Mask: u.s.Masker.Mask}
	return true
}

// keepDurations adds what the upgraded nodes (and the templates) took to
// the history plans take their ETA from.
func (u *upgrade) keepDurations(rep *rollout.Report) {
	d := u.p.durations(u.s)
	if d == nil {
		return
	}
	add := map[string][]time.Duration{}
	for _, n := range rep.Nodes {
		if n.Outcome == rollout.OutcomeUpgraded && n.Duration > 0 {
			k := journal.SampleKey(rep.Strategy, n.Role)
			add[k] = append(add[k], n.Duration)
		}
	}
	if rep.TemplatesSeconds > 0 {
		k := journal.SampleKey(rep.Strategy, "templates")
		add[k] = append(add[k], time.Duration(rep.TemplatesSeconds*float64(time.Second)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Add(ctx, add); err != nil {
		fmt.Fprintf(u.s.Err, "drover: warning: keep the measured durations: %v\n", err)
	}
}

// labEvents says what the lab's Nodes got as Events, as kubectl describe
// node would show them on a real cluster.
func (u *upgrade) labEvents() {
	evs, err := u.p.lab.Client.EventsV1().Events(metav1.NamespaceDefault).List(context.Background(), metav1.ListOptions{})
	if err != nil || len(evs.Items) == 0 {
		return
	}
	count := map[string]int{}
	for _, e := range evs.Items {
		if e.ReportingController == "drover" {
			count[e.Reason]++
		}
	}
	var parts []string
	for _, r := range slices.Sorted(maps.Keys(count)) {
		parts = append(parts, fmt.Sprintf("%s %d", r, count[r]))
	}
	fmt.Fprintf(u.progress, "lab: drover recorded %d Events on the Nodes (%s)\n", len(evs.Items), strings.Join(parts, ", "))
}

// closeEvents records the Node events still queued (at most 10 s).
func (u *upgrade) closeEvents() {
	if u.events == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u.events.Close(ctx)
}

// notifiers attach Discord (when its webhook is set) and the hard-stop
// tracker to the engine's events.
func (u *upgrade) notifiers(eng *rollout.Engine) {
	ss := sinks{u.con}
	if kc := u.eventsClient(); kc != nil {
		u.events = kube.NewNodeEvents(kc, u.runID, func(msg string) { u.con.labLog("", msg) })
		ss = append(ss, u.events)
	}
	if u.s.Where != nil {
		ss = append(ss, u.s.Where)
	}
	if u.attachDiscord() {
		ss = append(ss, u.discord)
	}
	if pg := u.p.cfg.Metrics.Pushgateway; pg != "" {
		p := u.p.plan
		u.metrics = metrics.New(pg, metrics.Run{Cluster: u.p.cfg.Cluster.Name, ID: u.runID, Strategy: string(p.Strategy),
			From: p.From.String(), To: p.To.String(), Started: u.now(), ETA: p.ETA}, func(msg string) { u.con.labLog("", msg) })
		ss = append(ss, u.metrics)
	}
	eng.Sink = ss
}

// finish saves the lab, flushes the notifications and reports.
func (u *upgrade) finish(rep *rollout.Report, runErr error) error {
	rep.SkippedPreflights = u.skipped
	u.closeEvents()
	if u.p.lab != nil {
		u.labEvents()
	}
	if u.p.lab != nil && u.f.src.labState != "" {
		if err := u.p.lab.SaveState(u.f.src.labState); err != nil {
			fmt.Fprintf(u.s.Err, "drover: warning: save the lab state: %v\n", err)
		}
	}
	if u.discord != nil {
		u.deliveries = u.discord.Close(30 * time.Second)
	}
	if u.metrics != nil {
		u.metrics.Close(10 * time.Second)
	}
	u.keepDurations(rep)
	return u.report(rep, runErr)
}

// report prints the outcome in the chosen format, writes the audit report
// and the GitHub files, and passes runErr on.
func (u *upgrade) report(rep *rollout.Report, runErr error) error {
	s, p, f := u.s, u.p, u.f
	if s.getenv("GITHUB_ACTIONS") == "true" {
		if err := notify.WriteGitHubFiles(s.getenv, rep, s.Masker.Mask); err != nil {
			fmt.Fprintf(s.Err, "drover: warning: %v\n", err)
		}
	}
	var stats *labStats
	if p.lab != nil {
		st := p.lab.Stats()
		stats = &labStats{SimulatedDurationSeconds: rep.Duration.Seconds(), PDBViolations: st.PDBViolations, MaxControlPlaneDown: st.MaxControlPlaneDown, EtcdLeaderLost: st.EtcdLeaderLost}
	}
	full := upgradeOutput{Report: rep, labStats: stats, Rationale: p.decision.Rationale, ApprovalRequired: p.decision.ApprovalRequired,
		Notifications: u.deliveries, Approved: f.approve, Trigger: triggerOf(s), VersionSources: p.versionSources()}
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
	for _, d := range u.deliveries {
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
