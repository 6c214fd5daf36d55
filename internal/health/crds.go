package health

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"

	"github.com/prox-ops/drover/internal/celcheck"
	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/rollout"
)

// The custom resources the checks read.
var (
	CephClusterGVR   = schema.GroupVersionResource{Group: "ceph.rook.io", Version: "v1", Resource: "cephclusters"}
	KustomizationGVR = schema.GroupVersionResource{Group: "kustomize.toolkit.fluxcd.io", Version: "v1", Resource: "kustomizations"}
	HelmReleaseGVR   = schema.GroupVersionResource{Group: "helm.toolkit.fluxcd.io", Version: "v2", Resource: "helmreleases"}
)

// errNotInstalled: the API server does not serve the resource.
var errNotInstalled = errors.New("not installed")

// list lists a custom resource; a resource the server does not serve is
// errNotInstalled, not a failure.
func (g *Gate) list(ctx context.Context, gvr schema.GroupVersionResource, ns string) ([]unstructured.Unstructured, error) {
	if g.Dynamic == nil {
		return nil, errNotInstalled
	}
	l, err := g.Dynamic.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			return nil, errNotInstalled
		}
		return nil, fmt.Errorf("list %s: %w", gvr.Resource, err)
	}
	return l.Items, nil
}

func (g *Gate) storage(ctx context.Context, _ rollout.GateInput) (outcome, error) {
	s := g.settings()
	clusters, err := g.list(ctx, CephClusterGVR, "")
	if errors.Is(err, errNotInstalled) {
		return outcome{skipped: "not installed (no CephCluster resource)"}, nil
	}
	if err != nil {
		return outcome{}, err
	}
	if len(clusters) == 0 {
		return outcome{skipped: "no CephCluster"}, nil
	}
	accept := map[string]bool{}
	for _, r := range s.CephAcceptWarn {
		accept[r] = true
	}
	var d []string
	now := g.Clock.Now()
	for _, c := range clusters {
		name := c.GetNamespace() + "/" + c.GetName()
		health, _, _ := unstructured.NestedString(c.Object, "status", "ceph", "health")
		details, _, _ := unstructured.NestedMap(c.Object, "status", "ceph", "details")
		switch health {
		case "HEALTH_OK":
		case "HEALTH_WARN":
			var reasons []string
			for k := range details {
				if !accept[k] {
					reasons = append(reasons, k+": "+detailMessage(details[k]))
				}
			}
			sort.Strings(reasons)
			if len(reasons) > 0 || len(details) == 0 {
				d = append(d, fmt.Sprintf("CephCluster %s is HEALTH_WARN: %s", name, orNone(strings.Join(reasons, "; "))))
			}
		default:
			d = append(d, fmt.Sprintf("CephCluster %s health is %q", name, orNone(health)))
		}
		checked, _, _ := unstructured.NestedString(c.Object, "status", "ceph", "lastChecked")
		t, err := time.Parse(time.RFC3339, checked)
		switch {
		case err != nil:
			d = append(d, fmt.Sprintf("CephCluster %s has no valid status.ceph.lastChecked (%q)", name, checked))
		case now.Sub(t) > 2*s.CephCheckInterval.Duration:
			d = append(d, fmt.Sprintf("CephCluster %s status is stale: last checked %s ago (interval %s)", name, now.Sub(t).Round(time.Second), s.CephCheckInterval.Duration))
		}
		pods, err := g.Client.CoreV1().Pods(c.GetNamespace()).List(ctx, metav1.ListOptions{})
		if err != nil {
			return outcome{}, err
		}
		for _, p := range pods.Items {
			if strings.HasPrefix(p.Name, "csi-") && p.Status.Phase != corev1.PodRunning {
				d = append(d, fmt.Sprintf("CSI pod %s/%s is %s (node %s)", p.Namespace, p.Name, p.Status.Phase, orNone(p.Spec.NodeName)))
			}
		}
	}
	return outcome{diags: d}, nil
}

func detailMessage(v any) string {
	if m, ok := v.(map[string]any); ok {
		if msg, ok := m["message"].(string); ok {
			return msg
		}
	}
	return fmt.Sprint(v)
}

// flux: every Kustomization and HelmRelease is Current by kstatus and
// Ready=True at its current generation; suspended ones are noted.
func (g *Gate) flux(ctx context.Context, _ rollout.GateInput) (outcome, error) {
	var o outcome
	installed := 0
	for _, gvr := range []schema.GroupVersionResource{KustomizationGVR, HelmReleaseGVR} {
		items, err := g.list(ctx, gvr, "")
		if errors.Is(err, errNotInstalled) {
			continue
		}
		if err != nil {
			return outcome{}, err
		}
		installed++
		for i := range items {
			u := &items[i]
			name := fmt.Sprintf("%s %s/%s", u.GetKind(), u.GetNamespace(), u.GetName())
			if susp, _, _ := unstructured.NestedBool(u.Object, "spec", "suspend"); susp {
				o.notes = append(o.notes, name+" is suspended")
				continue
			}
			if why := fluxNotReady(u); why != "" {
				o.diags = append(o.diags, name+": "+why)
			}
		}
	}
	if installed == 0 {
		return outcome{skipped: "not installed (no Flux Kustomization or HelmRelease resource)"}, nil
	}
	sort.Strings(o.diags)
	return o, nil
}

func fluxNotReady(u *unstructured.Unstructured) string {
	res, err := kstatus.Compute(u)
	if err != nil {
		return "status cannot be read: " + err.Error()
	}
	gen := u.GetGeneration()
	observed, _, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	ready, msg := "", ""
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Ready" {
			ready, _ = m["status"].(string)
			msg, _ = m["message"].(string)
		}
	}
	switch {
	case observed != gen:
		return fmt.Sprintf("not reconciled at generation %d yet (observed %d)", gen, observed)
	case ready != "True":
		return fmt.Sprintf("Ready=%s: %s", orNone(ready), msg)
	case res.Status != kstatus.CurrentStatus:
		return fmt.Sprintf("%s: %s", res.Status, res.Message)
	}
	return ""
}

// custom runs a configured CEL check over every selected object.
func (g *Gate) custom(c config.CustomCheck) func(ctx context.Context, in rollout.GateInput) (outcome, error) {
	return func(ctx context.Context, _ rollout.GateInput) (outcome, error) {
		prg, err := celcheck.Compile(c.Expression)
		if err != nil {
			return outcome{}, err
		}
		gvr, err := g.resourceFor(c.APIVersion, c.Kind)
		if errors.Is(err, errNotInstalled) {
			return outcome{skipped: fmt.Sprintf("not installed (%s %s)", c.APIVersion, c.Kind)}, nil
		}
		if err != nil {
			return outcome{}, err
		}
		if g.Dynamic == nil {
			return outcome{skipped: "no dynamic client"}, nil
		}
		opts := metav1.ListOptions{LabelSelector: c.LabelSelector}
		l, err := g.Dynamic.Resource(gvr).Namespace(c.Namespace).List(ctx, opts)
		if err != nil {
			return outcome{}, err
		}
		var d []string
		matched := 0
		for _, u := range l.Items {
			if c.ObjectName != "" && u.GetName() != c.ObjectName {
				continue
			}
			matched++
			ok, err := prg.Eval(u.Object)
			switch {
			case err != nil:
				d = append(d, fmt.Sprintf("%s %s/%s: %v", c.Kind, u.GetNamespace(), u.GetName(), err))
			case !ok:
				d = append(d, fmt.Sprintf("%s %s/%s: %s is false", c.Kind, u.GetNamespace(), u.GetName(), c.Expression))
			}
		}
		if matched == 0 {
			d = append(d, fmt.Sprintf("no %s matches the check's selection", c.Kind))
		}
		return outcome{diags: d}, nil
	}
}

// resourceFor finds the resource of apiVersion/kind through discovery.
func (g *Gate) resourceFor(apiVersion, kind string) (schema.GroupVersionResource, error) {
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return schema.GroupVersionResource{}, err
	}
	list, err := g.Client.Discovery().ServerResourcesForGroupVersion(apiVersion)
	if err != nil {
		if apierrors.IsNotFound(err) {
			return schema.GroupVersionResource{}, errNotInstalled
		}
		return schema.GroupVersionResource{}, err
	}
	for _, r := range list.APIResources {
		if r.Kind == kind && !strings.Contains(r.Name, "/") {
			return gv.WithResource(r.Name), nil
		}
	}
	return schema.GroupVersionResource{}, errNotInstalled
}
