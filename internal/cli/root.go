// Package cli holds drover's commands, one file each. Commands return
// errors; ExitCode turns them into exit codes. No command calls os.Exit.
package cli

import (
	"context"
	"errors"
	"io"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"k8s.io/client-go/rest"
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
  0  every planned node upgraded and healthy (or nothing to do)
  1  a node failed, was rolled back, and the run halted
  2  usage or configuration error; nothing was touched
  3  a rollback failed: manual intervention required
  4  blocked before any change (approval needed, confirmation refused, preflight failed)`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(s.In)
	root.SetOut(s.Out)
	root.SetErr(s.Err)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usage(err) })
	root.AddCommand(newVersionCmd(s), newClassifyCmd(s), newPlanCmd(s), newUpgradeCmd(s), newHealthCmd(s))
	return root
}

// Run executes drover with args and returns the exit code.
func Run(ctx context.Context, s Streams, args []string) int {
	root := NewRoot(s)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	var uh *UnhealthyError
	if err != nil && !errors.As(err, &uh) { // drover health already printed its verdict
		printError(s.Err, err)
	}
	return ExitCode(err)
}
