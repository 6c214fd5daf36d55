package rollout

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/version"
)

// Policy holds the engine's timeouts and counts.
type Policy struct {
	DrainTimeout   time.Duration
	ReadyTimeout   time.Duration
	HealthTimeout  time.Duration
	HealthAttempts int
	HealthInterval time.Duration
	// ControlPlaneSoak is how long the gate must stay green after a
	// control-plane node before the next node.
	ControlPlaneSoak time.Duration
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
	// nodes are skipped, halted ones stop the run, a node caught mid-step
	// starts again at its resume point. RunID must be the journal's.
	Resume *ResumeState

	mu      sync.Mutex
	started time.Time
	report  *Report
}

// Run executes the plan. It returns the report and, when the run did not
// succeed, a typed error: *HaltError, *RollbackFailedError or *BlockedError.
func (e *Engine) Run(ctx context.Context, p plan.Plan) (*Report, error) {
	if err := e.check(p); err != nil {
		return nil, err
	}
	e.started = e.Clock.Now()
	e.report = &Report{
		RunID:    e.RunID,
		Strategy: string(p.Strategy),
		From:     p.From.String(),
		To:       p.To.String(),
		Started:  e.started,
	}
	for i, b := range p.Batches {
		for _, n := range b.Nodes {
			e.report.Nodes = append(e.report.Nodes, NodeReport{
				Name: n.Name, Role: string(n.Role), Host: n.ProxmoxHost, Batch: i + 1,
				Outcome: OutcomeUntouched, From: n.From.Talos.String(), To: p.To.Talos.String(),
			})
		}
	}
	for _, s := range p.Skipped {
		e.report.Nodes = append(e.report.Nodes, NodeReport{
			Name: s.Node.Name, Role: string(s.Node.Role), Host: s.Node.ProxmoxHost,
			Outcome: OutcomeSkipped, From: s.Node.From.Talos.String(), To: p.To.Talos.String(), Reason: s.Reason,
		})
	}
	e.emit(Event{Kind: EventRunStarted, Message: fmt.Sprintf("%s upgrade %s -> %s: %d nodes in %d batches, ETA %s",
		p.Strategy, p.From, p.To, p.NodeCount(), len(p.Batches), p.ETA)})

	err := e.run(ctx, p)
	return e.finish(err), err
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
	}
	if err := e.Journal.Record(context.WithoutCancel(ctx), Entry{Time: e.Clock.Now(), RunID: e.RunID, Step: StepRun, Status: StatusStarted, Detail: detail, Header: &h}); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	inFlight := false
	if e.Resume != nil {
		for _, ns := range e.Resume.Nodes {
			if !ns.Done && !ns.Halted && ns.ResumeAt != "" {
				inFlight = true
			}
		}
	}
	if inFlight {
		// A node is mid-step (destroyed, cordoned, rebooting): the run-level
		// preflights would see it and refuse. Finish it first.
		e.emit(Event{Kind: EventLog, Message: "resuming a node caught mid-step: the run-level preflights are skipped"})
		return e.batches(ctx, p)
	}
	// Every planned node must be there and Ready before anything changes.
	for _, b := range p.Batches {
		for _, n := range b.Nodes {
			if e.resumed(n.Name) != nil {
				continue
			}
			id, err := e.Cluster.Identity(ctx, n.Name)
			if err != nil {
				return &BlockedError{Reason: "preflight: node " + n.Name, Err: err}
			}
			if !id.Ready {
				return &BlockedError{Reason: fmt.Sprintf("preflight: node %s is not Ready; fix it before upgrading", n.Name)}
			}
		}
	}
	if e.PreflightHealth {
		e.emit(Event{Kind: EventLog, Step: StepPreflight, Message: "cluster health"})
		if res, err := e.gate(ctx, GateInput{}); err != nil {
			return &BlockedError{Reason: "preflight health: the cluster is already unhealthy (" + res.Summary("") + ")", Err: err}
		}
	}
	for _, pf := range e.Preflights {
		e.emit(Event{Kind: EventLog, Step: StepPreflight, Message: pf.Name()})
		if err := pf.Check(ctx, p); err != nil {
			return &BlockedError{Reason: pf.Name(), Err: err}
		}
	}
	if p.Strategy == version.Cattle && e.Resume == nil {
		if err := e.step(ctx, "", StepTemplates, p.To.String(), func() error {
			return e.Replacer.PrepareTemplates(ctx, p.To)
		}); err != nil {
			return &HaltError{Node: "(templates)", Reason: "creating the new templates failed: " + err.Error(), Err: err}
		}
	}
	return e.batches(ctx, p)
}

// resumed is a node's state from the journal being resumed, or nil.
func (e *Engine) resumed(node string) *NodeState {
	if e.Resume == nil {
		return nil
	}
	return e.Resume.Nodes[node]
}

// batches runs the batches, then the Kubernetes phase.
func (e *Engine) batches(ctx context.Context, p plan.Plan) error {
	if p.Strategy == version.Cattle && e.Resume != nil {
		// Templates are idempotent: make sure they exist before any create.
		if err := e.step(ctx, "", StepTemplates, p.To.String(), func() error {
			return e.Replacer.PrepareTemplates(context.WithoutCancel(ctx), p.To)
		}); err != nil {
			return &HaltError{Node: "(templates)", Reason: "creating the new templates failed: " + err.Error(), Err: err}
		}
	}
	for i, b := range p.Batches {
		if ctx.Err() != nil {
			_ = e.record(ctx, "", StepRun, StatusInterrupted, "between batches")
			return &InterruptedError{}
		}
		if i > 0 && e.Window != nil && !e.Window(e.Clock.Now()) {
			_ = e.record(ctx, "", StepRun, StatusInterrupted, "maintenance window closed")
			return &PausedError{Window: e.WindowName}
		}
		errs := make([]error, len(b.Nodes))
		fns := make([]func(), len(b.Nodes))
		for i, n := range b.Nodes {
			fns[i] = func() { errs[i] = e.node(ctx, p, n) }
		}
		clock.Parallel(e.Clock, fns...)
		// The worst outcome in the batch decides; the others finished.
		var halt error
		for _, err := range errs {
			var rf *RollbackFailedError
			var ie *InterruptedError
			if errors.As(err, &rf) || errors.As(err, &ie) {
				return err
			}
			if err != nil && halt == nil {
				halt = err
			}
		}
		if halt != nil {
			return halt
		}
	}
	if p.KubernetesPhase {
		return e.kubernetes(ctx, p)
	}
	return nil
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
		return &RollbackFailedError{Node: "(kubernetes)", Cause: "the Kubernetes upgrade to " + p.To.Kubernetes.String() + " failed", Err: err}
	}
	return nil
}

// node takes one node through its state machine.
func (e *Engine) node(ctx context.Context, p plan.Plan, n plan.Node) error {
	nr := e.nodeReport(n.Name)
	from := StepPreflight
	if rs := e.resumed(n.Name); rs != nil {
		switch {
		case rs.Done:
			e.setOutcome(nr, OutcomeUpgraded, "upgraded before the resume", nil)
			return nil
		case rs.Halted:
			e.setOutcome(nr, OutcomeFailed, "halted in an earlier attempt: "+rs.Reason, nil)
			return &HaltError{Node: n.Name, Reason: "halted in an earlier attempt (" + rs.Reason + "); pass --retry-node " + n.Name + " to try it again"}
		case rs.ResumeAt != "":
			from = rs.ResumeAt
			e.emit(Event{Kind: EventLog, Node: n.Name, Message: "resuming at " + string(from)})
		}
	}
	return e.nodeFrom(ctx, p, n, nr, from)
}

// nodeFrom runs the node's state machine from step from on.
func (e *Engine) nodeFrom(ctx context.Context, p plan.Plan, n plan.Node, nr *NodeReport, from Step) error {
	start := e.Clock.Now()
	at := stepIndex(from)
	runs := func(s Step) bool { return stepIndex(s) >= at }
	defer func() {
		e.mu.Lock()
		nr.Duration = e.Clock.Now().Sub(start)
		nr.DurationSeconds = nr.Duration.Seconds()
		snapshot := *nr
		e.mu.Unlock()
		e.emit(Event{Kind: EventNodeDone, Node: n.Name, NodeReport: &snapshot,
			Message: fmt.Sprintf("%s %s in %s", n.Name, snapshot.Outcome, formatDuration(snapshot.Duration))})
	}()

	var before Identity
	if runs(StepPreflight) {
		if err := e.step(ctx, n.Name, StepPreflight, "", func() (err error) {
			before, err = e.Cluster.Identity(ctx, n.Name)
			if err == nil && !before.Ready {
				err = fmt.Errorf("node %s is not Ready", n.Name)
			}
			return err
		}); err != nil {
			e.setOutcome(nr, OutcomeFailed, "preflight: "+err.Error(), nil)
			return &HaltError{Node: n.Name, Reason: "preflight failed: " + err.Error(), Err: err}
		}
	}
	if n.IsControlPlane() && e.Guard != nil && runs(StepEtcdGuard) {
		var snap string
		err := e.step(ctx, n.Name, StepEtcdGuard, "", func() (err error) {
			snap, err = e.Guard.BeforeNode(ctx, n)
			return err
		})
		e.mu.Lock()
		nr.EtcdSnapshot = snap
		e.mu.Unlock()
		if err != nil {
			e.setOutcome(nr, OutcomeFailed, "etcd guard: "+err.Error(), nil)
			return &HaltError{Node: n.Name, Reason: "etcd guard failed before the node was touched: " + err.Error(), Err: err}
		}
	}
	e.setOutcome(nr, OutcomeFailed, "", nil) // touched from here on
	// Atomic steps run to their end even when the run is stopped.
	actx := context.WithoutCancel(ctx)

	if runs(StepCordon) {
		if err := e.step(ctx, n.Name, StepCordon, "", func() error { return e.Cluster.Cordon(actx, n.Name) }); err != nil {
			e.uncordon(ctx, n.Name)
			e.setOutcome(nr, OutcomeFailed, "cordon: "+err.Error(), nil)
			return &HaltError{Node: n.Name, Reason: "cordon failed: " + err.Error(), Err: err}
		}
		if ctx.Err() != nil {
			return e.interrupt(actx, n, nr, StepCordon, true)
		}
		if err := e.step(ctx, n.Name, StepDrain, "", func() error {
			return e.Cluster.Drain(ctx, n.Name, e.Policy.DrainTimeout)
		}); err != nil {
			if ctx.Err() != nil {
				return e.interrupt(actx, n, nr, StepDrain, true)
			}
			// Nothing was changed on the node: put it back into service.
			e.uncordon(ctx, n.Name)
			e.setOutcome(nr, OutcomeFailed, "drain: "+err.Error(), nil)
			return &HaltError{Node: n.Name, Reason: "drain failed, node left uncordoned on its old version: " + err.Error(), Err: err}
		}
	}

	target := nodeTarget(p, n)
	if err := e.change(ctx, p.Strategy, n, target, before.UID, from); err != nil {
		var intr *interruption
		if errors.As(err, &intr) {
			return e.interrupt(actx, n, nr, intr.step, intr.vmExists)
		}
		return e.rollback(actx, p, n, nr, err)
	}
	if err := e.step(ctx, n.Name, StepUncordon, "", func() error { return e.Cluster.Uncordon(actx, n.Name) }); err != nil {
		return e.rollback(actx, p, n, nr, err)
	}
	var res HealthResult
	if err := e.step(ctx, n.Name, StepHealth, "", func() (err error) {
		res, err = e.gate(ctx, GateInput{Node: n, Want: target, Before: beforeIf(before)})
		return err
	}); err != nil {
		if ctx.Err() != nil {
			return e.interrupt(actx, n, nr, StepHealth, true)
		}
		e.setHealth(nr, res)
		return e.rollback(actx, p, n, nr, err)
	}
	e.setHealth(nr, res)
	if n.IsControlPlane() && e.Policy.ControlPlaneSoak > 0 {
		if err := e.step(ctx, n.Name, StepSoak, e.Policy.ControlPlaneSoak.String(), func() (err error) {
			res, err = e.soak(ctx, GateInput{Node: n, Want: target, Before: beforeIf(before)})
			return err
		}); err != nil {
			if ctx.Err() != nil {
				return e.interrupt(actx, n, nr, StepSoak, true)
			}
			e.setHealth(nr, res)
			return e.rollback(actx, p, n, nr, err)
		}
	}
	if err := e.record(ctx, n.Name, StepDone, StatusDone, p.To.String()); err != nil {
		return err
	}
	e.setOutcome(nr, OutcomeUpgraded, "", nil)
	return nil
}

// interruption: the run was stopped inside change, after an atomic step.
type interruption struct {
	step     Step
	vmExists bool
}

func (i *interruption) Error() string { return "interrupted after " + string(i.step) }

// interrupt leaves the node safe after a stop: uncordoned if its VM still
// exists, and recorded in the journal.
func (e *Engine) interrupt(ctx context.Context, n plan.Node, nr *NodeReport, s Step, vmExists bool) error {
	if vmExists {
		e.uncordon(ctx, n.Name)
	}
	detail := "after " + string(s) + "; VM exists"
	if !vmExists {
		detail = "after " + string(s) + "; VM destroyed, not yet created"
	}
	_ = e.record(ctx, n.Name, s, StatusInterrupted, detail)
	e.setOutcome(nr, OutcomeInterrupted, "interrupted "+detail, nil)
	return &InterruptedError{Node: n.Name, Step: s, VMExists: vmExists}
}

// nodeTarget is what the node must run after its own step: the target, or
// for pets the target Talos with the node's kubelet unchanged (the
// Kubernetes phase moves every kubelet afterwards).
func nodeTarget(p plan.Plan, n plan.Node) version.Pair {
	if p.Strategy == version.Pets {
		return version.Pair{Talos: p.To.Talos, Kubernetes: n.From.Kubernetes}
	}
	return p.To
}

// beforeIf is the node's identity before the change, when it was read (a
// node resumed past its preflight has none).
func beforeIf(id Identity) *Identity {
	if id.UID == "" {
		return nil
	}
	return &id
}

// change replaces (cattle) or upgrades (pets) the node to v and waits until
// it is back and Ready.
func (e *Engine) change(ctx context.Context, s version.Strategy, n plan.Node, v version.Pair, oldUID string, from Step) error {
	actx := context.WithoutCancel(ctx) // atomic steps finish even when the run is stopped
	at := stepIndex(from)
	runs := func(st Step) bool { return stepIndex(st) >= at }
	want := ReadyWant{Talos: v.Talos, Kubelet: v.Kubernetes}
	switch s {
	case version.Cattle:
		if n.IsControlPlane() && e.Guard != nil && runs(StepEtcdLeave) {
			if err := e.step(ctx, n.Name, StepEtcdLeave, "", func() error { return e.Guard.BeforeDestroy(actx, n) }); err != nil {
				return err
			}
		}
		if ctx.Err() != nil {
			return &interruption{step: StepEtcdLeave, vmExists: true}
		}
		if runs(StepDestroy) {
			if err := e.step(ctx, n.Name, StepDestroy, "", func() error {
				if err := e.Replacer.Destroy(actx, n); err != nil {
					return err
				}
				return e.Cluster.DeleteNode(actx, n.Name)
			}); err != nil {
				return err
			}
		}
		if ctx.Err() != nil {
			return &interruption{step: StepDestroy, vmExists: false}
		}
		if runs(StepCreate) {
			if err := e.step(ctx, n.Name, StepCreate, v.String(), func() error { return e.Replacer.Create(actx, n, v) }); err != nil {
				return err
			}
		}
		want.NotUID = oldUID
	default:
		if runs(StepUpgrade) {
			if err := e.step(ctx, n.Name, StepUpgrade, v.String(), func() error { return e.Upgrader.Upgrade(actx, n, v) }); err != nil {
				return err
			}
		}
	}
	if err := e.step(ctx, n.Name, StepWaitReady, v.String(), func() error {
		_, err := e.Cluster.WaitReady(ctx, n.Name, want, e.Policy.ReadyTimeout)
		return err
	}); err != nil {
		if ctx.Err() != nil {
			return &interruption{step: StepWaitReady, vmExists: true}
		}
		return err
	}
	if n.IsControlPlane() && e.Guard != nil {
		return e.step(ctx, n.Name, StepEtcdJoin, "", func() error { return e.Guard.AfterNode(ctx, n) })
	}
	return nil
}

// rollback brings a failed node back to its old version, checks its health
// and halts the run.
func (e *Engine) rollback(ctx context.Context, p plan.Plan, n plan.Node, nr *NodeReport, cause error) error {
	reason := cause.Error()
	checks := failedChecks(cause)
	e.setOutcome(nr, OutcomeFailed, reason, checks)
	snapshot := e.snapshot(nr)
	e.emit(Event{Kind: EventRollback, Node: n.Name, NodeReport: &snapshot, Message: fmt.Sprintf("rolling %s back to %s: %s", n.Name, n.From, reason)})

	old := n.From
	err := e.step(ctx, n.Name, StepRollback, old.String(), func() error {
		var uid string
		if id, err := e.Cluster.Identity(ctx, n.Name); err == nil {
			uid = id.UID
		}
		if err := e.change(ctx, p.Strategy, n, old, uid, StepPreflight); err != nil {
			return err
		}
		if err := e.Cluster.Uncordon(ctx, n.Name); err != nil {
			return err
		}
		_, err := e.gate(ctx, GateInput{Node: n, Want: old})
		return err
	})
	if err != nil {
		e.setOutcome(nr, OutcomeFailed, fmt.Sprintf("%s; rollback failed: %v", reason, err), checks)
		return &RollbackFailedError{Node: n.Name, Cause: reason, Err: err}
	}
	e.setOutcome(nr, OutcomeRolledBack, reason, checks)
	return &HaltError{Node: n.Name, Reason: "rolled back to " + old.String() + ": " + reason, Err: cause}
}

// gate runs the health checks until they pass, up to HealthAttempts times,
// HealthInterval apart, within HealthTimeout.
func (e *Engine) gate(ctx context.Context, in GateInput) (HealthResult, error) {
	deadline := e.Clock.Now().Add(e.Policy.HealthTimeout)
	attempts := max(1, e.Policy.HealthAttempts)
	var res HealthResult
	for a := 1; a <= attempts; a++ {
		res = e.Health.Check(ctx, in)
		for i := range res.Checks {
			res.Checks[i].Attempts = a
		}
		if res.Passed() {
			e.emit(Event{Kind: EventLog, Node: in.Node.Name, Step: StepHealth, Message: res.Summary(in.Node.Name)})
			return res, nil
		}
		if a == attempts || !e.Clock.Now().Add(e.Policy.HealthInterval).Before(deadline) {
			break
		}
		e.emit(Event{Kind: EventLog, Node: in.Node.Name, Step: StepHealth,
			Message: fmt.Sprintf("attempt %d/%d failed (%v), retrying in %s", a, attempts, res.Failed(), e.Policy.HealthInterval)})
		if err := e.Clock.Sleep(ctx, e.Policy.HealthInterval); err != nil {
			return res, err
		}
	}
	e.emit(Event{Kind: EventLog, Node: in.Node.Name, Step: StepHealth, Message: res.Summary(in.Node.Name)})
	return res, &HealthFailedError{Node: in.Node.Name, Result: res}
}

// CheckHealth runs the health gate as the engine does between nodes: up to
// HealthAttempts times, HealthInterval apart, within HealthTimeout.
func (e *Engine) CheckHealth(ctx context.Context, in GateInput) (HealthResult, error) {
	return e.gate(ctx, in)
}

// soak re-runs the health checks every HealthInterval across the soak
// window; one failure fails the soak.
func (e *Engine) soak(ctx context.Context, in GateInput) (HealthResult, error) {
	end := e.Clock.Now().Add(e.Policy.ControlPlaneSoak)
	var res HealthResult
	for {
		left := end.Sub(e.Clock.Now())
		if left <= 0 {
			return res, nil
		}
		if err := e.Clock.Sleep(ctx, min(left, e.Policy.HealthInterval)); err != nil {
			return res, err
		}
		res = e.Health.Check(ctx, in)
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

func (e *Engine) uncordon(ctx context.Context, node string) {
	if err := e.step(ctx, node, StepUncordon, "", func() error { return e.Cluster.Uncordon(ctx, node) }); err != nil {
		e.emit(Event{Kind: EventLog, Node: node, Message: "could not uncordon: " + err.Error()})
	}
}

func (e *Engine) finish(err error) *Report {
	e.mu.Lock()
	r := e.report
	r.Finished = e.Clock.Now()
	r.Duration = r.Finished.Sub(r.Started)
	r.DurationSeconds = r.Duration.Seconds()
	var rf *RollbackFailedError
	var bl *BlockedError
	var ie *InterruptedError
	var pe *PausedError
	switch {
	case err == nil:
		r.Result = ResultSucceeded
	case errors.As(err, &ie):
		r.Result = ResultInterrupted
	case errors.As(err, &pe):
		r.Result = ResultPaused
	case errors.As(err, &rf):
		r.Result = ResultRollbackFailed
	case errors.As(err, &bl):
		r.Result = ResultBlocked
	default:
		r.Result = ResultHalted
	}
	if err != nil {
		r.Error = err.Error()
	}
	e.mu.Unlock()
	_ = e.Journal.Record(context.WithoutCancel(context.Background()), Entry{Time: r.Finished, RunID: e.RunID, Step: StepRun, Status: statusOf(err), Detail: string(r.Result)})
	e.emit(Event{Kind: EventRunFinished, Report: r, Message: string(r.Result)})
	return r
}

func statusOf(err error) Status {
	if err != nil {
		return StatusFailed
	}
	return StatusDone
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
	if !e.started.IsZero() {
		ev.Elapsed = ev.Time.Sub(e.started)
	}
	e.Sink.Event(ev)
}

func formatDuration(d time.Duration) string {
	return d.Round(time.Second).String()
}

// PolicyFrom takes the engine's policy from the configured rollout settings.
func PolicyFrom(r config.Rollout) Policy {
	return Policy{
		DrainTimeout: r.DrainTimeout.Duration, ReadyTimeout: r.ReadyTimeout.Duration,
		HealthTimeout: r.HealthTimeout.Duration, HealthAttempts: r.HealthAttempts,
		HealthInterval: r.HealthInterval.Duration, ControlPlaneSoak: r.ControlPlaneSoak.Duration,
	}
}
