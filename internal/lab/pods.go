package lab

import (
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/prox-ops/drover/internal/health"
)

// podStore is the lab's own copy of its workload pods, indexed by node and
// by app. Every write goes to the fake API too (addPod, putPod, dropPod),
// so drover reads what the lab holds; the simulated controllers read the
// index instead of copying every pod of the cluster out of the API on each
// pass, which is what made a large lab slow (see docs/development.md, Performance
// section).
type podStore struct {
	all    map[string]*corev1.Pod            // namespace/name
	onNode map[string]map[string]*corev1.Pod // node ("" = not scheduled) -> namespace/name
	ofApp  map[*app]map[string]*corev1.Pod
	inNS   map[string]map[string]*corev1.Pod
	// unsettled are the pods that are not Running and Ready.
	unsettled map[string]*corev1.Pod
	// touched are the apps whose pods changed since the last observe.
	touched map[*app]bool
	// changed are the apps whose pods changed since the controllers last
	// counted their replicas (reconcile clears it, app by app).
	changed map[*app]bool
}

func newPodStore() podStore {
	return podStore{all: map[string]*corev1.Pod{}, onNode: map[string]map[string]*corev1.Pod{}, ofApp: map[*app]map[string]*corev1.Pod{}, inNS: map[string]map[string]*corev1.Pod{}, unsettled: map[string]*corev1.Pod{}, touched: map[*app]bool{}, changed: map[*app]bool{}}
}

func podKey(p *corev1.Pod) string { return p.Namespace + "/" + p.Name }

// sorted returns the pods of an index entry by namespace/name.
func (s *podStore) sorted(m map[string]*corev1.Pod) []*corev1.Pod {
	out := make([]*corev1.Pod, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, m[k])
	}
	return out
}

func put(idx map[string]map[string]*corev1.Pod, at, key string, p *corev1.Pod) {
	m := idx[at]
	if m == nil {
		m = map[string]*corev1.Pod{}
		idx[at] = m
	}
	m[key] = p
}

func (s *podStore) index(p *corev1.Pod, a *app) {
	key := podKey(p)
	s.all[key] = p
	put(s.onNode, p.Spec.NodeName, key, p)
	put(s.inNS, p.Namespace, key, p)
	if a != nil {
		s.touched[a], s.changed[a] = true, true
		m := s.ofApp[a]
		if m == nil {
			m = map[string]*corev1.Pod{}
			s.ofApp[a] = m
		}
		m[key] = p
	}
	if health.Settled(p) {
		delete(s.unsettled, key)
	} else {
		s.unsettled[key] = p
	}
}

func (s *podStore) unindex(p *corev1.Pod, node string, a *app) {
	key := podKey(p)
	delete(s.all, key)
	delete(s.onNode[node], key)
	if len(s.onNode[node]) == 0 {
		delete(s.onNode, node)
	}
	if a != nil {
		s.touched[a], s.changed[a] = true, true
		delete(s.ofApp[a], key)
	}
	delete(s.inNS[p.Namespace], key)
	delete(s.unsettled, key)
}

// addPod stores a new pod of the lab; l.mu must be held.
func (l *Lab) addPod(p *corev1.Pod) error {
	if err := l.Client.Tracker().Add(p); err != nil {
		return err
	}
	l.store.index(p, l.appOf(p))
	return nil
}

// putPod stores a changed pod that was on prevNode; l.mu must be held.
func (l *Lab) putPod(p *corev1.Pod, prevNode string) {
	_ = l.Client.Tracker().Update(podsGVR, p, p.Namespace)
	a := l.appOf(p)
	if prevNode != p.Spec.NodeName {
		l.store.unindex(p, prevNode, a)
	}
	l.store.index(p, a)
}

// dropPod deletes a pod of the lab; l.mu must be held.
func (l *Lab) dropPod(p *corev1.Pod) {
	_ = l.Client.Tracker().Delete(podsGVR, p.Namespace, p.Name)
	a := l.appOf(p)
	l.store.unindex(p, p.Spec.NodeName, a)
	if a != nil && a.volume && p.Spec.NodeName != "" {
		l.detachLater(a, p.Spec.NodeName)
	}
}

// trackerPods lists every pod the fake API holds in ns (all namespaces for
// ""), workloads and probes alike; l.mu must be held.
func (l *Lab) trackerPods(ns string) []*corev1.Pod {
	obj, err := l.Client.Tracker().List(podsGVR, podsGVK, ns)
	if err != nil {
		return nil
	}
	list := obj.(*corev1.PodList)
	out := make([]*corev1.Pod, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
	}
	slices.SortFunc(out, func(a, b *corev1.Pod) int {
		if a.Namespace != b.Namespace {
			return strings.Compare(a.Namespace, b.Namespace)
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

// probesOn returns the probe pods on node; l.mu must be held.
func (l *Lab) probesOn(node string) []*corev1.Pod {
	var out []*corev1.Pod
	for _, key := range slices.Sorted(maps.Keys(l.probes)) {
		ns, name, _ := strings.Cut(key, "/")
		obj, err := l.Client.Tracker().Get(podsGVR, ns, name)
		if err != nil {
			delete(l.probes, key) // deleted by the gate
			continue
		}
		if p := obj.(*corev1.Pod); p.Spec.NodeName == node {
			out = append(out, p)
		}
	}
	return out
}

var nodeGVK = schema.GroupVersionKind{Version: "v1", Kind: "Node"}

// nodes returns the Node objects, sorted by name, from a cache where each
// write to a Node replaces that Node only; the caller must not change
// them. l.mu must be held.
func (l *Lab) nodes() []*corev1.Node {
	if l.nodeMap == nil {
		obj, err := l.Client.Tracker().List(nodesGVR, nodeGVK, "")
		if err != nil {
			return nil
		}
		list := obj.(*corev1.NodeList)
		l.nodeMap = make(map[string]*corev1.Node, len(list.Items))
		for i := range list.Items {
			l.nodeMap[list.Items[i].Name] = &list.Items[i]
		}
		l.nodeCache = nil
	}
	stale := l.staleNodes
	l.staleNodes = nil
	for _, name := range slices.Sorted(maps.Keys(stale)) {
		obj, err := l.Client.Tracker().Get(nodesGVR, "", name)
		_, had := l.nodeMap[name]
		if err != nil {
			delete(l.nodeMap, name)
			if had {
				l.nodeCache = nil
			}
			continue
		}
		l.nodeMap[name] = obj.(*corev1.Node)
		if !had {
			l.nodeCache = nil
			continue
		}
		if i, ok := slices.BinarySearchFunc(l.nodeCache, name, func(n *corev1.Node, name string) int { return strings.Compare(n.Name, name) }); ok {
			l.nodeCache[i] = l.nodeMap[name]
		}
	}
	if l.nodeCache == nil {
		l.nodeCache = make([]*corev1.Node, 0, len(l.nodeMap))
		for _, name := range slices.Sorted(maps.Keys(l.nodeMap)) {
			l.nodeCache = append(l.nodeCache, l.nodeMap[name])
		}
	}
	return l.nodeCache
}

// cachedNode is a Node from the cache, or nil; l.mu must be held.
func (l *Lab) cachedNode(name string) *corev1.Node {
	l.nodes()
	return l.nodeMap[name]
}

// nodeChanged marks a Node to be read again (after it was written); l.mu
// must be held.
func (l *Lab) nodeChanged(name string) {
	if l.staleNodes == nil {
		l.staleNodes = map[string]bool{}
	}
	l.staleNodes[name] = true
}

// putNode stores a Node the lab changed; l.mu must be held.
func (l *Lab) putNode(n *corev1.Node) {
	_ = l.Client.Tracker().Update(nodesGVR, n, "")
	l.nodeChanged(n.Name)
}

// addNode stores a new Node; l.mu must be held.
func (l *Lab) addNode(n *corev1.Node) error {
	if err := l.Client.Tracker().Add(n); err != nil {
		return err
	}
	l.nodeChanged(n.Name)
	return nil
}

func objectName(obj runtime.Object) string {
	if m, err := meta.Accessor(obj); err == nil {
		return m.GetName()
	}
	return ""
}
