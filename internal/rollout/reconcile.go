package rollout

import (
	"context"
	"fmt"
	"strings"

	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/version"
)

// Sighting is what the cluster shows of a node a resumed run finds
// unfinished. A nil pointer means drover could not tell.
type Sighting struct {
	// Exists: the Node object is there.
	Exists, Ready, Cordoned bool
	Versions                *version.Pair
	// VM: the node's VM is in the Terraform state (cattle).
	VM *bool
	// Member: the node is an etcd member (control plane).
	Member *bool
}

func (s Sighting) String() string {
	var parts []string
	switch {
	case !s.Exists:
		parts = append(parts, "no Node object")
	default:
		st := "NotReady"
		if s.Ready {
			st = "Ready"
		}
		if s.Cordoned {
			st += ", cordoned"
		}
		if s.Versions != nil {
			st += " at " + s.Versions.String()
		}
		parts = append(parts, "Node "+st)
	}
	if s.VM != nil {
		parts = append(parts, map[bool]string{true: "VM in the state", false: "no VM in the state"}[*s.VM])
	}
	if s.Member != nil {
		parts = append(parts, map[bool]string{true: "etcd member", false: "not an etcd member"}[*s.Member])
	}
	return strings.Join(parts, ", ")
}

// observe looks at a node for a resume.
func (e *Engine) observe(ctx context.Context, p plan.Plan, n plan.Node) Sighting {
	var s Sighting
	if id, err := e.Cluster.Identity(ctx, n.Name); err == nil {
		s.Exists, s.Ready, s.Cordoned = true, id.Ready, id.Unschedulable
		if e.Versions != nil {
			if o, err := e.Versions.NodeVersions(ctx, n, p.Strategy == version.Pets); err == nil {
				v := o.Versions
				s.Versions = &v
			}
		}
	}
	if vc, ok := e.Replacer.(VMChecker); ok && p.Strategy == version.Cattle {
		if ok, err := vc.VMExists(ctx, n); err == nil {
			s.VM = &ok
		}
	}
	if mc, ok := e.Guard.(MemberChecker); ok && n.IsControlPlane() {
		if ok, err := mc.IsMember(ctx, n); err == nil {
			s.Member = &ok
		}
	}
	return s
}

// reconcile decides where a resumed node starts: from what the cluster
// shows, the journal serving only where the cluster cannot tell. Where the
// two disagree it says so and takes the safe path: a node still on its old
// VM or version starts again from its guards (for the control plane, the
// etcd snapshot and leadership hand-off), however far the journal says it got.
func (e *Engine) reconcile(ctx context.Context, p plan.Plan, r *nodeRun, ns *NodeState) Step {
	journal := ns.ResumeAt
	if ns.Done {
		journal = StepDone
	}
	if journal == "" {
		journal = StepPreflight
	}
	seen := e.observe(ctx, p, r.n)
	at := e.resumeAt(p, r, seen, journal)
	if at != journal {
		e.emit(Event{Kind: EventLog, Node: r.n.Name, Message: fmt.Sprintf("the journal says %s; the cluster shows %s: resuming at %s", said(journal), seen, at)})
	}
	return at
}

func said(s Step) string {
	if s == StepDone {
		return "it is done"
	}
	return "resume at " + string(s)
}

// resumeAt is reconcile's decision.
//
//nolint:gocyclo // a decision table, one case per thing the cluster can show; TestResumeAtTrustsTheClusterOverTheJournal has a row for each
func (e *Engine) resumeAt(p plan.Plan, r *nodeRun, seen Sighting, journal Step) Step {
	atTarget := seen.Versions != nil && plan.AtTarget(*seen.Versions, r.target)
	atOld := seen.Versions != nil && !atTarget
	var at Step
	switch {
	case p.Strategy == version.Cattle && seen.VM != nil && !*seen.VM:
		at = StepCreate // the VM is gone: create it
	case seen.Exists && atTarget && journal == StepDone:
		at = StepDone
	case seen.Exists && atTarget:
		at = StepWaitReady // changed: wait Ready, then uncordon and judge it
	case p.Strategy == version.Pets && seen.Exists && atOld && !seen.Ready && stepIndex(journal) >= stepIndex(StepUpgrade) && journal != StepDone:
		at = StepWaitReady // rebooting into the new version, or not: the wait tells, a rollback answers
	case seen.Exists && atOld:
		// Still the old node: start again before its first change.
		at = journal
		if journal == StepDone || stepIndex(journal) > stepIndex(StepCordon) {
			at = StepCordon
		}
	case p.Strategy == version.Cattle && !seen.Exists && seen.VM != nil && *seen.VM && stepIndex(journal) >= stepIndex(StepCreate):
		at = StepWaitReady // created, its kubelet not registered yet
	default:
		at = journal // the cluster cannot tell: trust the journal
	}
	// A control-plane node with a destructive step ahead gets its etcd guard
	// (health, snapshot, leadership hand-off) first, resumed or not.
	if r.n.IsControlPlane() && e.Guard != nil && at != StepDone && stepIndex(at) > stepIndex(StepEtcdGuard) && stepIndex(at) <= stepIndex(StepUpgrade) && at != StepCreate {
		at = StepEtcdGuard
	}
	return at
}
