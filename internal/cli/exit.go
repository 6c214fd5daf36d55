package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/journal"
	"github.com/prox-ops/drover/internal/kube"
	"github.com/prox-ops/drover/internal/observe"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/run"
	"github.com/prox-ops/drover/internal/version"
)

// Exit codes: docs/commands.md lists them (a test checks it against --help).
const (
	ExitOK             = 0
	ExitHalted         = 1
	ExitUsage          = 2
	ExitRollbackFailed = 3
	ExitBlocked        = 4
	// ExitCanary: the canary nodes are done and healthy and the run paused
	// for a look (--canary); nothing failed. --resume does the rest.
	ExitCanary = 5
	// ExitHandedOff: drover's own node is next; it is cordoned and a runner
	// on another node continues the run with --resume. Nothing failed.
	ExitHandedOff = 6
	// ExitInterrupted is 128+SIGINT, as shells report a run stopped by a signal.
	ExitInterrupted = 130
)

// ExitCodeDoc is one exit code and what it means, as --help and the
// README's table say it (the README's table is checked against it).
type ExitCodeDoc struct {
	Code    int
	Meaning string
}

// ExitCodes are drover's exit codes, one rule for every command.
func ExitCodes() []ExitCodeDoc {
	return []ExitCodeDoc{
		{ExitOK, "every planned node upgraded and healthy (or nothing to do); for the other commands, what was asked is done or true"},
		{ExitHalted, "a node failed, was rolled back, and the run halted (the cluster is healthy on the old version for that node); `drover health`: the cluster is unhealthy; `drover secrets check`: a secret is missing or malformed"},
		{ExitUsage, "usage or configuration error (a flag, drover.yaml, a file that cannot be written, a target older than the nodes, a journal that cannot be resumed); nothing was touched"},
		{ExitRollbackFailed, "a rollback failed: manual intervention required"},
		{ExitBlocked, "blocked before any change: approval needed, confirmation refused, preflight failed, claimed versions the nodes contradict, run lock held, outside the maintenance window, the cluster (or the Talos API) unreachable, silent past `--request-timeout` or refusing access, for every command; paused between batches when the window closed; or stopped at a safe point because the run lock was lost"},
		{ExitCanary, "paused after the canary (`--canary`), as asked: the canary nodes are upgraded and healthy, nothing failed; the journal says paused and `--resume` does the rest"},
		{ExitHandedOff, "handed off: drover's own node (its runner pod's) is next; drover cordoned it, and a runner on another node continues the run with `--resume` (the kit's `continue` job)"},
		{ExitInterrupted, "stopped by SIGINT/SIGTERM at a safe point, for every command; a run that had started resumes with `--resume` (a second signal stops at once, still 130)"},
	}
}

// exitCodesHelp is the exit code table for --help, wrapped.
func exitCodesHelp() string {
	var b strings.Builder
	for _, e := range ExitCodes() {
		words := strings.Fields(strings.ReplaceAll(e.Meaning, "`", ""))
		line := fmt.Sprintf("  %-4d", e.Code)
		for i, w := range words {
			if i > 0 && len(line)+1+len(w) > 78 {
				b.WriteString(line + "\n")
				line = "      " + w
				continue
			}
			if i > 0 {
				line += " "
			}
			line += w
		}
		b.WriteString(line + "\n")
	}
	return strings.TrimRight(b.String(), "\n")
}

// UsageError is bad input: nothing was touched. Exit 2.
type UsageError = run.UsageError

func usage(err error) error { return run.Usage(err) }

// ExitCode maps an error from a command to drover's exit code.
func ExitCode(err error) int {
	var (
		ue *UsageError
		ce *config.Error
		pe *version.ParseError
		de *version.DowngradeError
		hf *rollout.HaltError
		rf *rollout.RollbackFailedError
		bl *rollout.BlockedError
		uh *UnhealthyError
		lk *journal.LockedError
		ie *rollout.InterruptedError
		pz *rollout.PausedError
		je *rollout.JournalError
		ll *journal.LockLostError
		ae *observe.AccessError
		cp *rollout.CanaryPausedError
		ho *rollout.HandedOffError
	)
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &cp):
		return ExitCanary
	case errors.As(err, &ho):
		return ExitHandedOff
	case errors.As(err, &ll):
		// Stopped safely because another run may now hold the lock.
		return ExitBlocked
	case errors.As(err, &ie):
		return ExitInterrupted
	case errors.As(err, &rf):
		return ExitRollbackFailed
	case errors.As(err, &bl), errors.As(err, &lk), errors.As(err, &pz), errors.As(err, &ae):
		return ExitBlocked
	case errors.As(err, &hf), errors.As(err, &uh):
		return ExitHalted
	case errors.As(err, &ue), errors.As(err, &ce), errors.As(err, &pe), errors.As(err, &de), errors.As(err, &je):
		return ExitUsage
	case kube.Unreachable(err):
		// The cluster did not answer or let drover in, whatever the command:
		// nothing was changed.
		return ExitBlocked
	}
	// Anything unexpected happened before or outside a node's state machine.
	return ExitHalted
}
