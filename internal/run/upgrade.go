package run

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/uuid"

	"github.com/prox-ops/drover/internal/assemble"
	"github.com/prox-ops/drover/internal/journal"
	"github.com/prox-ops/drover/internal/kube"
	"github.com/prox-ops/drover/internal/metrics"
	"github.com/prox-ops/drover/internal/notify"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/version"
)

// Options shape an upgrade.
type Options struct {
	// Yes skips the confirmation; Confirm asks for it (nil: nobody can,
	// the run is refused).
	Yes     bool
	Confirm func() bool
	// Approve approves a major upgrade or a version on the approval list.
	Approve bool
	// Journal is where the journal goes (a file, configmap[:...]; empty:
	// the site's default). NeedsJournal refuses a run without one (a kept
	// lab must be resumable).
	Journal      string
	NeedsJournal bool
	// Report is where the audit report goes (empty: the site's default).
	Report string
	// The operator's overrides.
	SkipDrainPreflight, SkipPreflightHealth, SkipImageCheck, ForceWindow bool
	// Lock names the run lock.
	Lock Lock
	// Runner names this runner in the lock.
	Runner string
	// Progress shows the engine's events (the console); Log shows what the
	// adapters do; Out takes plain progress lines and the talosctl output.
	Progress rollout.Sink
	Log      func(node, msg string)
	Out      io.Writer
	// Watchers also receive every event (the CLI's record of where each
	// node stands, for a second signal).
	Watchers []rollout.Sink
	// Version is drover's version, for the run's first line.
	Version string
}

// Lock names the run lock's Lease.
type Lock struct {
	Namespace, Name string
	TTL             time.Duration
}

// Upgrade is one drover upgrade, from its plan to its report.
type Upgrade struct {
	planned *Planned
	opts    Options
	runID   string
	now     func() time.Time
	journal rollout.Journal
	// readBack reads the journal's entries back (a hand-off's continuation
	// in this process resumes from them).
	readBack func(ctx context.Context) ([]rollout.Entry, error)
	log      func(node, msg string)
	progress io.Writer
	events   *kube.NodeEvents
	metrics  *metrics.Pusher
	discord  *notify.Discord
	// deliveries are the notifications sent, for the report.
	deliveries []notify.Delivery
}

// NewUpgrade sets up the upgrade of a plan; its run ID is fixed here (a
// resumed run keeps its journal's).
func NewUpgrade(p *Planned, o Options) *Upgrade {
	u := &Upgrade{planned: p, opts: o, now: p.Site.Clock().Now, log: o.Log, progress: o.Out}
	if u.log == nil {
		u.log = func(string, string) {}
	}
	if u.progress == nil {
		u.progress = io.Discard
	}
	u.runID = u.now().UTC().Format("20060102T150405Z") + "-" + string(uuid.NewUUID())[:8]
	if p.Resume != nil {
		u.runID = p.Resume.RunID
	}
	return u
}

// RunID is the run's ID.
func (u *Upgrade) RunID() string { return u.runID }

// Run runs the upgrade: admit it, take the lock, open the journal,
// assemble the engine, attach the notifiers, run, report. The Output is
// what the report says (nil only for an error before anything could be
// reported); the error is the run's, typed for the exit code.
func (u *Upgrade) Run(ctx context.Context) (*Output, error) {
	p := u.planned
	if err := u.checkFiles(); err != nil {
		return nil, err
	}
	if out, done := u.nothingToDo(); done {
		return out, nil
	}
	if err := u.admit(); err != nil {
		return u.refused(err)
	}
	fmt.Fprintf(u.progress, "drover %s: cluster %s, run %s\n", u.opts.Version, p.Config.Cluster.Name, u.runID)
	for _, w := range p.Warnings {
		p.env.warn("%s", w)
	}
	if len(p.Config.Talos.EtcdSnapshotRecipients) == 0 && len(p.Config.ControlPlaneNodes()) > 0 {
		p.env.warn("talos.etcdSnapshotRecipients is empty: the etcd snapshots (every Secret of the cluster) stay unencrypted in %s; the kit keeps only encrypted ones", p.Config.Talos.EtcdSnapshotDir)
	}
	ctx, release, err := u.lock(ctx)
	if err != nil {
		return u.refused(err)
	}
	defer release()
	j, closeJournal, err := u.openJournal()
	if err != nil {
		return nil, err
	}
	defer closeJournal()
	u.journal = j
	sink := u.sinks()
	defer u.closeEvents()
	rep, runErr := u.runEngine(ctx, sink)
	for rep != nil && handedOff(runErr) {
		next, ok, err := u.continueHere(ctx)
		if err != nil {
			u.log("", "the lab could not play the continuation: "+err.Error())
		}
		if !ok {
			break
		}
		first := rep
		u.planned = next
		if rep, runErr = u.runEngine(ctx, sink); rep != nil {
			rep = mergeReports(first, rep)
		}
	}
	if rep == nil {
		return nil, runErr
	}
	return u.finish(rep), runErr
}

// runEngine assembles the engine for the current plan and runs it.
func (u *Upgrade) runEngine(ctx context.Context, sink rollout.Sink) (*rollout.Report, error) {
	eng, cleanup, err := u.engine(ctx, sink)
	defer cleanup()
	if err != nil {
		return nil, stoppedOr(ctx, err)
	}
	return eng.Run(ctx, u.planned.Plan)
}

func handedOff(err error) bool {
	var ho *rollout.HandedOffError
	return errors.As(err, &ho)
}

// continueHere plays a hand-off's continuation in this process, when the
// site does (the lab without --lab-state): the next runner pod starts on
// another node, and the run is planned again from its journal, as
// drover upgrade --resume there would.
func (u *Upgrade) continueHere(ctx context.Context) (*Planned, bool, error) {
	ho, ok := u.planned.Site.(handOverer)
	if !ok {
		return nil, false, nil
	}
	if done, err := ho.HandOver(); !done || err != nil {
		return nil, false, err
	}
	in := u.planned.in
	in.Resume = &ResumeInputs{read: u.readBack}
	next, err := Plan(ctx, u.planned.Site, in, u.planned.env)
	if err != nil {
		return nil, false, err
	}
	if next.Refusal != nil {
		return nil, false, next.Refusal
	}
	return next, true, nil
}

// stoppedOr: an error that came from a stop (SIGINT/SIGTERM, the lock
// lost) before the engine ran is that stop.
func stoppedOr(ctx context.Context, err error) error {
	if ctx.Err() == nil {
		return err
	}
	return rollout.Stopped(ctx)
}

// nothingToDo ends a run that has nothing to do.
func (u *Upgrade) nothingToDo() (*Output, bool) {
	p := u.planned
	if p.Resume != nil && p.Resume.Finished {
		fmt.Fprintf(u.progress, "Nothing to resume: run %s finished.\n", p.Resume.RunID)
		return nil, true
	}
	if p.Decision.Strategy != version.NoChange && !p.Plan.Empty() {
		return nil, false
	}
	fmt.Fprintf(u.progress, "Nothing to do: every node is at %s.\n", p.Change.To)
	rep := rollout.NewReport(u.runID, p.Plan)
	rep.Result, rep.From, rep.To = rollout.ResultSucceeded, p.Change.From.String(), p.Change.To.String()
	return u.report(rep), true
}

// admit checks the maintenance window, the approval and the confirmation.
func (u *Upgrade) admit() error {
	p, o := u.planned, u.opts
	if p.Refusal != nil {
		return p.Refusal
	}
	if w := p.Config.MaintenanceWindow; w.Set() && !o.ForceWindow && !w.Open(u.now()) {
		return &rollout.BlockedError{Reason: "outside the maintenance window (" + w.String() + "); wait for it or pass --force-window"}
	}
	if p.Decision.ApprovalRequired && !o.Approve {
		return &rollout.BlockedError{Reason: "approval required: " + p.Decision.Rationale + " Re-run with --approve once it is approved."}
	}
	switch {
	case o.Yes:
		return nil
	case o.Confirm == nil:
		return &rollout.BlockedError{Reason: "refusing to upgrade without --yes: this session is not interactive, so nobody can confirm the plan"}
	case !o.Confirm():
		return &rollout.BlockedError{Reason: "not confirmed"}
	}
	return nil
}

// refused reports a run refused before it started, and tells Discord. A
// usage error (no cluster access, a bad flag: exit 2) touches nothing: no
// report, no message.
func (u *Upgrade) refused(err error) (*Output, error) {
	if IsUsage(err) {
		return nil, err
	}
	p := u.planned
	rep := rollout.NewReport(u.runID, p.Plan)
	rep.Result, rep.Error = rollout.ResultOf(err), err.Error()
	rep.From, rep.To = p.Change.From.String(), p.Change.To.String()
	rep.Started = u.now()
	rep.Finished = rep.Started
	if u.attachDiscord() {
		u.discord.Event(rollout.Event{Kind: rollout.EventRunFinished, Time: rep.Finished, Report: rep, Message: string(rep.Result)})
		u.deliveries = u.discord.Close(30 * time.Second)
	}
	return u.report(rep), err
}

// lock takes the run lock. The returned context is cancelled, with the
// lock's loss as its cause, if the lock is lost or taken over: the engine
// then stops at its next safe point, as on SIGTERM.
func (u *Upgrade) lock(ctx context.Context) (context.Context, func(), error) {
	site := u.planned.Site
	kc := site.LockClient()
	if kc == nil {
		return ctx, func() {}, Usage(fmt.Errorf("%w; an upgrade needs the cluster (rehearse with --lab)", kube.ErrNoCluster))
	}
	l := u.opts.Lock
	lease := &journal.LeaseLock{Client: kc, Clock: site.Clock(), Namespace: u.planned.lockNamespace(), Name: l.Name, TTL: l.TTL}
	lctx, cancel := context.WithCancelCause(ctx)
	lease.OnLost = func(err error) {
		u.log("", "run lock lost: "+err.Error()+"; stopping at the next safe point")
		cancel(err)
	}
	release, err := lease.Acquire(ctx, journal.Holder{Runner: u.opts.Runner, RunID: u.runID, Started: u.now()})
	if err != nil {
		cancel(nil)
		return ctx, func() {}, &rollout.BlockedError{Reason: "run lock", Err: err}
	}
	return lctx, func() { release(); cancel(nil) }, nil
}

// engine assembles the engine over the site's adapters, with every option
// of this run.
func (u *Upgrade) engine(ctx context.Context, sink rollout.Sink) (*rollout.Engine, func(), error) {
	p, o := u.planned, u.opts
	a, release, err := p.Site.Adapters(ctx, u)
	if err != nil {
		return nil, release, err
	}
	h := rollout.RunHeader{Cluster: p.Config.Cluster.Name, Strategy: string(p.Plan.Strategy), From: p.Plan.From.String(), To: p.Plan.To.String(),
		Only: strings.Join(p.Plan.Only, ","), Canary: strings.Join(p.Plan.Canary, ",")}
	if p.Resume != nil {
		h.Only, h.Canary = p.Resume.Header.Only, p.Resume.Header.Canary
	}
	r := assemble.Run{Journal: u.journal, Sink: sink, RunID: u.runID, Header: h, Resume: p.Resume,
		SkipDrainPreflight: o.SkipDrainPreflight, SkipPreflightHealth: o.SkipPreflightHealth, SkipImageCheck: o.SkipImageCheck, Self: p.Self.Spec}
	if w := p.Config.MaintenanceWindow; w.Set() && !o.ForceWindow {
		r.Window, r.WindowName = w.Open, w.String()
	}
	return assemble.Engine(*p.Config, a, r), release, nil
}

// sinks are where the engine's events go: the progress, the Node events,
// the watchers, Discord (when its webhook is set) and the Pushgateway.
func (u *Upgrade) sinks() rollout.Sink {
	p := u.planned
	var ss sinks
	if u.opts.Progress != nil {
		ss = append(ss, u.opts.Progress)
	}
	if kc := p.Site.EventsClient(); kc != nil {
		u.events = kube.NewNodeEvents(kc, u.runID, func(msg string) { u.log("", msg) })
		ss = append(ss, u.events)
	}
	ss = append(ss, u.opts.Watchers...)
	if u.attachDiscord() {
		ss = append(ss, u.discord)
	}
	if pg := p.Config.Metrics.Pushgateway; pg != "" {
		u.metrics = metrics.New(pg, metrics.Run{Cluster: p.Config.Cluster.Name, ID: u.runID, Strategy: string(p.Plan.Strategy),
			From: p.Plan.From.String(), To: p.Plan.To.String(), Started: u.now(), ETA: p.Plan.ETA}, func(msg string) { u.log("", msg) })
		ss = append(ss, u.metrics)
	}
	return ss
}

// sinks fans events out to several sinks.
type sinks []rollout.Sink

func (ss sinks) Event(e rollout.Event) {
	for _, s := range ss {
		s.Event(e)
	}
}

// attachDiscord sets u.discord when the webhook is configured and set.
func (u *Upgrade) attachDiscord() bool {
	env := u.planned.env
	name := u.planned.Config.Notifications.Discord.WebhookEnv
	url := env.getenv(name)
	if name == "" || url == "" {
		return false
	}
	if !strings.HasPrefix(url, "https://") && !strings.HasPrefix(url, "http://") {
		env.warn("%s is not an http(s) URL; Discord notifications are off", name)
		return false
	}
	u.discord = &notify.Discord{URL: url, Mask: env.mask}
	return true
}

// closeEvents records the Node events still queued (at most 10 s).
func (u *Upgrade) closeEvents() {
	if u.events == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u.events.Close(ctx)
	u.events = nil
}

// finish flushes the events and notifications, lets the site finish,
// keeps the measured durations and reports.
func (u *Upgrade) finish(rep *rollout.Report) *Output {
	u.closeEvents()
	for _, line := range u.planned.Site.Finished(u.planned.env) {
		fmt.Fprintln(u.progress, line)
	}
	if u.discord != nil {
		u.deliveries = u.discord.Close(30 * time.Second)
	}
	if u.metrics != nil {
		u.metrics.Close(10 * time.Second)
	}
	u.keepDurations(rep)
	return u.report(rep)
}

// keepDurations adds what the upgraded nodes (and the templates) took to
// the history plans take their ETA from.
func (u *Upgrade) keepDurations(rep *rollout.Report) {
	d := u.planned.durations()
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
		u.planned.env.warn("keep the measured durations: %v", err)
	}
}
