package rollout

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/version"
)

// Policy holds the engine's timeouts and counts.
type Policy struct {
	DrainTimeout time.Duration
	// DrainAttempts is how many drains of DrainTimeout each a node gets
	// before the run halts (default 1).
	DrainAttempts  int
	ReadyTimeout   time.Duration
	HealthTimeout  time.Duration
	HealthAttempts int
	HealthInterval time.Duration
	// HealthPasses is how many passing gate runs in a row a node needs.
	HealthPasses int
	// ControlPlaneSoak is how long the gate must stay green after a
	// control-plane node before the next node; WorkerSoak likewise after a
	// worker.
	ControlPlaneSoak time.Duration
	WorkerSoak       time.Duration
	// MaxSoaking is how many workers may soak in the background at once
	// (0: no limit).
	MaxSoaking int
	// RebuildTemplates: the templates are replaced in place (fixed VM ids),
	// so a rollback first re-applies them at the old version.
	RebuildTemplates bool
	// VolumeDetachTimeout bounds the wait, after a drain, for the node's
	// volumes to detach (0: no wait).
	VolumeDetachTimeout time.Duration
	// BlockingTimeout bounds the wait, before a node is touched, for the
	// pods that hold it to finish.
	BlockingTimeout time.Duration
}

// RoomChecker says, before a batch is cordoned, whether the pods its drain
// would evict fit on the nodes that remain.
type RoomChecker interface {
	CheckRoom(ctx context.Context, nodes []string) error
}

// HoldingPodReader names the pods that hold a node (a running transcode,
// a backup): the node is not touched while they run.
type HoldingPodReader interface {
	HoldingPods(ctx context.Context, node string) ([]string, error)
}

// VolumeWaiter waits, after a drain, until no volume is attached to the
// node any more (no VolumeAttachment names it), so that a destroyed or
// rebooted VM leaves no volume behind that its moved pod cannot attach.
// It returns the claims (namespace/name) of the volumes it waited for.
type VolumeWaiter interface {
	WaitVolumesDetached(ctx context.Context, node string, timeout time.Duration, progress func(msg string)) ([]string, error)
}

// Engine runs one upgrade. Every collaborator is injected; Replacer is
// needed for cattle plans and Upgrader for pets plans.
type Engine struct {
	Cluster  Cluster
	Replacer Replacer
	Upgrader Upgrader
	Health   HealthGate
	Journal  Journal
	Clock    clock.Clock
	Sink     Sink
	Policy   Policy
	RunID    string
	// Versions, when set, reads what each node runs right before its first
	// change: a node that no longer runs what the plan says is not touched.
	Versions VersionReader
	// Network, when set, reads each node's network links before its
	// change, so the gate can tell a link or address it lost.
	Network LinkReader
	// Room, when set, checks before each batch that its pods have room
	// to move: a batch whose pods would find no node is not started.
	Room RoomChecker
	// Holders, when set, names the pods that hold a node: the run waits
	// for them to finish before it touches the node.
	Holders HoldingPodReader
	// Volumes, when set, waits for a drained node's volumes to detach
	// before its VM goes (cattle) or reboots (pets).
	Volumes VolumeWaiter
	// Images, when set, reads what each node booted before its change
	// (schematic, extensions), so the gate can tell one it lost.
	Images ImageReader
	// Preflights run after the node checks and before the first change.
	Preflights []Preflight
	// Guard, when set, protects etcd around control-plane nodes.
	Guard ControlPlaneGuard
	// Kubernetes upgrades Kubernetes after the nodes of a pets run that
	// changes it.
	Kubernetes KubernetesUpgrader
	// PreflightHealth runs the health gate over the whole cluster before any
	// change; an unhealthy cluster blocks the run.
	PreflightHealth bool
	// Window, when set, says whether the maintenance window is open; the
	// run pauses between batches when it closes. WindowName describes it.
	Window     func(time.Time) bool
	WindowName string
	// Header describes the run in its journal.
	Header RunHeader
	// Resume, when set, continues the run its journal describes: finished
	// nodes are skipped, halted ones stop the run, the others start again
	// where the cluster shows they stand. RunID must be the journal's.
	Resume *ResumeState
	// Skipped names the preflights the operator switched off; the report
	// says so.
	Skipped []string
	// Peers, when set, evicts the other runner pods on drover's node at a
	// hand-off.
	Peers RunnerPeers
	// Hooks, when set, runs the operator's hooks (hooks.*) as Jobs.
	Hooks HookRunner
	// Silences, when set, silences each node's alerts while it changes
	// (health.alertmanager.silences).
	Silences Silencer

	mu      sync.Mutex
	started time.Time
	report  *Report
	// changed: some node of this run was touched (cordoned or further).
	changed bool
	// baseline is what was already unwell before the first change.
	baseline Baseline
	// soaks are the workers soaking in the background, oldest first.
	soaks []*soak
}

// Run executes the plan. It returns the report and, when the run did not
// succeed, a typed error: *HaltError, *RollbackFailedError, *BlockedError,
// *InterruptedError or *PausedError.
func (e *Engine) Run(ctx context.Context, p plan.Plan) (*Report, error) {
	if err := e.check(p); err != nil {
		return nil, err
	}
	e.started = e.Clock.Now()
	e.report = NewReport(e.RunID, p)
	e.report.Started = e.started
	e.report.SkippedPreflights = e.Skipped
	e.emit(Event{Kind: EventRunStarted, Message: fmt.Sprintf("%s upgrade %s -> %s: %d nodes in %d batches, ETA %s",
		p.Strategy, p.From, p.To, p.NodeCount(), len(p.Batches), p.ETA)})

	err := e.run(ctx, p)
	e.unsilenceAll(ctx)
	e.afterRun(ctx, p, err)
	return e.finish(ctx, err), err
}

// NewReport is a run's report before anything ran: every planned node
// untouched, every skipped node with its reason.
func NewReport(runID string, p plan.Plan) *Report {
	r := &Report{RunID: runID, Strategy: string(p.Strategy), From: p.From.String(), To: p.To.String(), Nodes: []NodeReport{}}
	for i, b := range p.Batches {
		for _, n := range b.Nodes {
			r.Nodes = append(r.Nodes, NodeReport{
				Name: n.Name, Role: string(n.Role), Host: n.ProxmoxHost, Batch: i + 1,
				Outcome: OutcomeUntouched, From: n.From.Talos.String(), To: p.To.Talos.String(),
				PlannedSeconds: p.NodeETA[n.Name].Seconds(),
			})
		}
	}
	for _, s := range p.Skipped {
		r.Nodes = append(r.Nodes, NodeReport{
			Name: s.Node.Name, Role: string(s.Node.Role), Host: s.Node.ProxmoxHost,
			Outcome: OutcomeSkipped, From: s.Node.From.Talos.String(), To: p.To.Talos.String(), Reason: s.Reason,
		})
	}
	return r
}

func (e *Engine) check(p plan.Plan) error {
	switch {
	case e.Cluster == nil || e.Health == nil || e.Journal == nil || e.Clock == nil:
		return errors.New("rollout: engine needs a cluster, a health gate, a journal and a clock")
	case p.Strategy == version.Cattle && e.Replacer == nil:
		return errors.New("rollout: a cattle plan needs a node replacer")
	case p.Strategy == version.Pets && e.Upgrader == nil:
		return errors.New("rollout: a pets plan needs an in-place upgrader")
	case p.KubernetesPhase && e.Kubernetes == nil:
		return errors.New("rollout: a pets plan that changes Kubernetes needs a Kubernetes upgrader")
	}
	return nil
}

// Stopped is the error for a run stopped before or between changes: a
// signal, or the cause the context was cancelled with (the run lock lost).
func Stopped(ctx context.Context) *InterruptedError {
	ie := &InterruptedError{}
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
		ie.Cause = c
	}
	return ie
}

// StoppedBeforeStart is Stopped for a stop that came while planning.
func StoppedBeforeStart(ctx context.Context) *InterruptedError {
	ie := Stopped(ctx)
	ie.BeforeStart = true
	return ie
}

func (e *Engine) run(ctx context.Context, p plan.Plan) error {
	if p.Empty() {
		return nil
	}
	h := e.Header
	if h == (RunHeader{}) {
		h = RunHeader{Strategy: string(p.Strategy), From: p.From.String(), To: p.To.String()}
	}
	detail := p.From.String() + " -> " + p.To.String()
	if e.Resume != nil {
		detail = "resumed"
		p.InFlight = e.Resume.InFlight()
	}
	if err := e.Journal.Record(context.WithoutCancel(ctx), Entry{Time: e.Clock.Now(), RunID: e.RunID, Step: StepRun, Status: StatusStarted, Detail: detail, Header: &h}); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if err := e.preflight(ctx, p); err != nil {
		return err
	}
	if err := e.hook(ctx, p, HookBeforeRun, "", nil); err != nil {
		if ctx.Err() != nil {
			_ = e.record(ctx, "", StepRun, StatusInterrupted, "during the beforeRun hook")
			return Stopped(ctx)
		}
		return &BlockedError{Reason: "the beforeRun hook failed; nothing was changed", Err: err}
	}
	if p.Strategy == version.Cattle {
		// Idempotent: templates that exist at the target are a no-op.
		started := e.Clock.Now()
		err := e.step(ctx, "", StepTemplates, p.To.String(), func() error {
			return e.Replacer.EnsureTemplates(context.WithoutCancel(ctx), p.To)
		})
		took := e.Clock.Now().Sub(started)
		e.mu.Lock()
		e.report.TemplatesSeconds = took.Seconds()
		if err == nil && took > TemplatesTarget {
			e.report.MissedTargets = append(e.report.MissedTargets, fmt.Sprintf("the templates took %s, over the target of %s", formatDuration(took), formatDuration(TemplatesTarget)))
		}
		e.mu.Unlock()
		if err != nil {
			if ctx.Err() != nil {
				// Interrupted with the run (Terraform stops on the signal).
				_ = e.record(ctx, "", StepRun, StatusInterrupted, "during the templates")
				return Stopped(ctx)
			}
			return &HaltError{Phase: StepTemplates, Reason: "creating the new templates failed: " + err.Error(), Err: err}
		}
	}
	if err := e.batches(ctx, p); err != nil {
		return err
	}
	// The run is done when the last soak is: wait for every one.
	if err := e.reapSoaks(ctx, p, 0); err != nil {
		return err
	}
	if ctx.Err() != nil {
		_ = e.record(ctx, "", StepRun, StatusInterrupted, "after the last batch")
		return Stopped(ctx)
	}
	if p.KubernetesPhase {
		if err := e.kubernetes(ctx, p); err != nil {
			return err
		}
	}
	return e.lastLook(ctx, p)
}

// batches runs the plan's batches in order, with the workers' soaks going
// on in the background; a soak that failed halts the run before the next
// batch (the batch under way finishes its nodes up to their gates first).
func (e *Engine) batches(ctx context.Context, p plan.Plan) error {
	if p.PauseFirst {
		// The canary was done before a crash took the run; its pause is owed.
		_ = e.record(ctx, "", StepRun, StatusInterrupted, CanaryPauseDetail+": "+strings.Join(p.Canary, ", "))
		return &CanaryPausedError{Nodes: p.Canary}
	}
	for i, b := range p.Batches {
		if err := e.reapSoaks(ctx, p, e.soakRoom(b)); err != nil {
			return err
		}
		if ctx.Err() != nil {
			err := e.reapSoaks(ctx, p, 0)
			_ = e.record(ctx, "", StepRun, StatusInterrupted, "between batches")
			if err != nil {
				return err
			}
			return Stopped(ctx)
		}
		if i > 0 && e.Window != nil && !e.Window(e.Clock.Now()) {
			if err := e.reapSoaks(ctx, p, 0); err != nil {
				return err
			}
			_ = e.record(ctx, "", StepRun, StatusInterrupted, "maintenance window closed")
			return &PausedError{Window: e.WindowName}
		}
		if p.Self != "" && len(b.Nodes) == 1 && b.Nodes[0].Name == p.Self {
			if err := e.handOverSoaks(ctx, p); err != nil {
				return err
			}
			if err := e.handOff(ctx, p.Self); err != nil {
				return err
			}
		}
		if err := e.batch(ctx, p, b); err != nil {
			return e.haltSoaks(ctx, p, err)
		}
		if p.PauseAfter > 0 && i+1 == p.PauseAfter && i+1 < len(p.Batches) {
			// The canary is done when its soaks are.
			if err := e.reapSoaks(ctx, p, 0); err != nil {
				return err
			}
			_ = e.record(ctx, "", StepRun, StatusInterrupted, CanaryPauseDetail+": "+strings.Join(p.Canary, ", "))
			return &CanaryPausedError{Nodes: p.Canary}
		}
	}
	return nil
}

// soakRoom is how many soaks may go on while the batch starts: a
// control-plane node waits for every one (etcd and the API servers change
// under the whole cluster), a batch of workers leaves room for its own
// within MaxSoaking.
func (e *Engine) soakRoom(b plan.Batch) int {
	if len(b.Nodes) > 0 && b.Nodes[0].IsControlPlane() {
		return 0
	}
	if e.Policy.MaxSoaking <= 0 {
		return -1
	}
	return max(0, e.Policy.MaxSoaking-len(b.Nodes))
}

// handOff hands the run to a runner on another node before drover's own
// node: it cordons the node (new runner pods land elsewhere), journals the
// hand-off and ends the run; the deferred release of the run lock lets the
// continuation take it at once. A node the journal already shows done
// needs no hand-off.
func (e *Engine) handOff(ctx context.Context, node string) error {
	if rs := e.resumed(node); rs != nil && (rs.Done || rs.Halted) {
		return nil
	}
	err := e.step(ctx, node, StepHandOff, "drover runs here: cordoned so that the next runner pod starts on another node", func() error {
		return e.Cluster.Cordon(context.WithoutCancel(ctx), node)
	})
	if err != nil {
		e.uncordon(context.WithoutCancel(ctx), node)
		return &HaltError{Node: node, Reason: "hand-off: cordon failed: " + err.Error(), Err: err}
	}
	if e.Peers != nil {
		evicted, err := e.Peers.EvictPeers(context.WithoutCancel(ctx), node)
		if len(evicted) > 0 {
			e.emit(Event{Kind: EventLog, Node: node, Step: StepHandOff, Message: "evicted the idle runner pods here, so that the continuation starts elsewhere: " + strings.Join(evicted, ", ")})
		}
		if err != nil {
			e.emit(Event{Kind: EventLog, Node: node, Step: StepHandOff, Message: "could not evict every idle runner pod here (" + err.Error() + "): if the continuation starts on this node, it hands off again"})
		}
	}
	e.emit(Event{Kind: EventLog, Node: node, Step: StepHandOff, Message: "handed off: a runner on another node continues the run (drover upgrade --resume)"})
	return &HandedOffError{Node: node}
}

// preflight checks, before any change, that every planned node is there
// and Ready, that the cluster is healthy and that each preflight passes. A
// resumed run leaves the nodes it caught mid-step out of these checks.
func (e *Engine) preflight(ctx context.Context, p plan.Plan) error {
	blocked := func(b *BlockedError) error {
		if ctx.Err() != nil {
			// A stop during the preflights is a stop, not a refusal.
			_ = e.record(ctx, "", StepRun, StatusInterrupted, "during the preflights")
			return Stopped(ctx)
		}
		return b
	}
	for _, b := range p.Batches {
		for _, n := range b.Nodes {
			if slices.Contains(p.InFlight, n.Name) || e.resumed(n.Name) != nil && e.resumed(n.Name).Done {
				continue
			}
			id, err := e.Cluster.Identity(ctx, n.Name)
			if err != nil {
				return blocked(&BlockedError{Reason: "preflight: node " + n.Name, Err: err})
			}
			if !id.Ready {
				return blocked(&BlockedError{Reason: fmt.Sprintf("preflight: node %s is not Ready; fix it before upgrading", n.Name)})
			}
		}
	}
	// The baseline: what is already unwell before the first change. Only
	// what is critical blocks the run; the rest is known, and a later gate
	// fails only on what is new or worse.
	in := GateInput{Exclude: p.InFlight, Preflight: true}
	var res HealthResult
	if e.PreflightHealth {
		e.emit(Event{Kind: EventLog, Step: StepPreflight, Message: "cluster health"})
		var err error
		if res, err = e.gate(ctx, in); err != nil {
			if ctx.Err() != nil {
				// Stopped mid-gate: no verdict, passing or failing.
				return Stopped(ctx)
			}
			return blocked(&BlockedError{Reason: "preflight health: the cluster is already unhealthy (" + res.Summary("") + ")", Err: err})
		}
	} else {
		res = e.Health.Check(ctx, in)
	}
	e.baseline = BaselineOf(res)
	if known := e.baseline.Texts(); len(known) > 0 {
		e.mu.Lock()
		e.report.KnownBeforeRun = known
		e.mu.Unlock()
		for _, k := range clipLines(known, 10) {
			e.emit(Event{Kind: EventLog, Step: StepPreflight, Message: "known before the run: " + k})
		}
	}
	for _, pf := range e.Preflights {
		e.emit(Event{Kind: EventLog, Step: StepPreflight, Message: pf.Name()})
		if err := pf.Check(ctx, p); err != nil {
			return blocked(&BlockedError{Reason: pf.Name(), Err: err})
		}
	}
	return nil
}

// resumed is a node's state from the journal being resumed, or nil.
func (e *Engine) resumed(node string) *NodeState {
	if e.Resume == nil {
		return nil
	}
	return e.Resume.Nodes[node]
}

// kubernetes upgrades Kubernetes after every node runs the new Talos, then
// waits for every node to report the new kubelet and the gate to pass.
// It cannot be rolled back node by node: a failure needs a person.
func (e *Engine) kubernetes(ctx context.Context, p plan.Plan) error {
	var nodes []plan.Node
	for _, b := range p.Batches {
		nodes = append(nodes, b.Nodes...)
	}
	for _, s := range p.Skipped {
		nodes = append(nodes, s.Node)
	}
	err := e.step(ctx, "", StepKubernetes, p.From.Kubernetes.String()+" -> "+p.To.Kubernetes.String(), func() error {
		if err := e.Kubernetes.UpgradeKubernetes(ctx, p.From.Kubernetes, p.To.Kubernetes); err != nil {
			return err
		}
		want := ReadyWant{Talos: p.To.Talos, Kubelet: p.To.Kubernetes}
		for _, n := range nodes {
			if _, err := e.Cluster.WaitReady(ctx, n.Name, want, e.Policy.ReadyTimeout); err != nil {
				return err
			}
		}
		for _, n := range nodes {
			if _, err := e.gate(ctx, GateInput{Node: n, Want: p.To}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return &RollbackFailedError{Phase: StepKubernetes, Cause: "the Kubernetes upgrade to " + p.To.Kubernetes.String() + " failed", Err: err}
	}
	return nil
}

// clipLines keeps at most n lines, saying how many more there were.
func clipLines(lines []string, n int) []string {
	if len(lines) <= n {
		return lines
	}
	return append(append([]string(nil), lines[:n-1]...), fmt.Sprintf("... and %d more", len(lines)-n+1))
}

// gate runs the health gate with the engine's policy, judged against the
// run's baseline.
func (e *Engine) gate(ctx context.Context, in GateInput) (HealthResult, error) {
	if !in.Preflight {
		in.Baseline = e.baseline
	}
	g := GateFrom(e.Policy, e.Health, e.Clock)
	g.Log = func(msg string) { e.emit(Event{Kind: EventLog, Node: in.Node.Name, Step: StepHealth, Message: msg}) }
	res, err := g.Run(ctx, in)
	e.emit(Event{Kind: EventLog, Node: in.Node.Name, Step: StepHealth, Message: res.Summary(in.Node.Name)})
	return res, err
}

// soak re-runs the health checks every HealthInterval across d; one failure
// fails the soak.
func (e *Engine) soak(ctx context.Context, in GateInput, d time.Duration) (HealthResult, error) {
	end := e.Clock.Now().Add(d)
	var res HealthResult
	for {
		left := end.Sub(e.Clock.Now())
		if left <= 0 {
			return res, nil
		}
		if err := e.Clock.Sleep(ctx, min(left, e.Policy.HealthInterval)); err != nil {
			return res, err
		}
		in.Baseline = e.baseline
		res = e.Health.Check(ctx, in)
		for i := range res.Checks {
			res.Checks[i].Attempts = 1
		}
		if !res.Passed() {
			return res, &HealthFailedError{Node: in.Node.Name, Result: res}
		}
	}
}

// step journals a transition, acts, and journals how it ended.
func (e *Engine) step(ctx context.Context, node string, s Step, detail string, act func() error) error {
	if err := e.record(ctx, node, s, StatusStarted, detail); err != nil {
		return err
	}
	started := e.Clock.Now()
	e.emit(Event{Kind: EventStep, Node: node, Step: s, Status: StatusStarted, Message: detail})
	err := act()
	return e.ended(ctx, node, s, detail, started, err)
}

// ended journals and reports how a step that started at started ended.
func (e *Engine) ended(ctx context.Context, node string, s Step, detail string, started time.Time, err error) error {
	status, msg := StatusDone, detail
	if err != nil {
		status, msg = StatusFailed, err.Error()
	}
	if nr := e.nodeReport(node); nr != nil {
		e.mu.Lock()
		nr.Steps = append(nr.Steps, StepRecord{Step: s, Started: started, Finished: e.Clock.Now(), Status: status, Detail: msg})
		e.mu.Unlock()
	}
	if jerr := e.record(ctx, node, s, status, msg); jerr != nil && err == nil {
		err = jerr
	}
	e.emit(Event{Kind: EventStep, Node: node, Step: s, Status: status, Message: msg})
	return err
}

func (e *Engine) record(ctx context.Context, node string, s Step, st Status, detail string) error {
	err := e.Journal.Record(context.WithoutCancel(ctx), Entry{Time: e.Clock.Now(), RunID: e.RunID, Node: node, Step: s, Status: st, Detail: detail})
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

func (e *Engine) finish(ctx context.Context, err error) *Report {
	e.mu.Lock()
	r := e.report
	r.Finished = e.Clock.Now()
	r.Duration = r.Finished.Sub(r.Started)
	r.DurationSeconds = r.Duration.Seconds()
	r.Result = ResultOf(err)
	if err != nil {
		r.Error = err.Error()
	}
	e.mu.Unlock()
	_ = e.Journal.Record(context.WithoutCancel(ctx), Entry{Time: r.Finished, RunID: e.RunID, Step: StepRun, Status: statusOf(err), Detail: string(r.Result)})
	e.emit(Event{Kind: EventRunFinished, Report: r, Message: string(r.Result)})
	return r
}

// ResultOf is how a run that returned err ended.
func ResultOf(err error) Result {
	var rf *RollbackFailedError
	var bl *BlockedError
	var ie *InterruptedError
	var pe *PausedError
	var cp *CanaryPausedError
	var ho *HandedOffError
	switch {
	case err == nil:
		return ResultSucceeded
	case errors.As(err, &ho):
		return ResultHandedOff
	case errors.As(err, &ie):
		return ResultInterrupted
	case errors.As(err, &pe):
		return ResultPaused
	case errors.As(err, &cp):
		return ResultCanary
	case errors.As(err, &rf):
		return ResultRollbackFailed
	case errors.As(err, &bl):
		return ResultBlocked
	}
	return ResultHalted
}

func statusOf(err error) Status {
	var ie *InterruptedError
	var pe *PausedError
	var cp *CanaryPausedError
	var ho *HandedOffError
	switch {
	case err == nil:
		return StatusDone
	case errors.As(err, &ie), errors.As(err, &pe), errors.As(err, &cp), errors.As(err, &ho):
		return StatusInterrupted
	}
	return StatusFailed
}

func (e *Engine) nodeReport(name string) *NodeReport {
	if name == "" || e.report == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.report.Node(name)
}

func (e *Engine) setOutcome(nr *NodeReport, o Outcome, reason string, checks []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	nr.Outcome, nr.Reason, nr.FailedChecks = o, reason, checks
}

func (e *Engine) setHealth(nr *NodeReport, res HealthResult) {
	e.mu.Lock()
	defer e.mu.Unlock()
	nr.Health = &res
}

func (e *Engine) snapshot(nr *NodeReport) NodeReport {
	e.mu.Lock()
	defer e.mu.Unlock()
	return *nr
}

func (e *Engine) emit(ev Event) {
	if e.Sink == nil {
		return
	}
	ev.Time = e.Clock.Now()
	if e.report != nil {
		ev.Strategy = e.report.Strategy
	}
	if !e.started.IsZero() {
		ev.Elapsed = ev.Time.Sub(e.started)
	}
	e.Sink.Event(ev)
}

func formatDuration(d time.Duration) string {
	return d.Round(time.Second).String()
}
