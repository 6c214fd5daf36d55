package lab

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/prox-ops/drover/internal/kube"
)

const gpu corev1.ResourceName = "nvidia.com/gpu"

func mustQty(s string) resource.Quantity { return resource.MustParse(s) }

// app is a simulated workload.
type app struct {
	ns, name string
	// daemon runs one pod per eligible node; otherwise replicas pods.
	daemon   bool
	static   bool // a control-plane static pod (mirror pod)
	replicas int
	// tolerateCP lets pods run on control-plane nodes.
	tolerateCP bool
	gpu        bool // needs a GPU (and daemons: only on GPU nodes)
	emptyDir   bool
	// pinned places the pods on one node only; prefer places them on
	// that node while it takes pods, elsewhere otherwise.
	pinned, prefer string
	// late: the app appears only once its preferred node came back.
	late bool
	// crashOn makes this app's pod crash-loop on a node whose fault of one
	// of these kinds is active.
	crashOn        []Fault
	extraLabels    map[string]string
	minAvailable   *intstr.IntOrString
	maxUnavailable *intstr.IntOrString
	// pdb is the app's PodDisruptionBudget, once created.
	pdb *policyv1.PodDisruptionBudget
	// volume: each pod mounts a Ceph RBD volume, attached to its node
	// (a VolumeAttachment) while it runs there and detached a little
	// after it left.
	volume bool
	// busyFor: the pod holds its node (drover.dev/do-not-disrupt) and
	// ends this long after the lab started; it is not replaced.
	busyFor time.Duration
	// grace is the pods' terminationGracePeriodSeconds (0: the default,
	// 30 s); a lab pod takes all of it to stop.
	grace int64
	// runner pods belong to the runner scale set (an EphemeralRunner owns
	// each) and request what the kit's runner template does.
	runner bool
}

func (a *app) labels() map[string]string {
	l := map[string]string{"app.kubernetes.io/name": a.name}
	for k, v := range a.extraLabels {
		l[k] = v
	}
	return l
}

func (a *app) key() string { return a.ns + "/" + a.name }

func (a *app) hasPDB() bool { return a.minAvailable != nil || a.maxUnavailable != nil }

func intOrStr(i int) *intstr.IntOrString { v := intstr.FromInt32(int32(i)); return &v }

// workloads is the lab's standard set: system daemons and static pods, a
// replicated app with a strict budget, one with a loose budget, a
// single-replica app without a budget, Flux and Rook controllers, and a GPU
// workload.
func (l *Lab) workloads() []*app {
	apps := []*app{
		{ns: "kube-system", name: "kube-apiserver", static: true},
		{ns: "kube-system", name: "kube-controller-manager", static: true},
		{ns: "kube-system", name: "kube-scheduler", static: true},
		{ns: "kube-system", name: "cilium", daemon: true, tolerateCP: true, crashOn: []Fault{FaultHealthFail, FaultRollbackFails, FaultLateFail, FaultFailOnce}},
		{ns: "kube-system", name: "nvidia-device-plugin", daemon: true, gpu: true},
		{ns: "monitoring", name: "node-exporter", daemon: true, tolerateCP: true, crashOn: []Fault{FaultCrashloop}},
		{ns: "rook-ceph", name: "csi-rbdplugin", daemon: true},
		{ns: "kube-system", name: "coredns", replicas: 2, tolerateCP: true, minAvailable: intOrStr(1), extraLabels: map[string]string{"k8s-app": "kube-dns"}},
		{ns: "flux-system", name: "source-controller", replicas: 1},
		{ns: "flux-system", name: "kustomize-controller", replicas: 1},
		{ns: "flux-system", name: "helm-controller", replicas: 1},
		{ns: "rook-ceph", name: "rook-ceph-operator", replicas: 1},
		{ns: "rook-ceph", name: "rook-ceph-mon", replicas: 3, minAvailable: intOrStr(2)},
		{ns: "rook-ceph", name: "csi-rbdplugin-provisioner", replicas: 2, maxUnavailable: intOrStr(1)},
		{ns: "apps", name: "web", replicas: 3, minAvailable: intOrStr(2)},
		{ns: "apps", name: "api", replicas: 4, maxUnavailable: intOrStr(1)},
		{ns: "apps", name: "grafana", replicas: 1, emptyDir: true, volume: true},
	}
	gpus := false
	for _, name := range l.order {
		gpus = gpus || l.vms[name].node.GPUs > 0
	}
	if gpus {
		// A GPU workload only where there are GPUs to run it.
		apps = append(apps, &app{ns: "ai", name: "ollama", replicas: 1, gpu: true})
	}
	apps = append(apps, l.fillers()...)
	apps = append(apps, l.runnerApps()...)
	for _, name := range l.order {
		switch l.vms[name].fault {
		case FaultPendingBefore:
			// Nothing runs it: it asks for a node that does not exist.
			apps = append(apps, &app{ns: "apps", name: "backlog", replicas: 1, pinned: "no-such-node"})
		case FaultDrainBlocked:
			apps = append(apps, &app{ns: "apps", name: "ledger-" + name, replicas: 1, pinned: name, minAvailable: intOrStr(1)})
		case FaultLateFail:
			apps = append(apps, &app{ns: "apps", name: "reports-" + name, replicas: 2, prefer: name, late: true, minAvailable: intOrStr(1)})
		case FaultNoRoom:
			apps = append(apps, &app{ns: "media", name: "plex-" + name, replicas: 1, gpu: true, prefer: name})
			for _, other := range l.order {
				if other != name && l.vms[other].node.GPUs > 0 {
					apps = append(apps, &app{ns: "ai", name: "gpu-hog-" + other, replicas: l.vms[other].node.GPUs, gpu: true, pinned: other})
				}
			}
		case FaultBusy:
			apps = append(apps, &app{ns: "media", name: "transcode-" + name, replicas: 1, pinned: name, busyFor: 2 * time.Hour})
		case FaultVolumeStuck:
			apps = append(apps, &app{ns: "apps", name: "recorder-" + name, replicas: 1, prefer: name, volume: true})
		case FaultSlowShutdown:
			apps = append(apps, &app{ns: "apps", name: "postgres-" + name, replicas: 1, pinned: name, grace: 600})
		}
	}
	return apps
}

// fillers are the replicated services that bring the workers to
// Options.PodsPerNode pods each (counting the three daemons every worker
// runs): ten replicas each, every other one with a budget of one pod down.
func (l *Lab) fillers() []*app {
	workers := 0
	for _, name := range l.order {
		if !l.vms[name].node.IsControlPlane() {
			workers++
		}
	}
	const replicas, daemons = 10, 3
	n := (max(0, l.opts.PodsPerNode-daemons)*workers + replicas - 1) / replicas
	out := make([]*app, 0, n)
	for i := range n {
		// Twenty services a team, a namespace a team, as clusters grow.
		a := &app{ns: fmt.Sprintf("team-%03d", i/20+1), name: fmt.Sprintf("svc-%04d", i+1), replicas: replicas}
		if i%2 == 0 {
			a.maxUnavailable = intOrStr(1)
		}
		out = append(out, a)
	}
	return out
}

// installAPI adds what the fake clientset lacks: the eviction subresource
// with PodDisruptionBudgets, field selectors on pod lists, and discovery.
func (l *Lab) installAPI() {
	l.Client.Resources = []*metav1.APIResourceList{
		{GroupVersion: "v1", APIResources: []metav1.APIResource{
			{Name: "nodes", Kind: "Node", Verbs: metav1.Verbs{"get", "list", "watch", "patch", "delete"}},
			{Name: "pods", Namespaced: true, Kind: "Pod", Verbs: metav1.Verbs{"get", "list", "watch", "delete"}},
			{Name: "pods/eviction", Namespaced: true, Group: "policy", Version: "v1", Kind: "Eviction", Verbs: metav1.Verbs{"create"}},
		}},
		{GroupVersion: "policy/v1", APIResources: []metav1.APIResource{
			{Name: "poddisruptionbudgets", Namespaced: true, Kind: "PodDisruptionBudget", Verbs: metav1.Verbs{"get", "list", "watch"}},
		}},
	}
	l.Client.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "eviction" {
			return false, nil, nil
		}
		var name string
		switch ev := a.(k8stesting.CreateAction).GetObject().(type) {
		case *policyv1.Eviction:
			name = ev.Name
		default:
			return true, nil, apierrors.NewBadRequest(fmt.Sprintf("lab: unsupported eviction object %T", ev))
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		return true, nil, l.evict(a.GetNamespace(), name)
	})
	l.Client.PrependReactor("list", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		r := a.(k8stesting.ListAction).GetListRestrictions()
		if r.Fields == nil || r.Fields.Empty() {
			return false, nil, nil
		}
		list := &corev1.PodList{}
		match := func(p *corev1.Pod) {
			f := fields.Set{"metadata.name": p.Name, "metadata.namespace": p.Namespace, "spec.nodeName": p.Spec.NodeName, "status.phase": string(p.Status.Phase)}
			if (a.GetNamespace() == "" || p.Namespace == a.GetNamespace()) && r.Fields.Matches(f) && (r.Labels == nil || r.Labels.Matches(labels.Set(p.Labels))) {
				list.Items = append(list.Items, *p.DeepCopy())
			}
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		// A drain lists the pods of one node: read them from the index,
		// not from a copy of every pod of the cluster.
		if node, ok := r.Fields.RequiresExactMatch("spec.nodeName"); ok {
			for _, p := range l.store.sorted(l.store.onNode[node]) {
				match(p)
			}
			for _, p := range l.probesOn(node) {
				match(p)
			}
			return true, list, nil
		}
		for _, p := range l.trackerPods(a.GetNamespace()) {
			match(p)
		}
		return true, list, nil
	})
	// The fake tracker starts a watch by replaying every object into a
	// 100-event buffer and panics past it (a lab of more than 100 nodes).
	// drover's watches only wake its waits early; it polls on the clock
	// anyway, so the lab serves no watches.
	l.Client.PrependWatchReactor("*", func(a k8stesting.Action) (bool, watch.Interface, error) {
		return true, nil, apierrors.NewMethodNotSupported(a.GetResource().GroupResource(), "watch")
	})
	// Deleting a Node object: the pod garbage collector removes its pods.
	l.Client.PrependReactor("delete", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		name := a.(k8stesting.DeleteAction).GetName()
		l.mu.Lock()
		defer l.mu.Unlock()
		if err := l.Client.Tracker().Delete(nodesGVR, "", name); err != nil {
			return true, nil, err
		}
		l.nodeChanged(name)
		l.reconcile()
		return true, nil, nil
	})
	// Any other write to a Node (a cordon, an annotation) is seen by the
	// simulated controllers at their next pass. The fake tracker patches
	// by reading, merging and replacing without a resourceVersion check,
	// so a write through the API holds l.mu: otherwise a patch read before
	// the simulated kubelet's status update would replace it (the node
	// would stay NotReady after its reboot).
	write := k8stesting.ObjectReaction(l.Client.Tracker())
	l.Client.PrependReactor("*", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		var name string
		switch a.GetVerb() {
		case "patch":
			name = a.(k8stesting.PatchAction).GetName()
		case "create", "update":
			name = objectName(a.(interface{ GetObject() runtime.Object }).GetObject())
		default:
			return false, nil, nil
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		handled, obj, err := write(a)
		l.nodeChanged(name) // after the write: the next pass reads it
		return handled, obj, err
	})
	// A pod deleted through the API (not evicted) leaves the lab's index.
	l.Client.PrependReactor("delete", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		ns, name := a.GetNamespace(), a.(k8stesting.DeleteAction).GetName()
		l.mu.Lock()
		defer l.mu.Unlock()
		if p := l.store.all[ns+"/"+name]; p != nil {
			l.dropPod(p)
			if a := l.appOf(p); a != nil {
				l.replace(a)
			}
			return true, nil, nil
		}
		return false, nil, nil
	})
}

// seed registers every node and places every workload, all Running.
func (l *Lab) seed() error {
	for _, name := range l.order {
		v := l.vms[name]
		if !v.running {
			continue // destroyed (a restored lab): no Node object
		}
		n := l.nodeObject(v, !(v.fault == FaultNeverReady && v.at != v.initial))
		if st := l.opts.State; st != nil {
			n.Spec.Unschedulable = st.VMs[name].Unschedulable
		}
		if err := l.addNode(n); err != nil {
			return err
		}
	}
	l.apps = l.workloads()
	for _, a := range l.apps {
		l.appIndex[a.key()] = a
		if a.late {
			continue
		}
		if err := l.addWorkloadObjects(a); err != nil {
			return err
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.restorePods()
	l.reconcileWith(true)
	l.settleRunner()
	for _, a := range l.apps {
		if a.busyFor > 0 {
			l.endLater(a)
		}
	}
	return nil
}

// endLater ends a busy app's pod (a Job's: Succeeded, not replaced) at
// its time.
func (l *Lab) endLater(a *app) {
	l.Clock.AfterFunc(a.busyFor, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		a.replicas = 0
		for _, p := range l.store.sorted(l.store.ofApp[a]) {
			if p.Status.Phase == corev1.PodRunning {
				p.Status.Phase = corev1.PodSucceeded
				l.putPod(p, p.Spec.NodeName)
			}
		}
		l.observe()
	})
}

func (l *Lab) addWorkloadObjects(a *app) error {
	meta := metav1.ObjectMeta{Namespace: a.ns, Name: a.name, Labels: a.labels(), UID: l.newUID(), CreationTimestamp: l.now()}
	sel := &metav1.LabelSelector{MatchLabels: a.labels()}
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: a.labels()}}
	var objs []runtime.Object
	switch {
	case a.static:
		return nil
	case a.daemon:
		objs = append(objs, &appsv1.DaemonSet{ObjectMeta: meta, Spec: appsv1.DaemonSetSpec{Selector: sel, Template: tmpl}})
	default:
		objs = append(objs, &appsv1.Deployment{ObjectMeta: meta, Spec: appsv1.DeploymentSpec{Replicas: ptr.To(int32(a.replicas)), Selector: sel, Template: tmpl}})
		rs := meta
		rs.Name = a.name + "-5d8f7b9c6"
		rs.UID = l.newUID()
		rs.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: a.name, UID: meta.UID, Controller: ptr.To(true)}}
		objs = append(objs, &appsv1.ReplicaSet{ObjectMeta: rs, Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To(int32(a.replicas)), Selector: sel, Template: tmpl}})
	}
	if a.hasPDB() {
		a.pdb = &policyv1.PodDisruptionBudget{
			ObjectMeta: metav1.ObjectMeta{Namespace: a.ns, Name: a.name, UID: l.newUID(), Generation: 1},
			Spec:       policyv1.PodDisruptionBudgetSpec{MinAvailable: a.minAvailable, MaxUnavailable: a.maxUnavailable, Selector: sel},
		}
		objs = append(objs, a.pdb)
	}
	for _, o := range objs {
		if err := l.Client.Tracker().Add(o); err != nil {
			return err
		}
	}
	return nil
}

// reconcile runs the simulated controllers once; l.mu must be held.
func (l *Lab) reconcile() { l.reconcileWith(false) }

// reconcileWith is one pass of the simulated controllers over the lab's
// own pod index; its cost grows with the nodes and the pods that need
// something, not with every pod of the cluster.
func (l *Lab) reconcileWith(startNow bool) {
	nodes := l.nodes()
	byName := make(map[string]*corev1.Node, len(nodes))
	for _, n := range nodes {
		byName[n.Name] = n
	}
	// Pod GC: pods bound to a Node object that no longer exists.
	for _, node := range slices.Sorted(maps.Keys(l.store.onNode)) {
		if node != "" && byName[node] == nil {
			for _, p := range l.store.sorted(l.store.onNode[node]) {
				l.dropPod(p)
			}
		}
	}
	for _, a := range l.apps {
		if a.late && !l.lateAppDue(a, byName) {
			continue
		}
		switch {
		case a.daemon || a.static:
			have := map[string]bool{}
			for _, p := range l.store.ofApp[a] {
				have[p.Spec.NodeName] = true
			}
			for _, n := range nodes {
				if !have[n.Name] && l.daemonFits(a, n) {
					// Node-level pods (CNI, static pods) come up with the
					// kubelet: a node turns Ready only once its CNI runs.
					l.createPod(a, n, startNow || nodeReady(n))
				}
			}
		default:
			// The ReplicaSet counts again only when its pods changed: at
			// a thousand nodes, counting every app's pods on every pass
			// was most of the lab's time.
			if l.counted[a] && !l.store.changed[a] {
				continue
			}
			for i := l.live(a); i < a.replicas; i++ {
				l.createPod(a, l.schedule(a, nodes), startNow)
			}
			l.counted[a] = true
			delete(l.store.changed, a)
		}
	}
	// Scheduler: bind pending pods that have no node yet.
	for _, p := range l.store.sorted(l.store.onNode[""]) {
		a := l.appOf(p)
		if a == nil {
			continue
		}
		if n := l.schedule(a, nodes); n != nil {
			p.Spec.NodeName = n.Name
			p.Status.PodIP = l.podIP(n.Name)
			l.putPod(p, "")
			l.startLater(p.Namespace, p.Name)
		}
	}
	l.syncPodReadiness(nodes)
	l.flap()
	l.syncDNSSlice()
	l.observe()
}

// replace is the ReplicaSet controller after one of a's pods went away:
// the missing replicas are created and scheduled. l.mu must be held.
func (l *Lab) replace(a *app) {
	if !a.daemon && !a.static {
		nodes := l.nodes()
		for i := l.live(a); i < a.replicas; i++ {
			l.createPod(a, l.schedule(a, nodes), false)
		}
	}
	l.observeApp(a)
	if a.ns == "kube-system" && a.name == "coredns" {
		l.syncDNSSlice()
	}
}

// podIP hands out pod addresses from the node's pod CIDR (data: nothing
// dials them).
func (l *Lab) podIP(node string) string {
	return fmt.Sprintf("10.244.%d.%d", l.nodeIdx[node], 2+l.seq%250)
}

// crashes says whether a's pod crash-loops on node; l.mu must be held.
func (l *Lab) crashes(a *app, node string) bool {
	if a == nil {
		return false
	}
	for _, f := range a.crashOn {
		if !l.nodeFaultActive(node, f) {
			continue
		}
		// fail-once: only for its first 20 seconds after the kubelet came back.
		if f == FaultFailOnce && l.Clock.Now().Sub(l.vms[node].booted) > 20*time.Second {
			continue
		}
		return true
	}
	return false
}

// faulty lists, in order, the nodes whose fault kind is one of kinds.
func (l *Lab) faulty(kinds ...Fault) []string {
	var out []string
	for _, name := range l.order {
		if f := l.vms[name].fault; f != "" && slices.Contains(kinds, f) {
			out = append(out, name)
		}
	}
	return out
}

// flap restarts the flapping pods: a container that crashes and is back
// before anyone looks; l.mu must be held.
func (l *Lab) flap() {
	for _, node := range l.faulty(FaultFlapping, FaultLateDegrade) {
		f := l.vms[node].fault
		if !l.nodeFaultActive(node, f) {
			continue
		}
		if f == FaultLateDegrade && l.Clock.Now().Sub(l.vms[node].booted) < 2*time.Minute {
			continue // fine through its gate; it degrades during its soak
		}
		for _, p := range l.store.sorted(l.store.onNode[node]) {
			if p.Labels["app.kubernetes.io/name"] != "node-exporter" || len(p.Status.ContainerStatuses) == 0 {
				continue
			}
			p.Status.ContainerStatuses[0].RestartCount++
			l.putPod(p, node)
		}
	}
}

func (l *Lab) appOf(p *corev1.Pod) *app {
	return l.appIndex[p.Namespace+"/"+p.Labels["app.kubernetes.io/name"]]
}

func (l *Lab) daemonFits(a *app, n *corev1.Node) bool {
	if a.static {
		_, cp := n.Labels["node-role.kubernetes.io/control-plane"]
		return cp
	}
	if a.gpu && n.Labels["nvidia.com/gpu.present"] != "true" {
		return false
	}
	return !cpTainted(n) || a.tolerateCP
}

// cpTainted: the control plane's NoSchedule taint keeps pods off the node
// (a cluster without workers has none).
func cpTainted(n *corev1.Node) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == "node-role.kubernetes.io/control-plane" && t.Effect == corev1.TaintEffectNoSchedule {
			return true
		}
	}
	return false
}

func nodeReady(n *corev1.Node) bool { return kube.IsReady(n) }

// lateAppDue says whether a late app has appeared: once its preferred node
// is back at a new version, Ready and uncordoned (and from then on);
// l.mu must be held.
func (l *Lab) lateAppDue(a *app, nodes map[string]*corev1.Node) bool {
	if l.appeared[a.key()] {
		return true
	}
	v, n := l.vms[a.prefer], nodes[a.prefer]
	if v == nil || n == nil || v.at == v.initial || !nodeReady(n) || n.Spec.Unschedulable {
		return false
	}
	l.appeared[a.key()] = true
	if err := l.addWorkloadObjects(a); err != nil {
		return false
	}
	l.log(a.prefer, "a workload with a budget (%s, minAvailable 1) lands on the node", a.key())
	return true
}

// schedule picks a node for one more pod of a, or nil: a schedulable Ready
// node it tolerates with room, spreading the app's pods.
func (l *Lab) schedule(a *app, nodes []*corev1.Node) *corev1.Node {
	same := map[string]int{}
	for _, p := range l.store.ofApp[a] {
		same[p.Spec.NodeName]++
	}
	total := func(n *corev1.Node) int { return len(l.store.onNode[n.Name]) }
	var best *corev1.Node
	for _, n := range nodes {
		if a.pinned != "" && n.Name != a.pinned {
			continue
		}
		if n.Spec.Unschedulable || !nodeReady(n) || (cpTainted(n) && !a.tolerateCP && !(a.runner && a.pinned != "")) {
			continue
		}
		if a.prefer != "" && n.Name == a.prefer {
			return n
		}
		if a.gpu && l.freeGPUs(n) < 1 {
			continue
		}
		if best == nil || same[n.Name] < same[best.Name] || (same[n.Name] == same[best.Name] && total(n) < total(best)) {
			best = n
		}
	}
	return best
}

// freeGPUs is what n has left of its allocatable GPUs.
func (l *Lab) freeGPUs(n *corev1.Node) int64 {
	q := n.Status.Allocatable[gpu]
	free := q.Value()
	for _, p := range l.store.onNode[n.Name] {
		for _, c := range p.Spec.Containers {
			if r, ok := c.Resources.Requests[gpu]; ok {
				free -= r.Value()
			}
		}
	}
	return free
}

// createPod creates a pod of a on n (nil: Pending, unscheduled).
func (l *Lab) createPod(a *app, n *corev1.Node, startNow bool) {
	l.seq++
	var name string
	switch {
	case a.static:
		name = a.name + "-" + n.Name
	case a.daemon:
		name = fmt.Sprintf("%s-%s", a.name, strconv.FormatInt(int64(l.seq)+46656, 36))
	default:
		name = fmt.Sprintf("%s-5d8f7b9c6-%s", a.name, strconv.FormatInt(int64(l.seq)+1679616, 36))
	}
	p := l.podObject(a, n, name)
	switch {
	case n == nil:
	case startNow:
		l.runPod(p, n)
	default:
		l.startLater(p.Namespace, p.Name)
	}
	_ = l.addPod(p)
}

// podObject is a's pod called name, on n (nil: not scheduled), Pending.
func (l *Lab) podObject(a *app, n *corev1.Node, name string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: a.ns, Name: name, Labels: a.labels(), UID: l.newUID(), CreationTimestamp: l.now(),
		},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: a.name, Image: "registry.example/" + a.name + ":stable"}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodPending},
	}
	switch {
	case a.static:
		p.Annotations = map[string]string{corev1.MirrorPodAnnotationKey: "lab"}
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: n.Name, UID: n.UID, Controller: ptr.To(true)}}
	case a.daemon:
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: a.name, Controller: ptr.To(true)}}
	case a.runner:
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "actions.github.com/v1alpha1", Kind: "EphemeralRunner", Name: name, Controller: ptr.To(true)}}
		p.Labels[kube.ScaleSetLabel] = "cattle-upgrade"
		p.Spec.Containers[0].Resources.Requests = runnerRequests()
	default:
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: a.name + "-5d8f7b9c6", Controller: ptr.To(true)}}
	}
	if a.gpu && !a.daemon {
		p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{gpu: mustQty("1")}
		p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{gpu: mustQty("1")}
	}
	if a.grace > 0 {
		p.Spec.TerminationGracePeriodSeconds = ptr.To(a.grace)
	}
	if a.busyFor > 0 {
		p.Annotations = map[string]string{kube.DoNotDisrupt: "true"}
	}
	if a.volume {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "rbd", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: a.name}}})
	}
	if a.emptyDir {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	}
	if n != nil {
		p.Spec.NodeName = n.Name
		p.Status.PodIP = l.podIP(n.Name)
	}
	return p
}

// restorePods puts back the pods a saved lab had, where they were, before
// the controllers fill in what is missing: a run resumed mid-drain finds
// the pods it had not evicted yet. l.mu must be held.
func (l *Lab) restorePods() {
	for _, ps := range l.saved {
		a := l.appIndex[ps.App]
		if a == nil {
			continue
		}
		var n *corev1.Node
		if ps.Node != "" {
			if n = l.cachedNode(ps.Node); n == nil {
				continue // its node is gone: the pod went with it
			}
		}
		if a.late && !l.appeared[a.key()] {
			l.appeared[a.key()] = true
			if err := l.addWorkloadObjects(a); err != nil {
				continue
			}
		}
		p := l.podObject(a, n, ps.Name)
		switch {
		case n != nil && ps.Running:
			l.runPod(p, n)
		case n != nil:
			l.startLater(p.Namespace, p.Name) // it was starting
		}
		_ = l.addPod(p)
	}
	l.saved = nil
}

// startLater starts a scheduled pod after the pod start-up time.
func (l *Lab) startLater(ns, name string) {
	l.Clock.AfterFunc(l.opts.Durations.PodStart, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		p := l.store.all[ns+"/"+name]
		if p == nil {
			return
		}
		if n := l.cachedNode(p.Spec.NodeName); n != nil && nodeReady(n) {
			l.setPodRunning(p, n)
			if a := l.appOf(p); a != nil {
				l.observeApp(a)
				if a.ns == "kube-system" && a.name == "coredns" {
					l.syncDNSSlice()
				}
			}
		}
	})
}

// setPodRunning marks a pod started on n (see runPod) and stores it.
func (l *Lab) setPodRunning(p *corev1.Pod, n *corev1.Node) {
	l.runPod(p, n)
	l.putPod(p, p.Spec.NodeName)
}

// runPod sets a pod's status to started on n: Running and Ready, or
// crash-looping when n's health fault is active.
func (l *Lab) runPod(p *corev1.Pod, n *corev1.Node) {
	a := l.appOf(p)
	if a != nil && a.volume {
		l.attach(a, n.Name)
	}
	crash := l.crashes(a, n.Name)
	start := l.now()
	p.Status.Phase = corev1.PodRunning
	p.Status.StartTime = &start
	ready := corev1.ConditionTrue
	cs := corev1.ContainerStatus{Name: p.Spec.Containers[0].Name, Image: p.Spec.Containers[0].Image, Ready: true, Started: ptr.To(true),
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: start}}}
	if crash {
		ready = corev1.ConditionFalse
		cs.Ready, cs.Started = false, ptr.To(false)
		cs.RestartCount = 5
		cs.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 2m40s restarting failed container " + cs.Name}}
	}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{cs}
	p.Status.Conditions = []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: start},
		{Type: corev1.PodReady, Status: ready, LastTransitionTime: start},
		{Type: corev1.ContainersReady, Status: ready, LastTransitionTime: start},
	}
}

// syncPodReadiness makes pods on a NotReady node unready (the kubelet is
// gone) and restarts them when it is back. Only the nodes whose readiness
// changed since the last pass, or whose fault can crash their pods, are
// looked at.
func (l *Lab) syncPodReadiness(nodes []*corev1.Node) {
	crashy := l.faulty(FaultHealthFail, FaultRollbackFails, FaultLateFail, FaultFailOnce, FaultCrashloop)
	for _, n := range nodes {
		ready := nodeReady(n)
		if was, seen := l.synced[n.Name]; seen && was == ready && !slices.Contains(crashy, n.Name) {
			continue
		}
		l.synced[n.Name] = ready
		for _, p := range l.store.sorted(l.store.onNode[n.Name]) {
			if p.Status.Phase != corev1.PodRunning {
				continue
			}
			wasReady := podReady(p)
			crash := l.crashes(l.appOf(p), n.Name)
			switch {
			case !ready && wasReady:
				for i := range p.Status.Conditions {
					if p.Status.Conditions[i].Type == corev1.PodReady || p.Status.Conditions[i].Type == corev1.ContainersReady {
						p.Status.Conditions[i].Status = corev1.ConditionFalse
					}
				}
				l.putPod(p, n.Name)
			case ready && (!wasReady && !crash || wasReady && crash):
				l.setPodRunning(p, n)
			}
		}
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// budgetOf is the state of a's PodDisruptionBudget; l.mu must be held.
func (l *Lab) budgetOf(a *app) Budget {
	return BudgetOf(a.pdb.Spec, a.replicas, slices.Collect(maps.Values(l.store.ofApp[a])))
}

// evict is the eviction subresource: refused with 429 when the pod's
// budget allows no disruption, otherwise the pod is deleted and its
// controller replaces it. l.mu must be held.
func (l *Lab) evict(ns, name string) error {
	p := l.store.all[ns+"/"+name]
	if p == nil {
		// Not a workload of the lab (a probe): no budget covers it.
		return l.Client.Tracker().Delete(podsGVR, ns, name)
	}
	if p.DeletionTimestamp != nil {
		return nil
	}
	a := l.appOf(p)
	if a != nil && a.pdb != nil {
		b := l.budgetOf(a)
		if why := EvictionRefused(p, &b); why != "" {
			l.stats.EvictionsRefused++
			return apierrors.NewTooManyRequests(why, 10)
		}
	}
	l.stats.Evictions++
	l.terminate(p)
	if a != nil {
		l.replace(a) // the ReplicaSet does not wait for the pod to go
	}
	return nil
}

// terminate deletes a pod gracefully: it stays, terminating, for its
// grace period (30s unless its spec says), as a kubelet keeps it until
// its containers stopped, then goes. l.mu must be held.
func (l *Lab) terminate(p *corev1.Pod) {
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if g := p.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = *g
	}
	now := l.now()
	p.DeletionTimestamp, p.DeletionGracePeriodSeconds = &now, &grace
	l.putPod(p, p.Spec.NodeName)
	ns, name, uid := p.Namespace, p.Name, p.UID
	l.Clock.AfterFunc(time.Duration(grace)*time.Second, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if cur := l.store.all[ns+"/"+name]; cur != nil && cur.UID == uid {
			l.dropPod(cur)
		}
	})
}

// live counts a's pods that are not terminating (what its ReplicaSet
// counts). l.mu must be held.
func (l *Lab) live(a *app) int {
	n := 0
	for _, p := range l.store.ofApp[a] {
		if p.DeletionTimestamp == nil {
			n++
		}
	}
	return n
}

// observe updates the status of the PDBs whose pods changed since the last
// pass, and the run's safety counters; l.mu must be held.
func (l *Lab) observe() {
	for _, a := range l.apps {
		if l.store.touched[a] {
			l.observeApp(a)
		}
	}
	clear(l.store.touched)
	down := 0
	for _, name := range l.controlPlane {
		if n := l.cachedNode(name); !l.vms[name].running || n == nil || !nodeReady(n) {
			down++
		}
	}
	l.stats.MaxControlPlaneDown = max(l.stats.MaxControlPlaneDown, down)
}

// observeApp updates a's PDB status and the safety counters; l.mu must be
// held.
func (l *Lab) observeApp(a *app) {
	if a.pdb != nil {
		b := l.budgetOf(a)
		key := a.key()
		desired := b.Desired()
		switch {
		case b.Healthy < desired && !l.satisfied[key]:
			// A workload still starting up is not disrupted.
		case b.Healthy < desired && !l.violated[key]:
			l.violated[key] = true
			l.stats.PDBViolations++
			l.log("", "PDB VIOLATION: %s has %d healthy pods, needs %d", key, b.Healthy, desired)
		case b.Healthy >= desired:
			l.violated[key], l.satisfied[key] = false, true
		}
		st := policyv1.PodDisruptionBudgetStatus{
			ObservedGeneration: a.pdb.Generation, DisruptionsAllowed: int32(b.Allowed()),
			CurrentHealthy: int32(b.Healthy), DesiredHealthy: int32(desired), ExpectedPods: int32(b.Expected),
		}
		if old := a.pdb.Status; old.DisruptionsAllowed != st.DisruptionsAllowed || old.CurrentHealthy != st.CurrentHealthy || old.ExpectedPods != st.ExpectedPods || old.DesiredHealthy != st.DesiredHealthy {
			a.pdb.Status = st
			_ = l.Client.Tracker().Update(pdbsGVR, a.pdb, a.pdb.Namespace)
		}
	}
}

func (l *Lab) controlLoop() {
	if !l.pass() {
		return
	}
	// The fake clientset holds its own lock while a reactor runs, and the
	// reactors take l.mu: the recorded actions are dropped without l.mu.
	l.Client.ClearActions()
}

// pass is one pass of the simulated controllers; false once the lab is
// closed.
func (l *Lab) pass() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return false
	}
	l.reconcile()
	l.refreshResources()
	return true
}
