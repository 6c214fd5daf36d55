package testenv

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

// NodeSpec describes a simulated node.
type NodeSpec struct {
	Name         string
	ControlPlane bool
	Talos        string // e.g. v1.11.3
	Kubelet      string // e.g. v1.34.1
	GPUs         int
	Labels       map[string]string
	// NotReady makes the kubelet report Ready=False.
	NotReady bool
	// Taints are registered with the Node (a test's own node, which the
	// pods other tests left behind do not tolerate).
	Taints []corev1.Taint
}

// Kubelets simulates what cannot run here: the kubelets of a set of nodes
// (node registration, status and lease heartbeats, pods turning Running and
// Ready, pods finishing termination). Everything else is the real control
// plane, the scheduler included.
type Kubelets struct {
	Client kubernetes.Interface
	// StartDelay is how long a bound pod takes to turn Ready.
	StartDelay time.Duration
	// Heartbeat is how often node status and leases are renewed.
	Heartbeat time.Duration
	// Namespace, when set, limits the scheduler and pod handling to one
	// namespace, so tests sharing a control plane do not see each other.
	Namespace string
	// ProbeResult decides how a drover probe pod (label
	// drover.prox-ops.io/probe) ends, since nothing runs its command here.
	// Nil: it succeeds.
	ProbeResult func(p *corev1.Pod) (ok bool, message string)
	// HookResult decides how a drover hook Job's pod (label
	// drover.prox-ops.io/hook) ends. Nil: it succeeds.
	HookResult func(p *corev1.Pod) (ok bool, message string)

	mu      sync.Mutex
	ips     int
	nodes   map[string]*simNode
	pending map[string]time.Time
	cancel  context.CancelFunc
	done    chan struct{}
}

type simNode struct {
	spec    NodeSpec
	running bool
}

// NewKubelets starts the pod loop for pods in namespace (all when empty);
// Close stops it.
func NewKubelets(client kubernetes.Interface, namespace string) *Kubelets {
	ctx, cancel := context.WithCancel(context.Background())
	k := &Kubelets{Client: client, StartDelay: 500 * time.Millisecond, Heartbeat: 5 * time.Second, Namespace: namespace,
		nodes: map[string]*simNode{}, pending: map[string]time.Time{}, cancel: cancel, done: make(chan struct{})}
	go k.loop(ctx)
	return k
}

// Close stops every simulated kubelet.
func (k *Kubelets) Close() {
	k.cancel()
	<-k.done
}

// AddNode registers a node (anew if its Node object is gone) and keeps it alive.
func (k *Kubelets) AddNode(ctx context.Context, spec NodeSpec) error {
	labels := map[string]string{"kubernetes.io/hostname": spec.Name, "kubernetes.io/os": "linux"}
	for key, v := range spec.Labels {
		labels[key] = v
	}
	taints := slices.Clone(spec.Taints)
	if spec.ControlPlane {
		labels["node-role.kubernetes.io/control-plane"] = ""
		taints = append(taints, corev1.Taint{Key: "node-role.kubernetes.io/control-plane", Effect: corev1.TaintEffectNoSchedule})
	}
	status := nodeStatus(spec, string(uuid.NewUUID()))
	_, err := k.Client.CoreV1().Nodes().Get(ctx, spec.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		// A kubelet registers its Node with its status (versions, OS image)
		// in the same request: nobody ever sees a Node without them.
		_, err = k.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: spec.Name, Labels: labels},
			Spec:       corev1.NodeSpec{Taints: taints},
			Status:     status,
		}, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("register node %s: %w", spec.Name, err)
	}
	k.mu.Lock()
	k.nodes[spec.Name] = &simNode{spec: spec, running: true}
	k.mu.Unlock()
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := k.Client.CoreV1().Nodes().Get(ctx, spec.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Status = status
		_, err = k.Client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("node %s status: %w", spec.Name, err)
	}
	return k.renewLease(ctx, spec.Name)
}

// StopNode is the VM going away: the kubelet stops posting status.
func (k *Kubelets) StopNode(ctx context.Context, name string) error {
	k.mu.Lock()
	if n := k.nodes[name]; n != nil {
		n.running = false
	}
	k.mu.Unlock()
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := k.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		now := metav1.Now()
		setCondition(&n.Status, corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionUnknown, Reason: "NodeStatusUnknown", Message: "Kubelet stopped posting node status.", LastHeartbeatTime: now, LastTransitionTime: now})
		_, err = k.Client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
}

// SetGPUs changes the allocatable GPUs a running node reports.
func (k *Kubelets) SetGPUs(ctx context.Context, name string, gpus int) error {
	k.mu.Lock()
	sn := k.nodes[name]
	if sn != nil {
		sn.spec.GPUs = gpus
	}
	k.mu.Unlock()
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := k.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Status.Allocatable[gpuResource] = *resource.NewQuantity(int64(gpus), resource.DecimalSI)
		n.Status.Capacity[gpuResource] = *resource.NewQuantity(int64(gpus), resource.DecimalSI)
		_, err = k.Client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
}

const gpuResource corev1.ResourceName = "nvidia.com/gpu"

func nodeStatus(spec NodeSpec, bootID string) corev1.NodeStatus {
	res := corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("16Gi"), corev1.ResourcePods: resource.MustParse("110"),
	}
	if spec.GPUs > 0 {
		res[gpuResource] = *resource.NewQuantity(int64(spec.GPUs), resource.DecimalSI)
	}
	now := metav1.Now()
	ready := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now}
	if spec.NotReady {
		ready.Status, ready.Reason, ready.Message = corev1.ConditionFalse, "KubeletNotReady", "container runtime network not ready"
	}
	return corev1.NodeStatus{
		Capacity: res, Allocatable: res.DeepCopy(),
		Conditions: []corev1.NodeCondition{ready},
		Addresses:  []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: spec.Name}},
		NodeInfo: corev1.NodeSystemInfo{
			BootID: bootID, OSImage: fmt.Sprintf("Talos (%s)", spec.Talos), KubeletVersion: spec.Kubelet,
			OperatingSystem: "linux", Architecture: "amd64", ContainerRuntimeVersion: "containerd://2.1.0", KernelVersion: "6.12.0-talos",
		},
	}
}

func setCondition(st *corev1.NodeStatus, c corev1.NodeCondition) {
	for i := range st.Conditions {
		if st.Conditions[i].Type == c.Type {
			st.Conditions[i] = c
			return
		}
	}
	st.Conditions = append(st.Conditions, c)
}

// renewLease renews the node's lease, or creates it. The heartbeat and a
// node's registration may renew at once: a conflict (or a lease created
// meanwhile) is read again and retried.
func (k *Kubelets) renewLease(ctx context.Context, node string) error {
	leases := k.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	return retry.OnError(retry.DefaultRetry, func(err error) bool { return apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) }, func() error {
		now := metav1.NewMicroTime(time.Now())
		l, err := leases.Get(ctx, node, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = leases.Create(ctx, &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: node, Namespace: corev1.NamespaceNodeLease},
				Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To(node), LeaseDurationSeconds: ptr.To(int32(40)), RenewTime: &now},
			}, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		l.Spec.RenewTime = &now
		_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
		return err
	})
}

func (k *Kubelets) running() map[string]NodeSpec {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := map[string]NodeSpec{}
	for name, n := range k.nodes {
		if n.running {
			out[name] = n.spec
		}
	}
	return out
}

// loop is every simulated kubelet and the scheduler, polling the API.
func (k *Kubelets) loop(ctx context.Context) {
	defer close(k.done)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	lastBeat := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if time.Since(lastBeat) >= k.Heartbeat {
			lastBeat = time.Now()
			k.heartbeat(ctx)
		}
		k.syncPods(ctx)
	}
}

func (k *Kubelets) heartbeat(ctx context.Context) {
	for name, spec := range k.running() {
		_ = k.renewLease(ctx, name)
		n, err := k.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			continue
		}
		ready := nodeStatus(spec, n.Status.NodeInfo.BootID).Conditions[0]
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == ready.Status {
				ready.LastTransitionTime = c.LastTransitionTime
			}
		}
		setCondition(&n.Status, ready)
		_, _ = k.Client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	}
}

func (k *Kubelets) syncPods(ctx context.Context) {
	pods, err := k.Client.CoreV1().Pods(k.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	if k.Namespace != "" {
		// drover's probe pods run in its own namespace, on any node.
		// So do its hook Jobs' pods.
		for _, sel := range []string{"drover.prox-ops.io/probe", "drover.prox-ops.io/hook"} {
			own, err := k.Client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{LabelSelector: sel})
			if err != nil {
				return
			}
			for _, p := range own.Items {
				if p.Namespace != k.Namespace { // those are listed already
					pods.Items = append(pods.Items, p)
				}
			}
		}
	}
	running := k.running()
	for i := range pods.Items {
		p := &pods.Items[i]
		key := p.Namespace + "/" + p.Name
		switch {
		case p.Spec.NodeName != "":
			if _, ok := running[p.Spec.NodeName]; !ok {
				continue // the kubelet is gone: nothing moves
			}
			if p.DeletionTimestamp != nil {
				_ = k.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(0))})
				continue
			}
			if p.Status.Phase == corev1.PodRunning || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
				continue
			}
			if _, probe := p.Labels["drover.prox-ops.io/probe"]; probe {
				k.finish(ctx, p, k.ProbeResult)
				continue
			}
			if _, hook := p.Labels["drover.prox-ops.io/hook"]; hook {
				k.finish(ctx, p, k.HookResult)
				continue
			}
			k.mu.Lock()
			first, seen := k.pending[key]
			if !seen {
				k.pending[key] = time.Now()
			}
			k.mu.Unlock()
			if !seen || time.Since(first) < k.StartDelay {
				continue
			}
			k.startPod(ctx, p)
			k.mu.Lock()
			delete(k.pending, key)
			k.mu.Unlock()
		}
	}
}

// finish ends a pod that runs to completion (a probe, a hook) as result
// says (nil: it succeeds).
func (k *Kubelets) finish(ctx context.Context, p *corev1.Pod, result func(p *corev1.Pod) (bool, string)) {
	ok, msg := true, ""
	if result != nil {
		ok, msg = result(p)
	}
	exit, phase := int32(0), corev1.PodSucceeded
	if !ok {
		exit, phase = 1, corev1.PodFailed
	}
	p.Status.Phase = phase
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: p.Spec.Containers[0].Name, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: exit, Message: msg}}}}
	_, _ = k.Client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
}

func (k *Kubelets) startPod(ctx context.Context, p *corev1.Pod) {
	now := metav1.Now()
	p.Status.Phase = corev1.PodRunning
	k.mu.Lock()
	k.ips++
	p.Status.PodIP = fmt.Sprintf("10.244.%d.%d", k.ips/250, 2+k.ips%250)
	k.mu.Unlock()
	p.Status.PodIPs = []corev1.PodIP{{IP: p.Status.PodIP}}
	p.Status.StartTime = &now
	p.Status.Conditions = []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
	}
	p.Status.ContainerStatuses = nil
	for _, c := range p.Spec.Containers {
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: c.Image, Ready: true, Started: ptr.To(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	_, _ = k.Client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
}
