package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/prox-ops/drover/internal/lab"
	"github.com/prox-ops/drover/internal/version"
	"github.com/spf13/pflag"
)

// registerLabShape registers the flags of a generated lab inventory.
func (f *sourceFlags) registerLabShape(fs *pflag.FlagSet) {
	f.flags = fs
	fs.IntVar(&f.labNodes, "lab-nodes", 0, "with --lab, generate an inventory of this many nodes instead of the prox-ops one (names cp-N and worker-N, a GPU on every tenth worker), to rehearse a large cluster")
	fs.IntVar(&f.labCPs, "lab-control-planes", 0, "with --lab-nodes, how many of them are control-plane nodes (default 3, 1 below 6 nodes)")
	fs.IntVar(&f.labHosts, "lab-hosts", 0, "with --lab-nodes, how many Proxmox hosts they are spread over (default one per four nodes, at least 3)")
	fs.IntVar(&f.labWorkers, "lab-parallel-workers", 0, "with --lab-nodes, how many workers are upgraded at once, never two of one host (rollout.maxParallelWorkers; default 1)")
	fs.IntVar(&f.labPods, "lab-pods-per-node", -1, "with --lab, add replicated services until each worker runs about this many pods (default 30 with --lab-nodes, else the lab's standard workloads only)")
}

// podsPerNode is the lab's Options.PodsPerNode the flags ask for.
func (f *sourceFlags) podsPerNode() int {
	switch {
	case f.labPods >= 0:
		return f.labPods
	case f.labNodes > 0:
		return 30
	}
	return 0
}

// labFaultKinds lists the lab's fault kinds, for --help.
func labFaultKinds() string {
	names := make([]string, len(lab.Faults))
	for i, k := range lab.Faults {
		names[i] = string(k)
	}
	return strings.Join(names, ", ")
}

func (f *sourceFlags) faults() (map[string]lab.Fault, error) {
	if len(f.labFaults) > 0 && !f.lab {
		return nil, usage(errors.New("--lab-fault needs --lab"))
	}
	out := map[string]lab.Fault{}
	for _, s := range f.labFaults {
		node, k, err := lab.ParseFault(s)
		if err != nil {
			return nil, usage(err)
		}
		out[node] = k
	}
	return out, nil
}

// labStart is the versions the lab's nodes start at.
func (f *sourceFlags) labStart() (version.Pair, error) {
	if f.labTalos == "" && f.labKube == "" {
		return version.Pair{}, nil // the lab's own
	}
	t, err := version.Parse(f.labTalos, true)
	if err != nil {
		return version.Pair{}, usage(fmt.Errorf("--lab-talos: %w", err))
	}
	k, err := version.Parse(f.labKube, true)
	if err != nil {
		return version.Pair{}, usage(fmt.Errorf("--lab-kubernetes: %w", err))
	}
	return version.Pair{Talos: t, Kubernetes: k}, nil
}
