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

// PrepareTemplates has nothing to build in the simulation.
func (h *Hypervisor) PrepareTemplates(context.Context, version.Pair) error { return nil }

// Destroy stops the node's kubelet.
func (h *Hypervisor) Destroy(ctx context.Context, n plan.Node) error {
	h.mu.Lock()
	h.Destroyed = append(h.Destroyed, n.Name)
	h.mu.Unlock()
	return h.Kubelets.StopNode(ctx, n.Name)
}

// Create boots the node at the given versions.
func (h *Hypervisor) Create(ctx context.Context, n plan.Node, at version.Pair) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(h.BootDelay):
	}
	h.mu.Lock()
	h.Created = append(h.Created, n.Name+"@"+at.Talos.String())
	h.mu.Unlock()
	return h.Kubelets.AddNode(ctx, NodeSpec{
		Name: n.Name, ControlPlane: n.IsControlPlane(), GPUs: n.GPUs,
		Talos: at.Talos.String(), Kubelet: at.Kubernetes.String(),
	})
}
