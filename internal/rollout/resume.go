package rollout

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// stepOrder is the state machine's order; a resumed node starts at a step
// and skips the ones before it.
var stepOrder = []Step{StepPreflight, StepEtcdGuard, StepCordon, StepDrain, StepVolumes, StepEtcdLeave, StepDestroy, StepCreate, StepUpgrade, StepWaitReady, StepEtcdJoin, StepUncordon, StepHealth, StepSoak, StepDone}

func stepIndex(s Step) int { return slices.Index(stepOrder, s) }

// RunHeader is the first journal entry of a run: what it is about.
type RunHeader struct {
	Cluster  string `json:"cluster"`
	Strategy string `json:"strategy"`
	From     string `json:"from"`
	To       string `json:"to"`
	// Only is the run's --only selection, comma-separated: a resume keeps it.
	Only string `json:"only,omitempty"`
	// Canary names the run's canary workers, comma-separated: a resume
	// keeps them, and pauses after them unless the run already did.
	Canary string `json:"canary,omitempty"`
}

// CanaryPauseDetail starts the journal entry of a canary pause.
const CanaryPauseDetail = "paused after the canary"

// NodeState is where a node stood when the journal ends.
type NodeState struct {
	// Done: upgraded and healthy.
	Done bool
	// Halted: rolled back, failed or stopped by its own failure; it stays
	// so until the operator retries it.
	Halted bool
	Reason string
	// ResumeAt is the step to start from ("" for a node never touched).
	ResumeAt Step
}

// ResumeState is a journal read back for --resume.
type ResumeState struct {
	RunID    string
	Header   RunHeader
	Finished bool
	// CanaryPaused: the run paused after its canary (--canary) already.
	CanaryPaused bool
	Nodes        map[string]*NodeState
	// Terraform are the run's StepTerraform entries, in order.
	Terraform []Entry
	// HooksDone are the hooks that succeeded (HookKey): a resume does not
	// run them again.
	HooksDone map[string]bool
}

// InFlight names the nodes caught mid-step: neither done, nor halted, nor
// untouched.
func (st *ResumeState) InFlight() []string {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(st.Nodes)) {
		if ns := st.Nodes[name]; !ns.Done && !ns.Halted && ns.ResumeAt != "" {
			out = append(out, name)
		}
	}
	return out
}

// JournalError is a journal that cannot be resumed from. The CLI exits 2.
type JournalError struct{ Why string }

func (e *JournalError) Error() string { return "cannot resume: " + e.Why }

// ReadResume rebuilds the run's state from its journal entries.
func ReadResume(entries []Entry) (*ResumeState, error) {
	if len(entries) == 0 {
		return nil, &JournalError{Why: "the journal is empty"}
	}
	first := entries[0]
	if first.Step != StepRun || first.Status != StatusStarted || first.Header == nil {
		return nil, &JournalError{Why: "the journal does not start with a run header; it is not a drover run journal"}
	}
	st := &ResumeState{RunID: first.RunID, Header: *first.Header, Nodes: map[string]*NodeState{}, HooksDone: map[string]bool{}}
	for i, e := range entries {
		if e.RunID != st.RunID {
			return nil, &JournalError{Why: fmt.Sprintf("entry %d belongs to run %s, not %s: the journal mixes runs", i+1, e.RunID, st.RunID)}
		}
		if e.Header != nil && *e.Header != st.Header {
			return nil, &JournalError{Why: fmt.Sprintf("entry %d starts a different run (%+v)", i+1, *e.Header)}
		}
		if e.Step == StepHook {
			// A hook is no step of a node's state machine: a failed one
			// left its node untouched (beforeNode) or failed its gate
			// (afterNode, journaled with the rollback).
			st.HooksDone[HookKey(HookPoint(e.Detail), e.Node)] = e.Status == StatusDone
			continue
		}
		if e.Node == "" {
			if e.Step == StepRun && e.Status == StatusDone {
				st.Finished = true
			}
			if e.Step == StepRun && e.Status == StatusInterrupted && strings.HasPrefix(e.Detail, CanaryPauseDetail) {
				st.CanaryPaused = true
			}
			if e.Step == StepTerraform {
				st.Terraform = append(st.Terraform, e)
			}
			continue
		}
		if stepIndex(e.Step) < 0 && e.Step != StepRollback && e.Step != StepHandOff {
			return nil, &JournalError{Why: fmt.Sprintf("entry %d has an unknown step %q", i+1, e.Step)}
		}
		n := st.Nodes[e.Node]
		if n == nil {
			n = &NodeState{}
			st.Nodes[e.Node] = n
		}
		apply(n, e)
	}
	return st, nil
}

// apply moves a node's state by one journal entry.
func apply(n *NodeState, e Entry) {
	switch {
	case e.Step == StepDone && e.Status == StatusDone:
		*n = NodeState{Done: true}
	case e.Step == StepRollback:
		n.Halted, n.Reason = true, "rolled back ("+string(e.Status)+")"
	case e.Step == StepHandOff:
		// Cordoned for the hand-off, nothing else: it starts again from its
		// preflight (its identity and versions read afresh).
		n.Halted, n.ResumeAt = false, StepPreflight
	case e.Status == StatusInterrupted:
		n.Halted = false
		n.ResumeAt = resumePoint(e.Step, false)
	case e.Status == StatusFailed && (e.Step == StepCordon || e.Step == StepDrain || e.Step == StepVolumes || e.Step == StepPreflight || e.Step == StepEtcdGuard):
		n.Halted, n.Reason = true, string(e.Step)+" failed: "+e.Detail
	case e.Status == StatusStarted:
		n.ResumeAt = resumePoint(e.Step, true)
	case e.Status == StatusDone && !n.Halted:
		n.ResumeAt = next(e.Step)
	}
}

// resumePoint is where the journal says to start again when step was in
// progress (started) or stopped after it. It is a hint: the engine looks at
// the cluster before it decides (reconcile).
func resumePoint(s Step, inProgress bool) Step {
	switch s {
	case StepPreflight:
		return StepPreflight
	case StepEtcdGuard:
		return StepEtcdGuard // the snapshot and hand-off are taken again
	case StepCordon, StepDrain, StepVolumes:
		return StepCordon // cordon, drain and the volume wait are safe to repeat
	case StepWaitReady, StepEtcdJoin, StepUncordon, StepHealth, StepSoak:
		return StepWaitReady
	case StepDestroy:
		if inProgress {
			return StepDestroy // it may or may not have happened: destroy is idempotent
		}
		return StepCreate
	}
	if inProgress {
		return s
	}
	return next(s)
}

func next(s Step) Step {
	i := stepIndex(s)
	if i < 0 || i+1 >= len(stepOrder) {
		return StepDone
	}
	return stepOrder[i+1]
}

// IsNodeStep reports whether s is a step of a node's state machine (the
// hand-off included: it is journaled as a step of drover's own node).
func IsNodeStep(s Step) bool { return stepIndex(s) >= 0 && s != StepDone || s == StepHandOff }

// NodeSteps lists the node steps, for messages.
func NodeSteps() string {
	var out []string
	for _, s := range stepOrder[:len(stepOrder)-1] {
		out = append(out, string(s))
	}
	out = append(out, string(StepHandOff))
	return strings.Join(out, ", ")
}

// RunSummary is one run in a journal, for drover history.
type RunSummary struct {
	RunID    string    `json:"runId"`
	Header   RunHeader `json:"header"`
	Started  time.Time `json:"started"`
	Ended    time.Time `json:"ended"`
	Result   string    `json:"result"`
	Attempts int       `json:"attempts"`
}

// Runs splits a journal into its runs, oldest first.
func Runs(entries []Entry) []RunSummary {
	var out []RunSummary
	idx := map[string]int{}
	for _, e := range entries {
		i, ok := idx[e.RunID]
		if !ok {
			i = len(out)
			idx[e.RunID] = i
			out = append(out, RunSummary{RunID: e.RunID, Started: e.Time, Result: "incomplete (crashed or still running)"})
		}
		r := &out[i]
		r.Ended = e.Time
		if e.Header != nil {
			r.Header = *e.Header
			r.Attempts++
		}
		if e.Node == "" && e.Step == StepRun && e.Status != StatusStarted {
			r.Result = e.Detail
		}
	}
	return out
}

// LastRun keeps the entries of the journal's most recent run.
func LastRun(entries []Entry) []Entry {
	if len(entries) == 0 {
		return nil
	}
	id := entries[len(entries)-1].RunID
	var out []Entry
	for _, e := range entries {
		if e.RunID == id {
			out = append(out, e)
		}
	}
	return out
}
