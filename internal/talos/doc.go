// Package talos upgrades nodes in place and guards etcd through the Talos
// API, with github.com/siderolabs/talos/pkg/machinery.
package talos

import (
	_ "github.com/siderolabs/talos/pkg/machinery/client"
	_ "github.com/siderolabs/talos/pkg/machinery/client/config"
)
