// Package observe reads what each node runs, from the cluster: the kubelet
// and Talos versions its Node object reports and, where a Talos API is at
// hand, the version Talos itself answers. The versions drover plans from
// are these; the version flags and the variables file are cross-checks.
package observe

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/kube"
	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/version"
)

// Sources of an observed version.
const (
	SourceNode     = "Node object"
	SourceTalosAPI = "Talos API"
)

// TalosVersioner asks a node's Talos API which version it runs.
type TalosVersioner interface {
	NodeVersion(ctx context.Context, n config.Node) (version.Version, error)
}

// Reader reads node versions from the cluster.
type Reader struct {
	Client kubernetes.Interface
	// Talos, when set, is asked the Talos version of every Ready
	// control-plane node and, for an in-place (pets) run, of every Ready
	// node; its answer wins over the Node object's osImage.
	Talos TalosVersioner
}

var _ rollout.VersionReader = (*Reader)(nil)

// NodeVersions reads one node's versions.
func (r *Reader) NodeVersions(ctx context.Context, n plan.Node, inPlace bool) (rollout.Observed, error) {
	obj, err := r.Client.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
	if err != nil {
		return rollout.Observed{}, fmt.Errorf("read node %s: %w", n.Name, err)
	}
	return r.fromNode(ctx, n.Node, obj, inPlace)
}

func (r *Reader) fromNode(ctx context.Context, n config.Node, obj *corev1.Node, inPlace bool) (rollout.Observed, error) {
	o := rollout.Observed{Source: SourceNode}
	t, ok := kube.TalosVersion(obj.Status.NodeInfo.OSImage)
	if !ok {
		return o, fmt.Errorf("node %s reports osImage %q, not Talos (vX.Y.Z)", n.Name, obj.Status.NodeInfo.OSImage)
	}
	k, err := version.Parse(obj.Status.NodeInfo.KubeletVersion, true)
	if err != nil {
		return o, fmt.Errorf("node %s reports kubelet %q: %w", n.Name, obj.Status.NodeInfo.KubeletVersion, err)
	}
	o.Versions = version.Pair{Talos: t, Kubernetes: k}
	if r.Talos != nil && (inPlace || n.IsControlPlane()) && kube.IsReady(obj) {
		api, err := r.Talos.NodeVersion(ctx, n)
		if err != nil {
			return o, fmt.Errorf("ask the Talos API of %s (%s) its version: %w", n.Name, n.IP, err)
		}
		o.Source = SourceTalosAPI
		if api.Compare(t) != 0 {
			o.Source = fmt.Sprintf("%s (the Node object still says %s)", SourceTalosAPI, t)
		}
		o.Versions.Talos = api
	}
	return o, nil
}

// All reads the versions of every inventory node. A node without a Node
// object is missing from the result; the error is for the cluster itself
// (unreachable, forbidden) or a node that does not report a Talos version.
func (r *Reader) All(ctx context.Context, nodes []config.Node, inPlace bool) (map[string]rollout.Observed, error) {
	list, err := r.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, &AccessError{Err: err}
	}
	byName := map[string]*corev1.Node{}
	for i := range list.Items {
		byName[list.Items[i].Name] = &list.Items[i]
	}
	out := map[string]rollout.Observed{}
	for _, n := range nodes {
		obj := byName[n.Name]
		if obj == nil {
			continue
		}
		o, err := r.fromNode(ctx, n, obj, inPlace)
		if err != nil {
			return nil, err
		}
		out[n.Name] = o
	}
	return out, nil
}

// AccessError is a cluster that cannot be read: unreachable, or the
// credentials lack a permission. Nothing was changed; the CLI exits 4.
type AccessError struct {
	Endpoint string
	Err      error
}

func (e *AccessError) Error() string {
	if e.Endpoint == "" {
		e.Endpoint = "(the configured endpoint)"
	}
	switch {
	case apierrors.IsForbidden(e.Err):
		return fmt.Sprintf("the cluster at %s refuses access: %v (grant the permission, see deploy/kubernetes/apps/github-actions/runners/rbac.yaml)", e.Endpoint, e.Err)
	case apierrors.IsUnauthorized(e.Err):
		return fmt.Sprintf("the cluster at %s does not accept drover's credentials: %v", e.Endpoint, e.Err)
	}
	return fmt.Sprintf("cannot reach the cluster at %s: %v", e.Endpoint, e.Err)
}

func (e *AccessError) Unwrap() error { return e.Err }

// Claim is what the flags or the variables file say the cluster runs and
// should run. A zero From field was not claimed.
type Claim struct {
	From, To version.Pair
	// Source names where From came from, for messages ("--from-talos", "terraform/variables.tf at BASE").
	Source string
}

// Resolution is the version change the cluster really needs.
type Resolution struct {
	// From is the oldest version a node that is not yet at the target runs
	// (the run's starting point); To is the target.
	From, To version.Pair
	// Mixed says the nodes run different versions (planned node by node).
	Mixed bool
}

// MismatchError is a claim the cluster contradicts: nothing was changed.
// The CLI exits 4.
type MismatchError struct {
	Claim  string
	Source string
	// Nodes name each node that disagrees and what it runs.
	Nodes []string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("%s says the cluster runs %s, but the cluster disagrees: %s; fix the claim (or leave it out: drover reads the versions from the nodes)",
		e.Source, e.Claim, strings.Join(e.Nodes, "; "))
}

// countNodes names a few nodes and counts the rest.
func countNodes(names []string) string {
	if len(names) <= 4 {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more nodes", strings.Join(names[:3], ", "), len(names)-3)
}

// SpreadError is a cluster whose nodes are more than one minor apart.
type SpreadError struct {
	Oldest, Newest string
	Nodes          []string
}

func (e *SpreadError) Error() string {
	return fmt.Sprintf("the nodes not yet at the target run versions more than one minor apart (%s to %s: %s); bring them within one minor by hand first",
		e.Oldest, e.Newest, strings.Join(e.Nodes, "; "))
}

// Resolve decides the change from what the nodes run. Nodes already at the
// target are left out of the starting point; a claimed From that any other
// node contradicts is a *MismatchError; nodes more than one minor apart are a
// *SpreadError. With no node observed, the claim stands as it is.
//
//nolint:gocyclo // one rule per line of the doc comment above, each with its own case in the tests
func Resolve(c Claim, obs map[string]rollout.Observed) (Resolution, error) {
	res := Resolution{From: c.From, To: c.To}
	if len(obs) == 0 {
		return res, nil
	}
	names := make([]string, 0, len(obs))
	for name := range obs {
		names = append(names, name)
	}
	sort.Strings(names)
	var oldT, newT, oldK, anyK version.Version
	var behind []string
	seenT := map[version.Version]bool{}
	for _, name := range names {
		v := obs[name].Versions
		seenT[v.Talos] = true
		if anyK.IsZero() || v.Kubernetes.Compare(anyK) < 0 {
			anyK = v.Kubernetes
		}
		if plan.AtTarget(v, c.To) {
			continue
		}
		behind = append(behind, name)
		if oldT.IsZero() || v.Talos.Compare(oldT) < 0 {
			oldT = v.Talos
		}
		if newT.IsZero() || v.Talos.Compare(newT) > 0 {
			newT = v.Talos
		}
		if oldK.IsZero() || v.Kubernetes.Compare(oldK) < 0 {
			oldK = v.Kubernetes
		}
	}
	res.Mixed = len(seenT) > 1
	// Group the nodes that contradict the claim by what they run.
	groups := map[string][]string{}
	for _, name := range names {
		v := obs[name].Versions
		if !c.From.Talos.IsZero() && v.Talos.Compare(c.From.Talos) != 0 && v.Talos.Compare(c.To.Talos) != 0 {
			k := "Talos " + v.Talos.String() + " (" + obs[name].Source + ")"
			groups[k] = append(groups[k], name)
		}
		if !c.From.Kubernetes.IsZero() && v.Kubernetes.Compare(c.From.Kubernetes) != 0 && (c.To.Kubernetes.IsZero() || v.Kubernetes.Compare(c.To.Kubernetes) != 0) {
			k := "kubelet " + v.Kubernetes.String()
			groups[k] = append(groups[k], name)
		}
	}
	if len(groups) > 0 {
		var mismatched []string
		for _, k := range slices.Sorted(maps.Keys(groups)) {
			verb := " runs "
			if len(groups[k]) > 1 {
				verb = " run "
			}
			mismatched = append(mismatched, countNodes(groups[k])+verb+k)
		}
		return res, &MismatchError{Claim: c.From.String(), Source: c.Source, Nodes: mismatched}
	}
	if len(behind) > 0 && (oldT.Major != newT.Major || newT.Minor-oldT.Minor > 1) {
		var detail []string
		for _, name := range behind {
			detail = append(detail, name+" "+obs[name].Versions.Talos.String())
		}
		return res, &SpreadError{Oldest: oldT.String(), Newest: newT.String(), Nodes: detail}
	}
	if len(behind) == 0 {
		// Every node is at the target: nothing to do.
		res.From = c.To
		if c.To.Kubernetes.IsZero() {
			res.From.Kubernetes, res.To.Kubernetes = anyK, anyK
		}
		return res, nil
	}
	res.From = version.Pair{Talos: oldT, Kubernetes: oldK}
	if res.To.Kubernetes.IsZero() {
		res.To.Kubernetes = oldK
	}
	return res, nil
}
