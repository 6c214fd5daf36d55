// Package cli holds drover's commands, one file each. Commands return
// errors; ExitCode turns them into exit codes. No command calls os.Exit:
// the lab's rehearsed crash goes through Streams.Crash.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"k8s.io/client-go/rest"

	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/journal"
	"github.com/prox-ops/drover/internal/notify"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/run"
	"github.com/prox-ops/drover/internal/secrets"
)

// Build information, set with -ldflags "-X github.com/prox-ops/drover/internal/cli.Version=...".
var (
	Version = "dev"
	Commit  = "none"
)

// Streams are where a command reads and writes.
type Streams struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
	// IsTerminal reports whether In is an interactive terminal.
	IsTerminal func() bool
	// Getenv reads the environment.
	Getenv func(string) string
	// Home is the user's home directory (for ~/.kube/config).
	Home string
	// InCluster returns the in-cluster service-account config.
	InCluster func() (*rest.Config, error)
	// talosInPod overrides where the Talos ServiceAccount's talosconfig is
	// mounted (tests; "" the real path).
	talosInPod string
	// Masker masks secret values in everything drover writes; Run sets it.
	Masker *secrets.Masker
	// Where, when set, follows each node's step, so a second signal can
	// say where the run stood when it stopped at once.
	Where *Whereabouts
	// Crash ends the process at once, with no cleanup: the lab's rehearsed
	// crash (--lab-crash-at). OSStreams exits with 137, as a SIGKILL would.
	Crash func()
	// raw is the unmasked stderr, for GitHub's ::add-mask:: commands only:
	// the runner reads workflow commands from both streams, and stderr
	// keeps them out of a --output json or markdown document on stdout.
	raw io.Writer
	// rawOut is the unmasked stdout, for JSON documents masked by their
	// string values (Masker.MaskJSON) rather than line by line.
	rawOut io.Writer
}

// addSecrets learns the values of more secret variables (the ones
// drover.yaml names) and, in GitHub Actions, registers them with the runner.
func (s Streams) addSecrets(names []string) {
	if s.Masker == nil {
		return
	}
	before := len(s.Masker.Values())
	for _, n := range s.Masker.AddEnv(s.getenv, names) {
		fmt.Fprintf(s.Err, "drover: warning: the secret %s is shorter than %d characters: it is masked only where it stands alone (a whole word or value), not inside other text; use a longer value\n", n, secrets.SafeLen)
	}
	if vals := s.Masker.Values(); len(vals) != before && s.raw != nil && s.getenv("GITHUB_ACTIONS") == "true" {
		notify.AddMasks(s.raw, vals)
	}
}

// learnConfig learns the secrets drover.yaml brings: the variables it
// names, and credentials written into its URLs, which also get a warning.
func (s Streams) learnConfig(cfg *config.Config) {
	s.addSecrets(cfg.SecretEnvNames())
	for _, f := range cfg.CredentialURLs() {
		if s.Masker != nil {
			s.Masker.Add(f.URL)
		}
		fmt.Fprintf(s.Err, "drover: warning: %s has credentials in it, and drover.yaml is kept in git: they are masked in drover's output, but %s\n", f.Field, f.Advice)
	}
}

// env is what a run reads from the process and tells it.
func (s Streams) env() run.Env {
	return run.Env{Getenv: s.Getenv, Masker: s.Masker, LearnSecrets: s.addSecrets, Warn: func(msg string) {
		fmt.Fprintf(s.Err, "drover: warning: %s\n", msg)
	}}
}

func (s Streams) getenv(k string) string {
	if s.Getenv == nil {
		return ""
	}
	return s.Getenv(k)
}

// stoppedBySignal says whether a command's error, after its context was
// cancelled, is only the stop's doing: not a halt, a failed rollback, a
// pause or a hand-off, which say more than "stopped".
func stoppedBySignal(err error) bool {
	switch ExitCode(err) {
	case ExitHalted:
		var hf *rollout.HaltError
		return !errors.As(err, &hf)
	case ExitBlocked:
		var ll *journal.LockLostError
		return !errors.As(err, &ll)
	case ExitInterrupted:
		return false
	}
	return false
}

// OSStreams are the process's standard streams.
func OSStreams() Streams {
	home, _ := os.UserHomeDir()
	return Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr, IsTerminal: stdinIsTerminal, Getenv: os.Getenv, Home: home, InCluster: rest.InClusterConfig}
}

func stdinIsTerminal() bool { return term.IsTerminal(int(os.Stdin.Fd())) }

// NewRoot builds the drover command tree.
func NewRoot(s Streams) *cobra.Command {
	root := &cobra.Command{
		Use:   "drover",
		Short: "Upgrade Talos Linux Kubernetes clusters on Proxmox, node by node, safely",
		Long: `drover upgrades a Talos Linux Kubernetes cluster that runs as Proxmox VMs.

From a version bump (a merged Renovate pull request, or flags) it decides the
strategy: a patch release is upgraded in place through the Talos API (pets), a
minor release replaces each VM from a new template through Terraform (cattle),
a major release does the same after an explicit approval. Control-plane nodes
go first, one at a time; then workers, never two VMs of one Proxmox host at
once. After each node a health gate runs; a node that fails it is rolled back
and the run halts.

Rehearse anything on the embedded lab with --lab: a simulated 15-node cluster
on a virtual clock, with faults you can inject (--lab-fault NODE=KIND).

Exit codes:
` + exitCodesHelp(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(s.In)
	root.SetOut(s.Out)
	root.SetErr(s.Err)
	// An unknown command is bad input (exit 2), with cobra's suggestion.
	root.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if sugg := cmd.SuggestionsFor(args[0]); len(sugg) > 0 {
			msg += "; did you mean " + strings.Join(sugg, " or ") + "?"
		}
		return usage(errors.New(msg + " (see drover --help)"))
	}
	root.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		// "drover upgrad --lab": the unknown command, not its flag, is the news.
		if !c.HasParent() && len(c.Flags().Args()) > 0 {
			return root.Args(c, c.Flags().Args())
		}
		return usage(err)
	})
	root.AddCommand(newVersionCmd(s), newClassifyCmd(s), newPlanCmd(s), newPrepareCmd(s), newUpgradeCmd(s), newHealthCmd(s), newUnlockCmd(s), newHistoryCmd(s),
		newReportCmd(s), newInitCmd(s), newSecretsCmd(s), newAccessCmd(s))
	return root
}

// Run executes drover with args and returns the exit code. Everything it
// writes is masked: the values of the secret environment variables (and
// their encoded forms) never leave the process. In GitHub Actions they are
// registered with ::add-mask:: before anything else is printed.
func Run(ctx context.Context, s Streams, args []string) int {
	s.Masker = secrets.New()
	if s.getenv("GITHUB_ACTIONS") == "true" {
		notify.AddMasks(s.Err, s.Masker.Values())
	}
	out, errw := s.Masker.NewWriter(s.Out, ""), s.Masker.NewWriter(s.Err, "")
	s.raw, s.rawOut, s.Out, s.Err = s.Err, s.Out, out, errw
	s.addSecrets(config.DefaultSecretEnv)
	defer func() {
		_ = out.Flush()
		_ = errw.Flush()
	}()
	root := NewRoot(s)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err != nil && ctx.Err() != nil && stoppedBySignal(err) {
		// A stop cut a call short (a read, a wait): the error is the stop's.
		err = rollout.StoppedBeforeStart(ctx)
	}
	var uh *UnhealthyError
	if err != nil && !errors.As(err, &uh) { // drover health already printed its verdict
		printError(s.Err, err)
	}
	return ExitCode(err)
}
