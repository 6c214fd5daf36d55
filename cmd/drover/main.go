// Command drover upgrades Talos Linux Kubernetes clusters on Proxmox.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	_ "time/tzdata" // maintenance windows name IANA zones; do not depend on the host's database

	"github.com/prox-ops/drover/internal/cli"
)

func main() {
	s := cli.OSStreams()
	s.Where = &cli.Whereabouts{}
	// The lab's rehearsed crash (--lab-crash-at) is an abrupt exit by
	// design, like a SIGKILL: only main exits.
	s.Crash = func() { os.Exit(137) }
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		// The first signal stops the run at its next safe point; a second
		// one stops drover at once, saying where it left each node.
		sig := <-sigs
		cancel(fmt.Errorf("%w: %s", errSignal, sig))
		fmt.Fprintf(os.Stderr, "drover: %s: finishing the current atomic step, then stopping safely (signal again to stop at once)\n", sig)
		sig = <-sigs
		fmt.Fprintf(os.Stderr, "drover: %s again: stopping at once. Where the run stood: %s. The journal has every step that started; "+
			"the run lock expires after its TTL; resume with drover upgrade --resume.\n", sig, s.Where)
		os.Exit(cli.ExitInterrupted)
	}()
	code := cli.Run(ctx, s, os.Args[1:])
	signal.Stop(sigs)
	os.Exit(code)
}

var errSignal = errors.New("signal")
