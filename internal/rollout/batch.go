package rollout

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/version"
)

// nodeRun is one node's way through its batch.
type nodeRun struct {
	n      plan.Node
	nr     *NodeReport
	from   Step // the first step to run (later for a resumed node)
	start  time.Time
	before Identity
	target version.Pair
	// cause, when set, is the failure a rollback answers.
	cause error
	// end is how the node ended once ended is set: nil (upgraded or
	// skipped), *HaltError, *RollbackFailedError or *InterruptedError.
	end   error
	ended bool
	// quiet nodes (finished before a resume) send no node-done event.
	quiet bool
	// soak, when set, is the node's soak going on in the background: it
	// finishes the node. endedAt is when that soak ended.
	soak    *soak
	endedAt time.Time
	// claims are the volumes that left the node after its drain
	// (namespace/name): the gate wants their pods running again.
	claims []string
}

func (r *nodeRun) runs(s Step) bool { return stepIndex(s) >= stepIndex(r.from) }

// live says the node is still on its way: not ended, nothing to roll back.
func (r *nodeRun) live() bool { return !r.ended && r.cause == nil }

func liveOf(rs []*nodeRun) []*nodeRun {
	var out []*nodeRun
	for _, r := range rs {
		if r.live() {
			out = append(out, r)
		}
	}
	return out
}

// stop ends the node's way with an outcome and an error (nil: fine).
func (e *Engine) stop(r *nodeRun, o Outcome, reason string, err error) {
	e.setOutcome(r.nr, o, reason, nil)
	r.end, r.ended = err, true
}

// each runs fn for every node at once, on the engine's clock.
func (e *Engine) each(rs []*nodeRun, fn func(r *nodeRun)) {
	fns := make([]func(), len(rs))
	for i, r := range rs {
		fns[i] = func() { fn(r) }
	}
	clock.Parallel(e.Clock, fns...)
}

// batch takes the nodes of one batch through their steps: each node is
// vacated (preflight, etcd guard, cordon, drain) on its own; the change
// is one Terraform destroy and one apply for the whole batch (cattle) or
// one Talos upgrade per node (pets); each node then settles (wait Ready,
// uncordon, health gate, soak) on its own. A node that fails is rolled back
// alone, after the others finished; the run halts after the batch.
func (e *Engine) batch(ctx context.Context, p plan.Plan, b plan.Batch) error {
	runs := make([]*nodeRun, 0, len(b.Nodes))
	for _, n := range b.Nodes {
		runs = append(runs, e.begin(ctx, p, n))
	}
	if !e.roomFor(ctx, liveOf(runs)) {
		return worst(runs)
	}
	e.each(liveOf(runs), func(r *nodeRun) { e.vacate(ctx, p, r) })
	e.change(ctx, p, liveOf(runs))
	e.each(liveOf(runs), func(r *nodeRun) { e.settle(ctx, p, r) })
	for _, r := range runs {
		if r.cause != nil && !r.ended {
			e.rollback(ctx, p, r)
		}
	}
	for _, r := range runs {
		if r.soak == nil || r.ended {
			e.done(ctx, p, r)
		}
	}
	return worst(runs)
}

// begin sets a node out: from the start, or for a resumed run from where
// the cluster shows it stands.
func (e *Engine) begin(ctx context.Context, p plan.Plan, n plan.Node) *nodeRun {
	r := &nodeRun{n: n, nr: e.nodeReport(n.Name), from: StepPreflight, start: e.Clock.Now(), target: nodeTarget(p, n)}
	rs := e.resumed(n.Name)
	switch {
	case rs == nil:
	case rs.Halted:
		r.quiet = true
		e.stop(r, OutcomeFailed, "halted in an earlier attempt: "+rs.Reason,
			&HaltError{Node: n.Name, Reason: "halted in an earlier attempt (" + rs.Reason + "); pass --retry-node " + n.Name + " to try it again"})
	default:
		r.from = e.reconcile(ctx, p, r, rs)
		if r.from == StepDone {
			r.quiet = true
			e.stop(r, OutcomeUpgraded, "upgraded before the resume", nil)
		} else if r.from != StepPreflight {
			e.emit(Event{Kind: EventLog, Node: n.Name, Message: "resuming at " + string(r.from)})
		}
	}
	return r
}

// errAtTarget: the node already runs the target; it is skipped.
var errAtTarget = errors.New("already at the target")

// VersionDriftError is a node that, when its turn came, did not run what
// the plan expected. It is not touched.
type VersionDriftError struct {
	Node      string
	Want, Got version.Pair
	Source    string
}

func (e *VersionDriftError) Error() string {
	return fmt.Sprintf("node %s runs %s (%s), but the plan expected %s; it was not touched", e.Node, e.Got, e.Source, e.Want)
}

// checkVersions reads what the node runs right before its first change.
func (e *Engine) checkVersions(ctx context.Context, p plan.Plan, r *nodeRun) error {
	if e.Versions == nil {
		return nil
	}
	obs, err := e.Versions.NodeVersions(ctx, r.n, p.Strategy == version.Pets)
	if err != nil {
		return err
	}
	if plan.AtTarget(obs.Versions, r.target) {
		return errAtTarget
	}
	want := r.n.From
	if obs.Versions.Talos.Compare(want.Talos) != 0 || !want.Kubernetes.IsZero() && obs.Versions.Kubernetes.Compare(want.Kubernetes) != 0 {
		return &VersionDriftError{Node: r.n.Name, Want: want, Got: obs.Versions, Source: obs.Source}
	}
	return nil
}

// vacate takes a node through preflight, etcd guard, cordon and drain:
// afterwards it runs nothing that the change could disturb.
func (e *Engine) vacate(ctx context.Context, p plan.Plan, r *nodeRun) {
	n := r.n
	if r.runs(StepPreflight) {
		err := e.step(ctx, n.Name, StepPreflight, "", func() (err error) {
			if r.before, err = e.Cluster.Identity(ctx, n.Name); err != nil {
				return err
			}
			if !r.before.Ready {
				return fmt.Errorf("node %s is not Ready", n.Name)
			}
			if err := e.checkVersions(ctx, p, r); err != nil {
				return err
			}
			e.readIdentityExtras(ctx, r)
			return nil
		})
		switch {
		case errors.Is(err, errAtTarget):
			e.stop(r, OutcomeSkipped, "already at "+r.target.String()+" when its turn came", nil)
			return
		case err != nil && ctx.Err() != nil:
			e.stoppedUntouched(ctx, r, StepPreflight)
			return
		case err != nil:
			e.stop(r, OutcomeFailed, "preflight: "+err.Error(), e.refusal(n.Name, "preflight failed: "+err.Error(), err))
			return
		}
	}
	if r.runs(StepCordon) && (!e.waitHolders(ctx, r) || !e.beforeNode(ctx, p, r)) {
		return
	}
	if n.IsControlPlane() && e.Guard != nil && r.runs(StepEtcdGuard) {
		var snap Snapshot
		err := e.step(ctx, n.Name, StepEtcdGuard, "", func() (err error) {
			snap, err = e.Guard.BeforeNode(ctx, n)
			return err
		})
		e.mu.Lock()
		r.nr.EtcdSnapshot, r.nr.EtcdSnapshotURL = snap.Path, snap.URL
		e.mu.Unlock()
		if err != nil && ctx.Err() != nil {
			e.stoppedUntouched(ctx, r, StepEtcdGuard)
			return
		}
		if err != nil {
			e.stop(r, OutcomeFailed, "etcd guard: "+err.Error(), e.refusal(n.Name, "etcd guard failed before the node was touched: "+err.Error(), err))
			return
		}
	}
	e.mu.Lock()
	e.changed = true
	e.mu.Unlock()
	e.setOutcome(r.nr, OutcomeFailed, "", nil) // touched from here on
	actx := context.WithoutCancel(ctx)         // atomic steps finish even when the run is stopped
	if r.runs(StepCordon) {
		e.silence(ctx, n.Name)
		if err := e.step(ctx, n.Name, StepCordon, "", func() error { return e.Cluster.Cordon(actx, n.Name) }); err != nil {
			e.uncordon(actx, n.Name)
			e.stop(r, OutcomeFailed, "cordon: "+err.Error(), &HaltError{Node: n.Name, Reason: "cordon failed: " + err.Error(), Err: err})
			return
		}
		if ctx.Err() != nil {
			e.interrupt(ctx, r, StepCordon, true)
			return
		}
	}
	if !r.runs(StepDrain) {
		return
	}
	if err := e.step(ctx, n.Name, StepDrain, "", func() error { return e.drain(ctx, n.Name) }); err != nil {
		if ctx.Err() != nil {
			e.interrupt(ctx, r, StepDrain, true)
			return
		}
		// Nothing was changed on the node: put it back into service.
		e.uncordon(actx, n.Name)
		e.stop(r, OutcomeFailed, "drain: "+err.Error(), &HaltError{Node: n.Name, Reason: "drain failed, node left uncordoned on its old version: " + err.Error(), Err: err})
		return
	}
	if !e.waitsForVolumes() || !r.runs(StepVolumes) {
		return
	}
	if err := e.step(ctx, n.Name, StepVolumes, "", func() (err error) {
		r.claims, err = e.volumesDetached(ctx, n.Name)
		return err
	}); err != nil {
		if ctx.Err() != nil {
			e.interrupt(ctx, r, StepVolumes, true)
			return
		}
		e.uncordon(actx, n.Name)
		e.stop(r, OutcomeFailed, "volumes: "+err.Error(), &HaltError{Node: n.Name, Reason: "its volumes did not detach, node left uncordoned on its old version: " + err.Error(), Err: err})
	}
}

// waitsForVolumes says a drained node's volumes are waited for.
func (e *Engine) waitsForVolumes() bool { return e.Volumes != nil && e.Policy.VolumeDetachTimeout > 0 }

// volumesDetached waits, after a drain, until the node's volumes left it:
// a VolumeAttachment left behind keeps a moved pod from attaching its
// volume for minutes once the VM is gone.
func (e *Engine) volumesDetached(ctx context.Context, node string) ([]string, error) {
	return e.Volumes.WaitVolumesDetached(ctx, node, e.Policy.VolumeDetachTimeout, func(msg string) {
		e.emit(Event{Kind: EventLog, Node: node, Step: StepVolumes, Message: msg})
		if nr := e.nodeReport(node); nr != nil {
			e.mu.Lock()
			nr.Notes = append(nr.Notes, msg)
			e.mu.Unlock()
		}
	})
}

// readIdentityExtras adds to the node's identity what its Talos API says:
// its network links and what it booted (schematic, extensions). What
// cannot be read is left out of the identity, and said.
func (e *Engine) readIdentityExtras(ctx context.Context, r *nodeRun) {
	n := r.n
	if e.Network != nil {
		if links, err := e.Network.Links(ctx, n); err != nil {
			e.emit(Event{Kind: EventLog, Node: n.Name, Step: StepPreflight, Message: "its network links could not be read (" + err.Error() + "): they are left out of its identity"})
		} else {
			r.before.Links = links
		}
	}
	if e.Images != nil {
		img, err := e.Images.NodeImage(ctx, n)
		if err != nil {
			e.emit(Event{Kind: EventLog, Node: n.Name, Step: StepPreflight, Message: "what it booted could not be read (" + err.Error() + "): its schematic is left out of its identity"})
			return
		}
		r.before.Schematic, r.before.Extensions = img.Schematic, img.Extensions
		if n.Schematic != "" && n.Schematic != img.Schematic {
			// A change of schematic the configuration asked for: the node
			// must boot the new one; its extensions are the new one's.
			r.before.Schematic, r.before.Extensions = n.Schematic, nil
		}
		e.mu.Lock()
		r.nr.Image, r.nr.TargetImage = &img, n.Image
		e.mu.Unlock()
	}
}

// roomFor checks, before the batch's nodes are touched, that the pods
// their drains would evict fit on the nodes that remain. A batch without
// room is not started: its nodes stay untouched and the run stops with a
// block (exit 4). A check that cannot be made does not hold the run: the
// drain and its timeout still protect the workloads.
func (e *Engine) roomFor(ctx context.Context, runs []*nodeRun) bool {
	var names []string
	for _, r := range runs {
		if r.runs(StepDrain) {
			names = append(names, r.n.Name)
		}
	}
	if e.Room == nil || len(names) == 0 {
		return true
	}
	err := e.Room.CheckRoom(ctx, names)
	var noRoom interface{ NoRoom() bool }
	switch {
	case err == nil || ctx.Err() != nil:
		return true // a stop is handled by the steps
	case !errors.As(err, &noRoom) || !noRoom.NoRoom():
		e.emit(Event{Kind: EventLog, Step: StepPreflight, Message: "the room check could not be made (" + err.Error() + "): the drains go on, their timeout protects the workloads"})
		return true
	}
	e.mu.Lock()
	changed := e.changed
	e.mu.Unlock()
	for _, r := range runs {
		e.stop(r, OutcomeUntouched, "no room to move its pods", &BlockedError{Reason: "batch " + strings.Join(names, ", ") + " not started: " + err.Error(), AfterChanges: changed})
	}
	return false
}

// waitHolders waits, before the node is touched, until no pod holds it
// (drover.dev/do-not-disrupt, rollout.blockingPods), up to the
// BlockingTimeout. A node still held then is left untouched and the run
// stops with a block (exit 4): resume it once the pods finished. It says
// whether the node may go on.
func (e *Engine) waitHolders(ctx context.Context, r *nodeRun) bool {
	if e.Holders == nil || e.Policy.BlockingTimeout <= 0 {
		return true
	}
	node := r.n.Name
	holders, err := e.Holders.HoldingPods(ctx, node)
	if err != nil || len(holders) == 0 {
		return true // what cannot be read does not hold the run; the drain still honours budgets
	}
	e.emit(Event{Kind: EventLog, Node: node, Step: StepPreflight, Message: fmt.Sprintf(
		"held by %s (do-not-disrupt): waiting up to %s for them to finish", strings.Join(holders, ", "), formatDuration(e.Policy.BlockingTimeout))})
	err = clock.Poll(ctx, e.Clock, "the pods holding "+node+" to finish", min(30*time.Second, e.Policy.BlockingTimeout), e.Policy.BlockingTimeout,
		func(ctx context.Context) (bool, string, error) {
			h, err := e.Holders.HoldingPods(ctx, node)
			if err != nil {
				return false, err.Error(), nil
			}
			holders = h
			return len(h) == 0, strings.Join(h, ", ") + " still running", nil
		})
	switch {
	case err == nil:
		e.emit(Event{Kind: EventLog, Node: node, Step: StepPreflight, Message: "the pods that held it finished"})
		return true
	case ctx.Err() != nil:
		e.stoppedUntouched(ctx, r, StepPreflight)
		return false
	}
	reason := fmt.Sprintf("held by %s (do-not-disrupt) for more than rollout.blockingTimeout (%s); the node was not touched: resume the run (drover upgrade --resume) once they finished",
		strings.Join(holders, ", "), formatDuration(e.Policy.BlockingTimeout))
	e.mu.Lock()
	changed := e.changed
	e.mu.Unlock()
	e.stop(r, OutcomeUntouched, reason, &BlockedError{Reason: "node " + node + ": " + reason, AfterChanges: changed})
	return false
}

// beforeNode runs the beforeNode hook before the node is touched; a hook
// that fails leaves the node untouched and blocks the run (exit 4). It says
// whether the node may go on.
func (e *Engine) beforeNode(ctx context.Context, p plan.Plan, r *nodeRun) bool {
	err := e.hook(ctx, p, HookBeforeNode, r.n.Name, nil)
	switch {
	case err == nil:
		return true
	case ctx.Err() != nil:
		e.stoppedUntouched(ctx, r, StepPreflight)
		return false
	}
	e.mu.Lock()
	changed := e.changed
	e.mu.Unlock()
	e.stop(r, OutcomeUntouched, err.Error()+"; the node was not touched", &BlockedError{Reason: "node " + r.n.Name + " was not touched", Err: err, AfterChanges: changed})
	return false
}

// refusal is the error of a node refused before it was touched: a halt,
// or when nothing in the run changed yet, a block (exit 4).
func (e *Engine) refusal(node, reason string, err error) error {
	e.mu.Lock()
	changed := e.changed
	e.mu.Unlock()
	if !changed {
		return &BlockedError{Reason: "node " + node + ": " + reason, Err: err}
	}
	return &HaltError{Node: node, Reason: reason, Err: err}
}

// drain drains a node, up to DrainAttempts times of DrainTimeout each. Each
// eviction a budget refuses is told once per pod and attempt, to the sink
// and the node's report.
func (e *Engine) drain(ctx context.Context, node string) error {
	attempts := max(1, e.Policy.DrainAttempts)
	var err error
	for a := 1; a <= attempts; a++ {
		progress := func(msg string) {
			if attempts > 1 {
				msg = fmt.Sprintf("drain attempt %d/%d: %s", a, attempts, msg)
			}
			e.emit(Event{Kind: EventLog, Node: node, Step: StepDrain, Message: msg})
			if nr := e.nodeReport(node); nr != nil {
				e.mu.Lock()
				nr.Notes = append(nr.Notes, msg)
				e.mu.Unlock()
			}
		}
		if err = e.Cluster.Drain(ctx, node, e.Policy.DrainTimeout, progress); err == nil || ctx.Err() != nil {
			return err
		}
		if a < attempts {
			e.emit(Event{Kind: EventLog, Node: node, Step: StepDrain, Message: fmt.Sprintf("drain attempt %d/%d failed: %v; trying again", a, attempts, err)})
			// A timed-out drain uncordons its node: cordon it again, or
			// the next attempt evicts pods that keep landing on it.
			if cerr := e.Cluster.Cordon(ctx, node); cerr != nil {
				return fmt.Errorf("drain attempt %d/%d failed (%w), and cordoning again for the next failed: %w", a, attempts, err, cerr)
			}
		}
	}
	if attempts > 1 {
		return fmt.Errorf("%d drain attempts failed, the last: %w", attempts, err)
	}
	return err
}

// change replaces (cattle) or upgrades (pets) the batch's nodes.
func (e *Engine) change(ctx context.Context, p plan.Plan, rs []*nodeRun) {
	if len(rs) == 0 {
		return
	}
	if p.Strategy == version.Cattle {
		e.replace(ctx, rs)
		return
	}
	actx := context.WithoutCancel(ctx)
	e.each(rs, func(r *nodeRun) {
		if !r.runs(StepUpgrade) {
			return
		}
		if err := e.step(ctx, r.n.Name, StepUpgrade, r.target.String(), func() error { return e.Upgrader.Upgrade(actx, r.n, r.target) }); err != nil {
			r.cause = err
		}
	})
}

// replace is the cattle change of a batch: the control-plane node's etcd
// member leaves, then one destroy and one create for every node.
func (e *Engine) replace(ctx context.Context, rs []*nodeRun) {
	actx := context.WithoutCancel(ctx)
	for _, r := range rs {
		if r.n.IsControlPlane() && e.Guard != nil && r.runs(StepEtcdLeave) {
			if err := e.step(ctx, r.n.Name, StepEtcdLeave, "", func() error { return e.Guard.BeforeDestroy(actx, r.n) }); err != nil {
				r.cause = err
			}
		}
	}
	if ctx.Err() != nil {
		for _, r := range liveOf(rs) {
			e.interrupt(ctx, r, StepEtcdLeave, true)
		}
		return
	}
	var destroy []*nodeRun
	for _, r := range liveOf(rs) {
		if r.runs(StepDestroy) {
			destroy = append(destroy, r)
		}
	}
	e.together(ctx, destroy, StepDestroy, func(r *nodeRun) string { return "" }, func(nodes []plan.Node) error {
		if err := e.Replacer.Destroy(actx, nodes); err != nil {
			return err
		}
		errs := NodeErrors{}
		for _, n := range nodes {
			if err := e.Cluster.DeleteNode(actx, n.Name); err != nil {
				errs[n.Name] = err
			}
		}
		if len(errs) > 0 {
			return errs
		}
		return nil
	})
	if ctx.Err() != nil {
		// The destroy was interrupted too (Terraform stops on the signal):
		// whether each VM is gone is the state's to say.
		for _, r := range liveOf(rs) {
			e.interrupt(ctx, r, StepDestroy, e.vmExists(actx, r.n, false))
		}
		return
	}
	var create []*nodeRun
	for _, r := range liveOf(rs) {
		if !r.runs(StepCreate) {
			continue
		}
		if !r.runs(StepDestroy) {
			// Resumed after its destroy: a Node object left behind would
			// be taken for the new one.
			if err := e.Cluster.DeleteNode(actx, r.n.Name); err != nil {
				r.cause = err
				continue
			}
		}
		create = append(create, r)
	}
	if len(create) == 0 {
		return
	}
	target := create[0].target
	e.together(ctx, create, StepCreate, func(r *nodeRun) string { return r.target.String() }, func(nodes []plan.Node) error {
		return e.Replacer.Create(actx, nodes, target)
	})
	if ctx.Err() != nil {
		// An interrupted create is not a failed one: no rollback, the
		// resume finishes it.
		for _, r := range create {
			if !r.ended {
				r.cause = nil
				e.interrupt(ctx, r, StepCreate, e.vmExists(actx, r.n, true))
			}
		}
	}
}

// vmExists asks the replacer whether the node's VM exists; assume when it
// cannot tell.
func (e *Engine) vmExists(ctx context.Context, n plan.Node, assume bool) bool {
	if vc, ok := e.Replacer.(VMChecker); ok {
		if exists, err := vc.VMExists(ctx, n); err == nil {
			return exists
		}
	}
	return assume
}

// together runs one operation for several nodes (one Terraform run), each
// node's step journaled as its own. A NodeErrors fails only the nodes it
// names; any other error fails them all.
func (e *Engine) together(ctx context.Context, rs []*nodeRun, s Step, detail func(*nodeRun) string, act func([]plan.Node) error) {
	if len(rs) == 0 {
		return
	}
	nodes := make([]plan.Node, len(rs))
	for i, r := range rs {
		nodes[i] = r.n
		if err := e.record(ctx, r.n.Name, s, StatusStarted, detail(r)); err != nil {
			r.cause = err
		}
		e.emit(Event{Kind: EventStep, Node: r.n.Name, Step: s, Status: StatusStarted, Message: detail(r)})
	}
	started := e.Clock.Now()
	err := act(nodes)
	var ne NodeErrors
	for _, r := range rs {
		nerr := err
		if errors.As(err, &ne) {
			nerr = ne[r.n.Name]
		}
		if jerr := e.ended(ctx, r.n.Name, s, detail(r), started, nerr); jerr != nil && r.cause == nil {
			r.cause = jerr
		}
	}
}

// settle takes a changed node through wait Ready, etcd rejoin, uncordon,
// the health gate and the soak.
func (e *Engine) settle(ctx context.Context, p plan.Plan, r *nodeRun) {
	n := r.n
	actx := context.WithoutCancel(ctx)
	want := ReadyWant{Talos: r.target.Talos, Kubelet: r.target.Kubernetes}
	if p.Strategy == version.Cattle {
		want.NotUID = r.before.UID
	}
	if err := e.step(ctx, n.Name, StepWaitReady, r.target.String(), func() error {
		_, err := e.Cluster.WaitReady(ctx, n.Name, want, e.Policy.ReadyTimeout)
		return err
	}); err != nil {
		if ctx.Err() != nil {
			e.interrupt(ctx, r, StepWaitReady, true)
			return
		}
		r.cause = err
		return
	}
	if n.IsControlPlane() && e.Guard != nil {
		if err := e.step(ctx, n.Name, StepEtcdJoin, "", func() error { return e.Guard.AfterNode(ctx, n) }); err != nil {
			if ctx.Err() != nil {
				e.interrupt(ctx, r, StepEtcdJoin, true)
				return
			}
			r.cause = err
			return
		}
	}
	if err := e.step(ctx, n.Name, StepUncordon, "", func() error { return e.Cluster.Uncordon(actx, n.Name) }); err != nil {
		r.cause = err
		return
	}
	// One memory for the gate and the soak: restarts between them count.
	in := GateInput{Node: n, Want: r.target, Before: beforeIf(r.before), Memory: NewMemory(), Claims: r.claims}
	var res HealthResult
	if err := e.step(ctx, n.Name, StepHealth, "", func() (err error) {
		res, err = e.gate(ctx, in)
		return err
	}); err != nil {
		if ctx.Err() != nil {
			e.interrupt(ctx, r, StepHealth, true)
			return
		}
		e.setHealth(r.nr, res)
		r.cause = err
		return
	}
	e.setHealth(r.nr, res)
	if err := e.hook(ctx, p, HookAfterNode, n.Name, nil); err != nil {
		if ctx.Err() != nil {
			e.interrupt(ctx, r, StepHealth, true)
			return
		}
		// The hook is part of the node's gate: its failure rolls it back.
		r.cause = err
		return
	}
	e.unsilence(ctx, n.Name)
	e.mu.Lock()
	r.nr.ChangedSeconds = e.Clock.Now().Sub(r.start).Seconds()
	e.mu.Unlock()
	soak := e.Policy.WorkerSoak
	if n.IsControlPlane() {
		soak = e.Policy.ControlPlaneSoak
	}
	if soak <= 0 {
		return
	}
	if !n.IsControlPlane() || lastControlPlane(p, n) {
		// Watching is not waiting: a worker soaks while the run goes on,
		// and so does the last control-plane node when the workers after
		// it keep their Kubernetes version (a rollback of it could not
		// leave a kubelet newer than its API server).
		e.startSoak(ctx, r, in, soak)
		return
	}
	// The next control-plane node waits for this one's soak (etcd quorum).
	if err := e.step(ctx, n.Name, StepSoak, soak.String(), func() (err error) {
		res, err = e.soak(ctx, in, soak)
		return err
	}); err != nil {
		if ctx.Err() != nil {
			e.interrupt(ctx, r, StepSoak, true)
			return
		}
		e.setHealth(r.nr, res)
		r.cause = err
	}
}

// lastControlPlane says whether n is the plan's last control-plane node
// and the change leaves Kubernetes as it is: its soak need not hold the
// workers back.
func lastControlPlane(p plan.Plan, n plan.Node) bool {
	if !n.IsControlPlane() || p.From.Kubernetes != p.To.Kubernetes {
		return false
	}
	seen := false
	for _, b := range p.Batches {
		for _, m := range b.Nodes {
			switch {
			case m.Name == n.Name:
				seen = true
			case seen && m.IsControlPlane():
				return false
			}
		}
	}
	return seen
}

// done records a node that came through and tells the sink how it ended.
func (e *Engine) done(ctx context.Context, p plan.Plan, r *nodeRun) {
	if !r.ended {
		if err := e.record(ctx, r.n.Name, StepDone, StatusDone, p.To.String()); err != nil {
			e.stop(r, OutcomeFailed, err.Error(), &HaltError{Node: r.n.Name, Reason: err.Error(), Err: err})
		} else {
			e.stop(r, OutcomeUpgraded, "", nil)
		}
	}
	if r.quiet {
		return
	}
	e.mu.Lock()
	end := e.Clock.Now()
	if !r.endedAt.IsZero() && r.nr.Outcome == OutcomeUpgraded {
		end = r.endedAt // its soak ended before the run settled it
	}
	r.nr.Duration = end.Sub(r.start)
	r.nr.DurationSeconds = r.nr.Duration.Seconds()
	if target := NodeTarget(string(p.Strategy)); target > 0 {
		r.nr.TargetSeconds = target.Seconds()
		changed := time.Duration(r.nr.ChangedSeconds * float64(time.Second))
		if r.nr.Outcome == OutcomeUpgraded && changed > target {
			r.nr.MissedTarget = true
			e.report.MissedTargets = append(e.report.MissedTargets, fmt.Sprintf("%s took %s to its gate, over the %s target of %s", r.n.Name, formatDuration(changed), p.Strategy, formatDuration(target)))
		}
	}
	snapshot := *r.nr
	e.mu.Unlock()
	e.emit(Event{Kind: EventNodeDone, Node: r.n.Name, NodeReport: &snapshot,
		Message: fmt.Sprintf("%s %s in %s", r.n.Name, snapshot.Outcome, formatDuration(snapshot.Duration))})
}

// interrupt leaves the node safe after a stop: uncordoned if its VM still
// exists, and recorded in the journal.
func (e *Engine) interrupt(ctx context.Context, r *nodeRun, s Step, vmExists bool) {
	actx := context.WithoutCancel(ctx)
	if vmExists {
		e.uncordon(actx, r.n.Name)
	}
	detail := "after " + string(s) + "; VM exists"
	if !vmExists {
		detail = "after " + string(s) + "; VM destroyed, not yet created"
	}
	ie := Stopped(ctx)
	ie.Node, ie.Step, ie.VMExists = r.n.Name, s, vmExists
	if ie.Cause != nil {
		detail += "; " + ie.Cause.Error()
	}
	_ = e.record(actx, r.n.Name, s, StatusInterrupted, detail)
	e.stop(r, OutcomeInterrupted, "interrupted "+detail, ie)
}

// stoppedUntouched ends a node whose preflight or etcd guard the stop cut
// short: nothing on it changed, so nothing is undone (not even an
// uncordon: a cordon the operator set stays), and a resume starts it again
// at its preflight.
func (e *Engine) stoppedUntouched(ctx context.Context, r *nodeRun, s Step) {
	ie := Stopped(ctx)
	ie.Node, ie.Step, ie.VMExists = r.n.Name, s, true
	detail := "during " + string(s) + ", before any change to the node"
	if ie.Cause != nil {
		detail += "; " + ie.Cause.Error()
	}
	_ = e.record(context.WithoutCancel(ctx), r.n.Name, s, StatusInterrupted, detail)
	e.stop(r, OutcomeUntouched, "interrupted "+detail, ie)
}

func (e *Engine) uncordon(ctx context.Context, node string) {
	if err := e.step(ctx, node, StepUncordon, "", func() error { return e.Cluster.Uncordon(ctx, node) }); err != nil {
		e.emit(Event{Kind: EventLog, Node: node, Message: "could not uncordon: " + err.Error()})
	}
}

// worst is the batch's error: a failed rollback over a stop over a halt.
func worst(rs []*nodeRun) error {
	rank := func(err error) int {
		var rf *RollbackFailedError
		var ie *InterruptedError
		switch {
		case err == nil:
			return 0
		case errors.As(err, &rf):
			return 3
		case errors.As(err, &ie):
			return 2
		}
		return 1
	}
	var out error
	for _, r := range rs {
		if rank(r.end) > rank(out) {
			out = r.end
		}
	}
	return out
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
