package lab

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// The kit's runner scale set, as ARC runs it in the cluster it upgrades:
// drover's runner pod on a worker, an idle runner on another. Runner pods
// are owned by an EphemeralRunner, request a little CPU and memory and
// tolerate nothing, so they start only on workers.
const (
	// RunnerNamespace is the runner scale set's namespace in the kit.
	RunnerNamespace = "github-actions"
	// RunnerNone places no runner pod: drover runs outside the cluster.
	RunnerNone = "none"

	runnerApp = "cattle-upgrade-runner"
	idleApp   = "cattle-upgrade-runner-idle"
)

// runnerApps are drover's runner and an idle one; pinned is where drover's
// runs ("" lets the lab's scheduler place it, as ARC's pod would be).
func (l *Lab) runnerApps() []*app {
	if l.opts.RunnerNode == RunnerNone {
		return nil
	}
	pinned := l.opts.RunnerNode
	if st := l.opts.State; st != nil && st.RunnerNode != "" {
		pinned = st.RunnerNode
	}
	l.runner = &app{ns: RunnerNamespace, name: runnerApp, replicas: 1, pinned: pinned, runner: true}
	return []*app{l.runner, {ns: RunnerNamespace, name: idleApp, replicas: 1, runner: true}}
}

// settleRunner pins drover's runner to the node the scheduler gave it; a
// saved runner on a node cordoned for a hand-off has finished its job, and
// the next one (the continuation's) starts elsewhere. l.mu must be held.
func (l *Lab) settleRunner() {
	if l.runner == nil {
		return
	}
	for _, p := range l.store.ofApp[l.runner] {
		n := l.cachedNode(p.Spec.NodeName)
		if n != nil && n.Spec.Unschedulable {
			l.moveRunner()
			return
		}
		l.runner.pinned = p.Spec.NodeName
	}
}

// Runner says where drover's runner pod runs: its node and pod ("" when the
// lab has none: drover runs outside the cluster).
func (l *Lab) Runner() (node, pod string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.runner == nil {
		return "", ""
	}
	for _, p := range l.store.ofApp[l.runner] {
		return p.Spec.NodeName, p.Name
	}
	return "", ""
}

// RunnerPod is drover's runner pod, as the API holds it (nil without one).
func (l *Lab) RunnerPod() *corev1.Pod {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.runner == nil {
		return nil
	}
	for _, p := range l.store.ofApp[l.runner] {
		return p.DeepCopy()
	}
	return nil
}

// HandOver plays a hand-off's continuation: drover's runner pod finishes
// its job and goes, and the next job's runner pod starts where the
// scheduler puts it (never on the cordoned node). It says where.
func (l *Lab) HandOver() (from, to, pod string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.runner == nil {
		return "", "", "", fmt.Errorf("the lab has no runner pod (--lab-runner-node none)")
	}
	from = l.runner.pinned
	if !l.moveRunner() {
		return from, "", "", fmt.Errorf("no node can start a runner pod")
	}
	for _, p := range l.store.ofApp[l.runner] {
		to, pod = p.Spec.NodeName, p.Name
	}
	l.log(to, "a new runner pod %s/%s starts here and continues the run (the job on %s handed off)", RunnerNamespace, pod, from)
	return from, to, pod, nil
}

// moveRunner replaces drover's runner pod with one the scheduler places
// anew; it says whether one could start. l.mu must be held.
func (l *Lab) moveRunner() bool {
	for _, p := range l.store.sorted(l.store.ofApp[l.runner]) {
		l.dropPod(p)
	}
	l.runner.pinned = ""
	n := l.schedule(l.runner, l.nodes())
	if n == nil {
		return false
	}
	l.runner.pinned = n.Name
	l.createPod(l.runner, n, true)
	return true
}

// runnerRequests are a runner pod's requests (the kit's runner template).
func runnerRequests() corev1.ResourceList {
	return corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("1Gi")}
}
