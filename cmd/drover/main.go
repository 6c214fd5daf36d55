// Command drover upgrades Talos Linux Kubernetes clusters on Proxmox.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	_ "time/tzdata" // maintenance windows name IANA zones; do not depend on the host's database

	"github.com/prox-ops/drover/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, cli.OSStreams(), os.Args[1:])
	stop()
	os.Exit(code)
}
