package lab

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/talos"
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

var (
	_ rollout.Replacer  = (*Hypervisor)(nil)
	_ rollout.VMChecker = (*Hypervisor)(nil)
)

// EnsureTemplates builds the templates of the target Talos version. With
// terraform.templates: rebuild the templates sit at fixed VM ids, so the
// new ones replace the old.
func (h *Hypervisor) EnsureTemplates(ctx context.Context, to version.Pair) error {
	_, err := h.BuildTemplates(ctx, to)
	return err
}

// BuildTemplates is EnsureTemplates that also says whether it built
// them: false when they were there already, as terraform.Runner's.
func (h *Hypervisor) BuildTemplates(ctx context.Context, to version.Pair) (built bool, err error) {
	l := h.lab
	l.mu.Lock()
	have := l.tmpl[to.Talos.String()]
	l.mu.Unlock()
	if have {
		return false, nil
	}
	l.log("", "building Talos %s templates on every Proxmox host", to.Talos)
	if err := l.Clock.Sleep(ctx, l.opts.Durations.Template); err != nil {
		return false, err
	}
	l.mu.Lock()
	if l.opts.Config.Terraform.Templates == config.TemplatesRebuild {
		clear(l.tmpl)
	}
	l.tmpl[to.Talos.String()] = true
	l.mu.Unlock()
	return true, nil
}

// terraform is the fixed cost of one Terraform run (init, refresh, lock).
func (h *Hypervisor) terraform(ctx context.Context, what string, nodes []plan.Node) error {
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.Name
	}
	h.lab.log("", "terraform %s -target for %s", what, strings.Join(names, ", "))
	return h.lab.Clock.Sleep(ctx, h.lab.opts.Durations.Terraform)
}

// Destroy stops and deletes the nodes' VMs, in one Terraform run: all the
// VMs go at once.
func (h *Hypervisor) Destroy(ctx context.Context, nodes []plan.Node) error {
	l := h.lab
	var gone []*vm
	for _, n := range nodes {
		v, err := l.vm(n.Name)
		if err != nil {
			return err
		}
		l.mu.Lock()
		running := v.running
		l.mu.Unlock()
		if running {
			gone = append(gone, v)
			l.log(n.Name, "destroying VM %d on %s", n.VMID, n.ProxmoxHost)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	if err := h.terraform(ctx, "destroy", nodes); err != nil {
		return err
	}
	if err := l.Clock.Sleep(ctx, l.opts.Durations.Destroy); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, v := range gone {
		l.leaderDown(v.node.Name)
		v.running = false
		l.setNodeReady(v.node.Name, false, nil)
	}
	return nil
}

// Create clones the nodes' VMs from the template of the given version, in
// one Terraform run: they boot and join side by side, so the run takes as
// long as its slowest node. A node whose clone fails (lab fault) fails alone.
func (h *Hypervisor) Create(ctx context.Context, nodes []plan.Node, at version.Pair) error {
	l := h.lab
	errs := rollout.NodeErrors{}
	var ok []*vm
	for _, n := range nodes {
		v, err := l.vm(n.Name)
		if err != nil {
			return err
		}
		l.mu.Lock()
		hasTemplate, fails, running := l.tmpl[at.Talos.String()], v.failing(at), v.running
		l.mu.Unlock()
		switch {
		case running:
			errs[n.Name] = fmt.Errorf("lab: VM %d (%s) already exists; destroy it first", n.VMID, n.Name)
		case !hasTemplate:
			errs[n.Name] = fmt.Errorf("clone VM %d: no template for Talos %s on %s", n.VMID, at.Talos, n.ProxmoxHost)
		case fails:
			l.log(n.Name, "cloning VM %d from the Talos %s template on %s", n.VMID, at.Talos, n.ProxmoxHost)
			errs[n.Name] = fmt.Errorf("clone VM %d from the Talos %s template on %s: task failed: storage error (lab fault %s)", n.VMID, at.Talos, n.ProxmoxHost, v.fault)
		default:
			l.log(n.Name, "cloning VM %d from the Talos %s template on %s", n.VMID, at.Talos, n.ProxmoxHost)
			ok = append(ok, v)
		}
	}
	if err := h.terraform(ctx, "apply", nodes); err != nil {
		return err
	}
	if len(ok) == 0 {
		if err := l.Clock.Sleep(ctx, l.opts.Durations.FailureDelay); err != nil {
			return err
		}
		return errs
	}
	if err := l.Clock.Sleep(ctx, l.opts.Durations.Clone); err != nil {
		return err
	}
	l.mu.Lock()
	for _, v := range ok {
		// The VM is cloned from the template of its own schematic (the
		// wrong-image fault: of another one).
		schematic := schematicOf(l.initialImage(v.node, at.Talos))
		if v.fault == FaultWrongImage && at != v.initial {
			other := l.baseSchematic()
			if other == schematic {
				other = GPUSchematic
			}
			schematic = other
		}
		v.running, v.at, v.image = true, at, imageAt(schematic, at.Talos)
		l.log(v.node.Name, "VM %d booting Talos %s", v.node.VMID, at.Talos)
	}
	l.mu.Unlock()
	if err := l.Clock.Sleep(ctx, l.opts.Durations.Boot+l.opts.Durations.Join); err != nil {
		return err
	}
	l.mu.Lock()
	for _, v := range ok {
		l.register(v)
	}
	l.mu.Unlock()
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// VMExists says whether the node's VM exists (is in the simulated state).
func (h *Hypervisor) VMExists(_ context.Context, n plan.Node) (bool, error) {
	v, err := h.lab.vm(n.Name)
	if err != nil {
		return false, err
	}
	h.lab.mu.Lock()
	defer h.lab.mu.Unlock()
	return v.running, nil
}

// register is the kubelet registering the node (anew if its Node object
// was deleted) at the VM's versions. l.mu must be held.
func (l *Lab) register(v *vm) {
	v.booted = l.Clock.Now()
	ready := !(v.fault == FaultNeverReady && v.at != v.initial)
	fresh := l.nodeObject(v, ready)
	if old := l.node(v.node.Name); old != nil {
		// Same Node object: the kubelet updates its status.
		old.Status.NodeInfo = fresh.Status.NodeInfo
		old.Status.Conditions = fresh.Status.Conditions
		l.putNode(old)
	} else {
		_ = l.addNode(fresh)
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
	l.putNode(n)
	l.reconcile()
}

// Talos is the simulated Talos API of every node: the engine's Upgrader in
// the lab.
type Talos struct{ lab *Lab }

// Talos returns the lab's in-place upgrader.
func (l *Lab) Talos() *Talos { return &Talos{lab: l} }

var _ rollout.Upgrader = (*Talos)(nil)

// NodeVersion is the node's Talos API answering which version it runs.
func (t *Talos) NodeVersion(_ context.Context, n config.Node) (version.Version, error) {
	l := t.lab
	l.mu.Lock()
	defer l.mu.Unlock()
	v, ok := l.vms[n.Name]
	if !ok || !v.running || l.node(n.Name) == nil {
		return version.Version{}, fmt.Errorf("%s (%s): connection refused (the node is down)", n.Name, n.IP)
	}
	return v.at.Talos, nil
}

// Upgrade pulls the installer image, installs it and reboots the node.
func (t *Talos) Upgrade(ctx context.Context, n plan.Node, to version.Pair) error {
	l := t.lab
	v, err := l.vm(n.Name)
	if err != nil {
		return err
	}
	image := l.opts.Config.Talos.Image(to.Talos.String())
	if n.Image != "" {
		image = talos.WithVersion(n.Image, to.Talos.String())
	}
	if t.lab.missing(image) {
		return fmt.Errorf("upgrade %s: pull %s: not found", n.Name, image)
	}
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
	v.at, v.image = to, image
	l.leaderDown(n.Name)
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

var _ rollout.LinkReader = (*Talos)(nil)

// Links are the node's links as prox-ops has them (PRD CR5): eth0 on the
// cluster network, eth1 on the IoT VLAN 62, eth2 on the DMZ VLAN 81, with
// hardware addresses Terraform pins per VM (they survive a replacement).
// With the link-lost fault, at the new version, eth2 is gone.
func (t *Talos) Links(_ context.Context, n plan.Node) ([]rollout.Link, error) {
	l := t.lab
	l.mu.Lock()
	defer l.mu.Unlock()
	v, ok := l.vms[n.Name]
	if !ok || !v.running || l.node(n.Name) == nil {
		return nil, fmt.Errorf("%s (%s): connection refused (the node is down)", n.Name, n.IP)
	}
	mac := func(nic int) string {
		return fmt.Sprintf("bc:24:11:%02x:%02x:%02x", (v.node.VMID>>8)&0xff, v.node.VMID&0xff, nic)
	}
	links := []rollout.Link{
		{Name: "eth0", HardwareAddr: mac(0), Addresses: []string{v.node.IP + "/24"}},
		{Name: "eth1", HardwareAddr: mac(1)},
		{Name: "eth2", HardwareAddr: mac(2)},
	}
	if l.nodeFaultActive(n.Name, FaultLinkLost) {
		links = links[:2] // the DMZ NIC did not come back
	}
	return links, nil
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
			l.putNode(n)
		}
		l.mu.Unlock()
	}
	return nil
}
