package rollout

import (
	"context"
	"fmt"

	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/version"
)

// rollback brings a failed node back to its old version, checks its health
// and halts the run. Every guard of a forward change holds here too: the
// node is cordoned and drained first (pods that landed on it since its
// uncordon leave through the eviction API, budgets honoured), and a
// control-plane node gets its etcd snapshot and leadership hand-off before
// it is destroyed or rebooted.
func (e *Engine) rollback(ctx context.Context, p plan.Plan, r *nodeRun) {
	actx := context.WithoutCancel(ctx) // a rollback runs to its end
	n := r.n
	reason := r.cause.Error()
	checks := failedChecks(r.cause)
	e.setOutcome(r.nr, OutcomeFailed, reason, checks)
	snapshot := e.snapshot(r.nr)
	e.emit(Event{Kind: EventRollback, Node: n.Name, NodeReport: &snapshot, Message: fmt.Sprintf("rolling %s back to %s: %s", n.Name, n.From, reason)})

	// A node that soaked with its silence expired pages again while it
	// goes back: silence it (a silence it still has is reused).
	e.silence(actx, n.Name)
	defer e.unsilence(actx, n.Name)
	old := n.From
	err := e.step(actx, n.Name, StepRollback, old.String(), func() error { return e.revert(actx, p, n, old) })
	if err != nil {
		e.setOutcome(r.nr, OutcomeFailed, fmt.Sprintf("%s; rollback failed: %v", reason, err), checks)
		r.end, r.ended = &RollbackFailedError{Node: n.Name, Cause: reason, Err: err}, true
		return
	}
	e.setOutcome(r.nr, OutcomeRolledBack, reason, checks)
	r.end, r.ended = &HaltError{Node: n.Name, Reason: "rolled back to " + old.String() + ": " + reason, Err: r.cause}, true
}

// revert puts the node back at old, guarded as a forward change is.
func (e *Engine) revert(ctx context.Context, p plan.Plan, n plan.Node, old version.Pair) error {
	id, err := e.Cluster.Identity(ctx, n.Name)
	exists := err == nil
	if exists {
		if err := e.Cluster.Cordon(ctx, n.Name); err != nil {
			return fmt.Errorf("cordon before the rollback: %w", err)
		}
		// A node that never came back has no running pods to move.
		if id.Ready {
			e.emit(Event{Kind: EventLog, Node: n.Name, Step: StepRollback, Message: "draining before the rollback"})
			if err := e.drain(ctx, n.Name); err != nil {
				return fmt.Errorf("drain before the rollback (the node stays cordoned on the new version): %w", err)
			}
			if e.waitsForVolumes() {
				if _, err := e.volumesDetached(ctx, n.Name); err != nil {
					return fmt.Errorf("before the rollback (the node stays cordoned on the new version): %w", err)
				}
			}
		}
	}
	cp := n.IsControlPlane() && e.Guard != nil
	if cp {
		if _, err := e.Guard.BeforeNode(ctx, n); err != nil {
			return fmt.Errorf("etcd guard before the rollback: %w", err)
		}
	}
	want := ReadyWant{Talos: old.Talos, Kubelet: old.Kubernetes}
	if p.Strategy == version.Cattle {
		if cp {
			if err := e.Guard.BeforeDestroy(ctx, n); err != nil {
				return err
			}
		}
		if err := e.Replacer.Destroy(ctx, []plan.Node{n}); err != nil {
			return err
		}
		if err := e.Cluster.DeleteNode(ctx, n.Name); err != nil {
			return err
		}
		if e.Policy.RebuildTemplates {
			// The templates sit at fixed VM ids: the old ones were replaced.
			e.emit(Event{Kind: EventLog, Node: n.Name, Step: StepRollback, Message: "rebuilding the " + p.From.Talos.String() + " templates (terraform.templates: rebuild)"})
			if err := e.Replacer.EnsureTemplates(ctx, p.From); err != nil {
				return fmt.Errorf("rebuild the templates at %s: %w", p.From, err)
			}
		}
		if err := e.Replacer.Create(ctx, []plan.Node{n}, old); err != nil {
			return err
		}
		if exists {
			want.NotUID = id.UID
		}
	} else if err := e.Upgrader.Upgrade(ctx, n, old); err != nil {
		return err
	}
	if _, err := e.Cluster.WaitReady(ctx, n.Name, want, e.Policy.ReadyTimeout); err != nil {
		return err
	}
	if cp {
		if err := e.Guard.AfterNode(ctx, n); err != nil {
			return err
		}
	}
	if err := e.Cluster.Uncordon(ctx, n.Name); err != nil {
		return err
	}
	_, err = e.gate(ctx, GateInput{Node: n, Want: old})
	return err
}
