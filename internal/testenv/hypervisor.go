package testenv

import (
	"context"
	"sync"
	"time"

	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/version"
)

// Hypervisor simulates Proxmox for the engine (a rollout.Replacer): a
// destroyed VM's kubelet stops; a created VM's kubelet registers the node
// at the new versions after BootDelay.
type Hypervisor struct {
	Kubelets  *Kubelets
	BootDelay time.Duration

	mu        sync.Mutex
	Destroyed []string
	Created   []string
}

var _ rollout.Replacer = (*Hypervisor)(nil)

// EnsureTemplates has nothing to build in the simulation.
func (h *Hypervisor) EnsureTemplates(context.Context, version.Pair) error { return nil }

// Destroy stops the nodes' kubelets.
func (h *Hypervisor) Destroy(ctx context.Context, nodes []plan.Node) error {
	for _, n := range nodes {
		h.mu.Lock()
		h.Destroyed = append(h.Destroyed, n.Name)
		h.mu.Unlock()
		if err := h.Kubelets.StopNode(ctx, n.Name); err != nil {
			return err
		}
	}
	return nil
}

// Create boots the nodes at the given versions.
func (h *Hypervisor) Create(ctx context.Context, nodes []plan.Node, at version.Pair) error {
	t := time.NewTimer(h.BootDelay)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	for _, n := range nodes {
		h.mu.Lock()
		h.Created = append(h.Created, n.Name+"@"+at.Talos.String())
		h.mu.Unlock()
		if err := h.Kubelets.AddNode(ctx, NodeSpec{
			Name: n.Name, ControlPlane: n.IsControlPlane(), GPUs: n.GPUs,
			Talos: at.Talos.String(), Kubelet: at.Kubernetes.String(),
		}); err != nil {
			return err
		}
	}
	return nil
}
