package rollout

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Step is a stage of a node's state machine.
type Step string

// The steps, in the order a node goes through them.
const (
	StepRun       Step = "run"
	StepTemplates Step = "templates"
	StepPreflight Step = "preflight"
	StepEtcdGuard Step = "etcd-guard"
	StepEtcdLeave Step = "etcd-leave"
	StepEtcdJoin  Step = "etcd-rejoin"
	StepCordon    Step = "cordon"
	StepDrain     Step = "drain"
	// StepVolumes waits, after the drain, for the node's volumes to detach.
	StepVolumes    Step = "volumes"
	StepDestroy    Step = "destroy"
	StepCreate     Step = "create"
	StepUpgrade    Step = "upgrade"
	StepWaitReady  Step = "wait-ready"
	StepUncordon   Step = "uncordon"
	StepHealth     Step = "health"
	StepSoak       Step = "soak"
	StepRollback   Step = "rollback"
	StepKubernetes Step = "kubernetes"
	StepDone       Step = "done"
	// StepHandOff is drover handing the run to a runner on another node
	// before its own node's turn: the node is cordoned (so the next runner
	// pod lands elsewhere) and the run ends, to be resumed there.
	StepHandOff Step = "handoff"
	// StepTerraform records, run-wide, each Terraform command that takes
	// the state lock (the Detail is the Terraform adapter's LockRecord), so
	// a resume can tell a lock its own dead run left from anyone else's.
	StepTerraform Step = "terraform"
	// StepHook is one of the operator's hooks (the Detail names its
	// point): run-wide for beforeRun and afterRun, a node's for
	// beforeNode and afterNode.
	StepHook Step = "hook"
)

// Status is where a step stands.
type Status string

// The statuses of a step.
const (
	StatusStarted Status = "started"
	StatusDone    Status = "done"
	StatusFailed  Status = "failed"
	// StatusInterrupted: the run was stopped (SIGINT/SIGTERM) after the step.
	StatusInterrupted Status = "interrupted"
)

// Outcome is what happened to one node.
type Outcome string

// The outcomes a node can have.
const (
	OutcomeUpgraded   Outcome = "upgraded"
	OutcomeRolledBack Outcome = "rolled-back"
	OutcomeSkipped    Outcome = "skipped"
	OutcomeUntouched  Outcome = "untouched"
	OutcomeFailed     Outcome = "failed"
	// OutcomeInterrupted: the run was stopped while the node was in progress.
	OutcomeInterrupted Outcome = "interrupted"
)

// Result is how a run ended.
type Result string

// The results of a run.
const (
	ResultSucceeded      Result = "succeeded"
	ResultHalted         Result = "halted"
	ResultRollbackFailed Result = "rollback-failed"
	ResultBlocked        Result = "blocked"
	ResultInterrupted    Result = "interrupted"
	ResultPaused         Result = "paused"
	// ResultCanary: paused after the canary, as asked.
	ResultCanary Result = "canary-paused"
	// ResultHandedOff: drover's own node is next; a runner on another node
	// continues the run with --resume.
	ResultHandedOff Result = "handed-off"
)

// EventKind says what an Event is about.
type EventKind string

// The kinds of events.
const (
	EventRunStarted  EventKind = "run-started"
	EventStep        EventKind = "step"
	EventNodeDone    EventKind = "node-done"
	EventRollback    EventKind = "rollback"
	EventRunFinished EventKind = "run-finished"
	EventLog         EventKind = "log"
)

// Event is something the engine did, for progress output and notifications.
type Event struct {
	Kind EventKind
	Time time.Time
	// Elapsed is the time since the run started.
	Elapsed time.Duration
	Node    string
	Step    Step
	Status  Status
	Message string
	// Report is set on EventRunFinished and EventNodeDone.
	Report *Report
	// NodeReport is set on EventNodeDone and EventRollback.
	NodeReport *NodeReport
	// Strategy is the run's (pets, cattle), on every event of a run.
	Strategy string
}

// HaltError means a node (or a run-level phase, such as the templates)
// failed and the run stopped; the node is back on its old version (or was
// never changed). The CLI exits 1.
type HaltError struct {
	Node string
	// Phase is the run-level step that failed, when no node did.
	Phase  Step
	Reason string
	Err    error
}

func (e *HaltError) Error() string {
	if e.Node == "" {
		return fmt.Sprintf("run halted in the %s phase: %s", e.Phase, e.Reason)
	}
	return fmt.Sprintf("run halted at node %s: %s", e.Node, e.Reason)
}

func (e *HaltError) Unwrap() error { return e.Err }

// RollbackFailedError means a node's rollback failed (or a run-level phase
// that cannot be rolled back failed): a person must step in. The CLI exits 3.
type RollbackFailedError struct {
	Node  string
	Phase Step
	// Cause is why the node was rolled back; Err why the rollback failed.
	Cause string
	Err   error
}

func (e *RollbackFailedError) Error() string {
	if e.Node == "" {
		return fmt.Sprintf("the %s phase failed, manual intervention required: %v (%s)", e.Phase, e.Err, e.Cause)
	}
	return fmt.Sprintf("rollback of node %s failed, manual intervention required: %v (rolled back because: %s)", e.Node, e.Err, e.Cause)
}

func (e *RollbackFailedError) Unwrap() error { return e.Err }

// InterruptedError means the run was stopped (a signal, or the run lock
// lost): the current atomic step finished, the node was left safe, the
// journal says where. The CLI exits 130, or 4 when Cause is a lost lock.
type InterruptedError struct {
	Node string
	Step Step
	// VMExists is false when the node's VM was destroyed and not yet created.
	VMExists bool
	// Cause is why the run was stopped, when it was not a signal.
	Cause error
	// BeforeStart: stopped while planning, before anything was changed or
	// journaled; there is nothing to resume.
	BeforeStart bool
}

func (e *InterruptedError) Error() string {
	why := "interrupted"
	if e.Cause != nil {
		why = "stopped (" + e.Cause.Error() + ")"
	}
	if e.BeforeStart {
		return why + " before anything was changed; nothing to resume: run the command again"
	}
	if e.Node == "" {
		return why + " between batches; resume with drover upgrade --resume"
	}
	state := "uncordoned on its current VM"
	if !e.VMExists {
		state = "its VM is destroyed and not yet created; --resume creates it"
	}
	return fmt.Sprintf("%s during %s of node %s: %s; resume with drover upgrade --resume", why, e.Step, e.Node, state)
}

func (e *InterruptedError) Unwrap() error { return e.Cause }

// NodeErrors is a batch operation (one Terraform run for several nodes)
// that failed for some of its nodes only: node name -> error.
type NodeErrors map[string]error

func (e NodeErrors) Error() string {
	var parts []string
	for _, n := range slices.Sorted(maps.Keys(e)) {
		parts = append(parts, n+": "+e[n].Error())
	}
	return strings.Join(parts, "; ")
}

// PausedError means the maintenance window closed between batches: the run
// stopped with every finished node healthy and a journal to resume from.
// The CLI exits 4.
type PausedError struct{ Window string }

func (e *PausedError) Error() string {
	return "the maintenance window (" + e.Window + ") closed: the run paused between batches; resume with drover upgrade --resume in the next window"
}

// CanaryPausedError means the canary nodes are done and healthy and the
// run paused, as asked (--canary), for the operator to look before the
// rest: nothing failed. The journal says paused; --resume goes on. The CLI
// exits 5.
type CanaryPausedError struct{ Nodes []string }

func (e *CanaryPausedError) Error() string {
	return "the canary (" + strings.Join(e.Nodes, ", ") + ") is upgraded and healthy; the run paused for you to look: resume the rest with drover upgrade --resume"
}

// HandedOffError means drover's own node (the node its runner pod runs on)
// was next: drover cordoned it, so that the next runner pod lands on
// another node, and stopped; the journal says handed off and --resume from
// that runner does the rest. Nothing failed. The CLI exits 6.
type HandedOffError struct{ Node string }

func (e *HandedOffError) Error() string {
	return "handed off: drover runs on " + e.Node + ", which is next; it is cordoned so that the next runner starts on another node: continue there with drover upgrade --resume"
}

// BlockedError means the run was refused before any change, or, with
// AfterChanges, stopped before a node it would have changed (the nodes
// done so far stay done; a resume goes on). The CLI exits 4.
type BlockedError struct {
	Reason string
	Err    error
	// AfterChanges: nodes were changed before the block.
	AfterChanges bool
}

func (e *BlockedError) Error() string {
	what := "blocked before any change: "
	if e.AfterChanges {
		what = "blocked (the nodes done so far stay done; resume with drover upgrade --resume once it is solved): "
	}
	if e.Err != nil {
		return fmt.Sprintf("%s%s: %v", what, e.Reason, e.Err)
	}
	return what + e.Reason
}

func (e *BlockedError) Unwrap() error { return e.Err }

// HealthFailedError is a health gate that failed all its attempts, or ran
// out of time before enough passing runs in a row (Streak of Want).
type HealthFailedError struct {
	Node   string
	Result HealthResult
	Streak int
	Want   int
}

func (e *HealthFailedError) Error() string {
	who := "the cluster"
	if e.Node != "" {
		who = "node " + e.Node
	}
	if e.Want > 0 && e.Result.Passed() {
		return fmt.Sprintf("health gate for %s timed out with %d of %d passing runs in a row", who, e.Streak, e.Want)
	}
	return fmt.Sprintf("health gate failed for %s: %s", who, strings.Join(e.Result.Failed(), ", "))
}

// failedChecks returns the names of failed checks if err carries them.
func failedChecks(err error) []string {
	var hf *HealthFailedError
	if errors.As(err, &hf) {
		return hf.Result.Failed()
	}
	return nil
}

// StepRecord is one step of a node, for the audit trail.
type StepRecord struct {
	Step     Step      `json:"step"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Status   Status    `json:"status"`
	Detail   string    `json:"detail,omitempty"`
}

// NodeReport is what happened to one node.
type NodeReport struct {
	Name     string        `json:"name"`
	Role     string        `json:"role"`
	Host     string        `json:"host"`
	Batch    int           `json:"batch"`
	Outcome  Outcome       `json:"outcome"`
	From     string        `json:"from"`
	To       string        `json:"to"`
	Duration time.Duration `json:"-"`
	// DurationSeconds mirrors Duration for JSON.
	DurationSeconds float64       `json:"durationSeconds"`
	Reason          string        `json:"reason,omitempty"`
	FailedChecks    []string      `json:"failedChecks,omitempty"`
	Health          *HealthResult `json:"health,omitempty"`
	// EtcdSnapshot is the snapshot taken before a control-plane node, and
	// EtcdSnapshotURL where it was uploaded (talos.etcdSnapshotUpload).
	EtcdSnapshot    string `json:"etcdSnapshot,omitempty"`
	EtcdSnapshotURL string `json:"etcdSnapshotUrl,omitempty"`
	// Image is what the node ran before (its install image, schematic and
	// extensions); TargetImage the installer image it was upgraded with
	// (pets), from its own image with the target version.
	Image       *Image       `json:"image,omitempty"`
	TargetImage string       `json:"targetImage,omitempty"`
	Steps       []StepRecord `json:"steps,omitempty"`
	// Notes are what happened along the way (evictions a budget refused).
	Notes []string `json:"notes,omitempty"`
	// TargetSeconds is the PRD's target for the node (cattle 6 min, pets
	// 3 min); MissedTarget says an upgraded node took longer.
	TargetSeconds float64 `json:"targetSeconds,omitempty"`
	MissedTarget  bool    `json:"missedTarget,omitempty"`
	// ChangedSeconds is how long the node took until its gate passed (its
	// soak, which watches it while the run goes on, excluded): what the
	// PRD's targets bound. PlannedSeconds is what the plan expected.
	ChangedSeconds float64 `json:"changedSeconds,omitempty"`
	PlannedSeconds float64 `json:"plannedSeconds,omitempty"`
}

// The PRD's duration targets.
const (
	CattleNodeTarget = 6 * time.Minute
	PetsNodeTarget   = 3 * time.Minute
	TemplatesTarget  = 15 * time.Minute
)

// NodeTarget is the PRD's target duration of one node of a strategy.
func NodeTarget(strategy string) time.Duration {
	switch strategy {
	case "cattle":
		return CattleNodeTarget
	case "pets":
		return PetsNodeTarget
	}
	return 0
}

// Report is what a run did.
type Report struct {
	RunID    string    `json:"runId"`
	Result   Result    `json:"result"`
	Strategy string    `json:"strategy"`
	From     string    `json:"from"`
	To       string    `json:"to"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Duration is Finished-Started on the engine's clock (virtual in the lab).
	Duration        time.Duration `json:"-"`
	DurationSeconds float64       `json:"durationSeconds"`
	Nodes           []NodeReport  `json:"nodes"`
	Error           string        `json:"error,omitempty"`
	// SkippedPreflights names the preflights the operator switched off.
	SkippedPreflights []string `json:"skippedPreflights,omitempty"`
	// KnownBeforeRun is what was already unwell before the first change:
	// the baseline the gates judged against.
	KnownBeforeRun []string `json:"knownBeforeRun,omitempty"`
	// TemplatesSeconds is how long the templates took (cattle).
	TemplatesSeconds float64 `json:"templatesSeconds,omitempty"`
	// MissedTargets says which durations went past the PRD's targets.
	MissedTargets []string `json:"missedTargets,omitempty"`
	// Hooks are the operator's hooks that ran, in order.
	Hooks []HookReport `json:"hooks,omitempty"`
}

// Node returns the named node's report.
func (r *Report) Node(name string) *NodeReport {
	for i := range r.Nodes {
		if r.Nodes[i].Name == name {
			return &r.Nodes[i]
		}
	}
	return nil
}
