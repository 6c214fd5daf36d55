// Command drover upgrades Talos Linux Kubernetes clusters on Proxmox.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/prox-ops/drover/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, cli.OSStreams(), os.Args[1:])
	stop()
	os.Exit(code)
}
