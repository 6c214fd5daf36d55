package lab

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/version"
)

// failing says whether the fault makes moving the node to `to` fail: the
// forward step for replace-fails, the way back for rollback-fails.
func (v *vm) failing(to version.Pair) bool {
	switch v.fault {
	case FaultReplaceFails:
		return to != v.initial
	case FaultRollbackFails:
		return to == v.initial && v.changed()
	}
	return false
}

// changed: the VM has been taken off its starting version at some point.
func (v *vm) changed() bool { return v.at != v.initial || !v.running }

func (l *Lab) vm(name string) (*vm, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	v, ok := l.vms[name]
	if !ok {
		return nil, fmt.Errorf("lab: no VM for node %s", name)
	}
	return v, nil
}

// Hypervisor is the simulated Proxmox cluster with its Terraform: the
// engine's Replacer in the lab.
type Hypervisor struct{ lab *Lab }

// Hypervisor returns the lab's node replacer.
func (l *Lab) Hypervisor() *Hypervisor { return &Hypervisor{lab: l} }

var _ rollout.Replacer = (*Hypervisor)(nil)

// PrepareTemplates builds the templates of the target Talos version.
func (h *Hypervisor) PrepareTemplates(ctx context.Context, to version.Pair) error {
	l := h.lab
	l.mu.Lock()
	have := l.tmpl[to.Talos.String()]
	l.mu.Unlock()
	if have {
		return nil
	}
	l.log("", "building Talos %s templates on every Proxmox host", to.Talos)
	if err := l.Clock.Sleep(ctx, l.opts.Durations.Template); err != nil {
		return err
	}
	l.mu.Lock()
	l.tmpl[to.Talos.String()] = true
	l.mu.Unlock()
	return nil
}

// Destroy stops and deletes the node's VM.
func (h *Hypervisor) Destroy(ctx context.Context, n plan.Node) error {
	l := h.lab
	v, err := l.vm(n.Name)
	if err != nil {
		return err
	}
	l.mu.Lock()
	running := v.running
	l.mu.Unlock()
	if !running {
		return nil
	}
	l.log(n.Name, "destroying VM %d on %s", n.VMID, n.ProxmoxHost)
	if err := l.Clock.Sleep(ctx, l.opts.Durations.Destroy); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	v.running = false
	l.setNodeReady(n.Name, false, nil)
	return nil
}

// Create clones the node's VM from the template of the given version, boots
// it and lets it join.
func (h *Hypervisor) Create(ctx context.Context, n plan.Node, at version.Pair) error {
	l := h.lab
	v, err := l.vm(n.Name)
	if err != nil {
		return err
	}
	l.mu.Lock()
	hasTemplate, fails, running := l.tmpl[at.Talos.String()], v.failing(at), v.running
	l.mu.Unlock()
	switch {
	case running:
		return fmt.Errorf("lab: VM %d (%s) already exists; destroy it first", n.VMID, n.Name)
	case !hasTemplate:
		return fmt.Errorf("clone VM %d: no template for Talos %s on %s", n.VMID, at.Talos, n.ProxmoxHost)
	}
	l.log(n.Name, "cloning VM %d from the Talos %s template on %s", n.VMID, at.Talos, n.ProxmoxHost)
	if fails {
		if err := l.Clock.Sleep(ctx, l.opts.Durations.FailureDelay); err != nil {
			return err
		}
		return fmt.Errorf("clone VM %d from the Talos %s template on %s: task failed: storage error (lab fault %s)", n.VMID, at.Talos, n.ProxmoxHost, v.fault)
	}
	if err := l.Clock.Sleep(ctx, l.opts.Durations.Clone); err != nil {
		return err
	}
	l.mu.Lock()
	v.running, v.at = true, at
	l.mu.Unlock()
	l.log(n.Name, "VM %d booting Talos %s", n.VMID, at.Talos)
	if err := l.Clock.Sleep(ctx, l.opts.Durations.Boot+l.opts.Durations.Join); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.register(v)
	return nil
}

// register is the kubelet registering the node (anew if its Node object
// was deleted) at the VM's versions. l.mu must be held.
func (l *Lab) register(v *vm) {
	ready := !(v.fault == FaultNeverReady && v.at != v.initial)
	fresh := l.nodeObject(v, ready)
	if old := l.node(v.node.Name); old != nil {
		// Same Node object: the kubelet updates its status.
		old.Status.NodeInfo = fresh.Status.NodeInfo
		old.Status.Conditions = fresh.Status.Conditions
		_ = l.Client.Tracker().Update(nodesGVR, old, "")
	} else {
		_ = l.Client.Tracker().Add(fresh)
	}
	if !ready {
		l.log(v.node.Name, "kubelet up, but the node stays NotReady (lab fault never-ready)")
	}
	if v.node.IsControlPlane() {
		l.etcdJoin(v.node.Name)
	}
	l.reconcile()
}

// setNodeReady flips the node's Ready condition (kubelet gone or back);
// info, when set, replaces the reported versions. l.mu must be held.
func (l *Lab) setNodeReady(name string, ready bool, info *corev1.NodeSystemInfo) {
	n := l.node(name)
	if n == nil {
		return
	}
	c := readyCondition(ready, l.now())
	if !ready {
		c.Status, c.Reason, c.Message = corev1.ConditionUnknown, "NodeStatusUnknown", "Kubelet stopped posting node status."
	}
	n.Status.Conditions = []corev1.NodeCondition{c}
	if info != nil {
		n.Status.NodeInfo = *info
	}
	_ = l.Client.Tracker().Update(nodesGVR, n, "")
	l.reconcile()
}

// Talos is the simulated Talos API of every node: the engine's Upgrader in
// the lab.
type Talos struct{ lab *Lab }

// Talos returns the lab's in-place upgrader.
func (l *Lab) Talos() *Talos { return &Talos{lab: l} }

var _ rollout.Upgrader = (*Talos)(nil)

// Upgrade pulls the installer image, installs it and reboots the node.
func (t *Talos) Upgrade(ctx context.Context, n plan.Node, to version.Pair) error {
	l := t.lab
	v, err := l.vm(n.Name)
	if err != nil {
		return err
	}
	image := l.opts.Config.Talos.Image(to.Talos.String())
	l.log(n.Name, "pulling installer %s", image)
	l.mu.Lock()
	fails := v.failing(to)
	l.mu.Unlock()
	if err := l.Clock.Sleep(ctx, l.opts.Durations.ImagePull); err != nil {
		return err
	}
	if fails {
		return fmt.Errorf("upgrade %s to Talos %s: installer exited with code 1: failed to write boot partition (lab fault %s)", n.Name, to.Talos, v.fault)
	}
	if err := l.Clock.Sleep(ctx, l.opts.Durations.Install); err != nil {
		return err
	}
	l.log(n.Name, "rebooting into Talos %s", to.Talos)
	l.mu.Lock()
	v.at = to
	l.setNodeReady(n.Name, false, nil)
	l.mu.Unlock()
	if err := l.Clock.Sleep(ctx, l.opts.Durations.Reboot); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.register(v)
	return nil
}

var _ rollout.KubernetesUpgrader = (*Talos)(nil)

// UpgradeKubernetes is talosctl upgrade-k8s on the lab: node by node, the
// control plane first, each kubelet restarts at the new version.
func (t *Talos) UpgradeKubernetes(ctx context.Context, _, to version.Version) error {
	l := t.lab
	for _, name := range l.order {
		l.mu.Lock()
		v := l.vms[name]
		running := v.running
		l.mu.Unlock()
		if !running {
			continue
		}
		l.log(name, "upgrading the kubelet (and, on the control plane, the static pods) to Kubernetes %s", to)
		if err := l.Clock.Sleep(ctx, l.opts.Durations.KubeletRestart); err != nil {
			return err
		}
		l.mu.Lock()
		v.at.Kubernetes = to
		if n := l.node(name); n != nil {
			n.Status.NodeInfo.KubeletVersion = to.String()
			_ = l.Client.Tracker().Update(nodesGVR, n, "")
		}
		l.mu.Unlock()
	}
	return nil
}
