package health

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/pager"
)

// Reader is what the checks read of the cluster's nodes and pods. The
// objects it returns are shared: a check never changes them.
//
// A run reads through a Cache (shared informers: one watch per kind for
// the whole run, pods indexed by node), so a gate after a node costs in
// proportion to that node's pods and to the pods that are not settled,
// whatever the size of the cluster. A one-shot `drover health` reads
// through Lists (paginated lists). The lab serves its own index.
type Reader interface {
	Node(ctx context.Context, name string) (*corev1.Node, error)
	Nodes(ctx context.Context) ([]*corev1.Node, error)
	// PodsOn lists the pods bound to node; "" lists every pod.
	PodsOn(ctx context.Context, node string) ([]*corev1.Pod, error)
	// PodsIn lists the pods of namespace that sel matches.
	PodsIn(ctx context.Context, namespace string, sel labels.Selector) ([]*corev1.Pod, error)
	// Unsettled lists every pod that is not Running and Ready: Pending,
	// starting, crashing or finished.
	Unsettled(ctx context.Context) ([]*corev1.Pod, error)
}

// Settled says whether a pod is Running and Ready: the pods the
// cluster-wide rules (Pending past the grace, critical pods not Ready)
// never need to look at.
func Settled(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodRunning && podReady(p) && p.DeletionTimestamp == nil
}

// pageSize bounds one page of a paginated list.
const pageSize = 500

// Lists reads with paginated lists from the API server: one-shot use.
type Lists struct{ Client kubernetes.Interface }

var _ Reader = Lists{}

// Node gets one node.
func (l Lists) Node(ctx context.Context, name string) (*corev1.Node, error) {
	return l.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
}

// Nodes lists every node, a page at a time.
func (l Lists) Nodes(ctx context.Context) ([]*corev1.Node, error) {
	var out []*corev1.Node
	p := pager.New(func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
		return l.Client.CoreV1().Nodes().List(ctx, opts)
	})
	p.PageSize = pageSize
	err := p.EachListItem(ctx, metav1.ListOptions{}, func(obj runtime.Object) error {
		out = append(out, obj.(*corev1.Node))
		return nil
	})
	return out, err
}

func (l Lists) pods(ctx context.Context, ns string, opts metav1.ListOptions, keep func(*corev1.Pod) bool) ([]*corev1.Pod, error) {
	var out []*corev1.Pod
	p := pager.New(func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
		return l.Client.CoreV1().Pods(ns).List(ctx, opts)
	})
	p.PageSize = pageSize
	err := p.EachListItem(ctx, opts, func(obj runtime.Object) error {
		if pod := obj.(*corev1.Pod); keep == nil || keep(pod) {
			out = append(out, pod)
		}
		return nil
	})
	return out, err
}

// PodsOn lists the pods on node (every pod for ""), a page at a time.
func (l Lists) PodsOn(ctx context.Context, node string) ([]*corev1.Pod, error) {
	opts := metav1.ListOptions{}
	if node != "" {
		opts.FieldSelector = "spec.nodeName=" + node
	}
	return l.pods(ctx, metav1.NamespaceAll, opts, nil)
}

// PodsIn lists the pods of a namespace that sel matches.
func (l Lists) PodsIn(ctx context.Context, ns string, sel labels.Selector) ([]*corev1.Pod, error) {
	return l.pods(ctx, ns, metav1.ListOptions{LabelSelector: sel.String()}, nil)
}

// Unsettled lists every pod, a page at a time, and keeps the unsettled.
func (l Lists) Unsettled(ctx context.Context) ([]*corev1.Pod, error) {
	return l.pods(ctx, metav1.NamespaceAll, metav1.ListOptions{}, func(p *corev1.Pod) bool { return !Settled(p) })
}

// Index names of the Cache's pod informer.
const (
	indexNode      = "node"
	indexUnsettled = "unsettled"
)

// Cache reads nodes and pods through shared informers started once for a
// run. Pods are indexed by node and by whether they are settled, and kept
// slim (what the checks read: no spec beyond the node and containers'
// names, no managed fields or annotations), so the cache of a large
// cluster stays small.
type Cache struct {
	factory informers.SharedInformerFactory
	nodes   cache.SharedIndexInformer
	pods    cache.SharedIndexInformer
}

var _ Reader = (*Cache)(nil)

// NewCache prepares the informers; Start starts them.
func NewCache(client kubernetes.Interface) *Cache {
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(slim))
	c := &Cache{factory: f, nodes: f.Core().V1().Nodes().Informer(), pods: f.Core().V1().Pods().Informer()}
	_ = c.pods.AddIndexers(cache.Indexers{
		indexNode: func(obj any) ([]string, error) {
			return []string{obj.(*corev1.Pod).Spec.NodeName}, nil
		},
		indexUnsettled: func(obj any) ([]string, error) {
			if Settled(obj.(*corev1.Pod)) {
				return nil, nil
			}
			return []string{"yes"}, nil
		},
	})
	return c
}

// Start starts the informers, which stop with ctx, and waits up to
// timeout until their caches hold the cluster.
func (c *Cache) Start(ctx context.Context, timeout time.Duration) error {
	c.factory.Start(ctx.Done())
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for typ, ok := range c.factory.WaitForCacheSync(wctx.Done()) {
		if !ok {
			return fmt.Errorf("the %v cache did not fill within %s: may drover list and watch nodes and pods? (drover access)", typ, timeout)
		}
	}
	return nil
}

// slim drops what no check reads, before an object enters the cache.
func slim(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
			Namespace: o.Namespace, Name: o.Name, UID: o.UID, Labels: o.Labels, ResourceVersion: o.ResourceVersion,
			CreationTimestamp: o.CreationTimestamp, DeletionTimestamp: o.DeletionTimestamp, OwnerReferences: o.OwnerReferences,
		}}
		p.Spec.NodeName = o.Spec.NodeName
		for _, ct := range o.Spec.Containers {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: ct.Name})
		}
		p.Status = corev1.PodStatus{
			Phase: o.Status.Phase, Reason: o.Status.Reason, PodIP: o.Status.PodIP, Conditions: o.Status.Conditions,
			ContainerStatuses: o.Status.ContainerStatuses, InitContainerStatuses: o.Status.InitContainerStatuses,
		}
		return p, nil
	case *corev1.Node:
		o.ManagedFields = nil
		o.Status.Images = nil
		return o, nil
	}
	return obj, nil
}

// Node reads one node from the cache.
func (c *Cache) Node(_ context.Context, name string) (*corev1.Node, error) {
	obj, ok, err := c.nodes.GetIndexer().GetByKey(name)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("node %q not found", name)
	}
	return obj.(*corev1.Node), nil
}

// Nodes lists the cached nodes.
func (c *Cache) Nodes(context.Context) ([]*corev1.Node, error) {
	items := c.nodes.GetIndexer().List()
	out := make([]*corev1.Node, len(items))
	for i, o := range items {
		out[i] = o.(*corev1.Node)
	}
	return out, nil
}

func podsOf(items []any) []*corev1.Pod {
	out := make([]*corev1.Pod, len(items))
	for i, o := range items {
		out[i] = o.(*corev1.Pod)
	}
	return out
}

// PodsOn reads a node's pods from the index (every pod for "").
func (c *Cache) PodsOn(_ context.Context, node string) ([]*corev1.Pod, error) {
	if node == "" {
		return podsOf(c.pods.GetIndexer().List()), nil
	}
	items, err := c.pods.GetIndexer().ByIndex(indexNode, node)
	return podsOf(items), err
}

// PodsIn reads a namespace's pods from the index, keeping what sel matches.
func (c *Cache) PodsIn(_ context.Context, ns string, sel labels.Selector) ([]*corev1.Pod, error) {
	items, err := c.pods.GetIndexer().ByIndex(cache.NamespaceIndex, ns)
	var out []*corev1.Pod
	for _, p := range podsOf(items) {
		if sel.Matches(labels.Set(p.Labels)) {
			out = append(out, p)
		}
	}
	return out, err
}

// Unsettled reads the unsettled pods from their index.
func (c *Cache) Unsettled(context.Context) ([]*corev1.Pod, error) {
	items, err := c.pods.GetIndexer().ByIndex(indexUnsettled, "yes")
	return podsOf(items), err
}
