package lab

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/prox-ops/drover/internal/health"
)

// reader is the health gate's view of the lab: what a run's informer cache
// is on a real cluster, served from the lab's own index. It hands out
// copies, taken under the lab's lock, of the pods asked for only.
type reader struct{ lab *Lab }

var _ health.Reader = reader{}

// Reader returns the health gate's reader over the lab.
func (l *Lab) Reader() health.Reader { return reader{lab: l} }

func copies(ps []*corev1.Pod) []*corev1.Pod {
	out := make([]*corev1.Pod, len(ps))
	for i, p := range ps {
		out[i] = p.DeepCopy()
	}
	return out
}

func (r reader) Node(_ context.Context, name string) (*corev1.Node, error) {
	l := r.lab
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.cachedNode(name)
	if n == nil {
		return nil, apierrors.NewNotFound(nodesGVR.GroupResource(), name)
	}
	return n.DeepCopy(), nil
}

func (r reader) Nodes(context.Context) ([]*corev1.Node, error) {
	l := r.lab
	l.mu.Lock()
	defer l.mu.Unlock()
	ns := l.nodes()
	out := make([]*corev1.Node, len(ns))
	for i, n := range ns {
		out[i] = n.DeepCopy()
	}
	return out, nil
}

func (r reader) PodsOn(_ context.Context, node string) ([]*corev1.Pod, error) {
	l := r.lab
	l.mu.Lock()
	defer l.mu.Unlock()
	if node == "" {
		return copies(append(l.store.sorted(l.store.all), l.probesOn("")...)), nil
	}
	return copies(append(l.store.sorted(l.store.onNode[node]), l.probesOn(node)...)), nil
}

func (r reader) PodsIn(_ context.Context, ns string, sel labels.Selector) ([]*corev1.Pod, error) {
	l := r.lab
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*corev1.Pod
	for _, p := range l.store.sorted(l.store.inNS[ns]) {
		if sel.Matches(labels.Set(p.Labels)) {
			out = append(out, p.DeepCopy())
		}
	}
	return out, nil
}

func (r reader) Unsettled(context.Context) ([]*corev1.Pod, error) {
	l := r.lab
	l.mu.Lock()
	defer l.mu.Unlock()
	return copies(l.store.sorted(l.store.unsettled)), nil
}
