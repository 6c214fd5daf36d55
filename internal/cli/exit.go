package cli

import (
	"errors"

	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/journal"
	"github.com/prox-ops/drover/internal/observe"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/run"
	"github.com/prox-ops/drover/internal/version"
)

// Exit codes, as fixed in DESIGN.md.
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
	}
	// Anything unexpected happened before or outside a node's state machine.
	return ExitHalted
}
