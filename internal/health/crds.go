package health

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
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

// storage: every CephCluster is HEALTH_OK (or HEALTH_WARN for accepted
// reasons), its status fresh, its CSI pods Running. HEALTH_ERR is critical:
// it blocks a run before any change.
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
	var o outcome
	now := g.Clock.Now()
	for _, c := range clusters {
		name := c.GetNamespace() + "/" + c.GetName()
		health, _, _ := unstructured.NestedString(c.Object, "status", "ceph", "health")
		details, _, _ := unstructured.NestedMap(c.Object, "status", "ceph", "details")
		var reasons, codes []string
		for _, k := range slices.Sorted(maps.Keys(details)) {
			if health == "HEALTH_WARN" && accept[k] {
				continue
			}
			reasons = append(reasons, k+": "+detailMessage(details[k]))
			codes = append(codes, k)
		}
		switch health {
		case "HEALTH_OK":
		case "HEALTH_WARN":
			if len(reasons) > 0 || len(details) == 0 {
				o.fail("ceph/"+name+"/HEALTH_WARN/"+strings.Join(codes, ","), "", false, "CephCluster %s is HEALTH_WARN: %s", name, orNone(strings.Join(reasons, "; ")))
			}
		default:
			o.fail("ceph/"+name+"/"+health+"/"+strings.Join(codes, ","), "", health == "HEALTH_ERR", "CephCluster %s health is %q: %s", name, orNone(health), orNone(strings.Join(reasons, "; ")))
		}
		checked, _, _ := unstructured.NestedString(c.Object, "status", "ceph", "lastChecked")
		t, err := time.Parse(time.RFC3339, checked)
		switch {
		case err != nil:
			o.fail("ceph-stale/"+name, "", false, "CephCluster %s has no valid status.ceph.lastChecked (%q)", name, checked)
		case now.Sub(t) > 2*s.CephCheckInterval.Duration:
			o.fail("ceph-stale/"+name, "", false, "CephCluster %s status is stale: last checked %s ago (interval %s)", name, now.Sub(t).Round(time.Second), s.CephCheckInterval.Duration)
		}
		// A pod that is not Running is unsettled: no need to read the others.
		pods, err := g.reader().Unsettled(ctx)
		if err != nil {
			return outcome{}, err
		}
		for _, p := range pods {
			if p.Namespace == c.GetNamespace() && strings.HasPrefix(p.Name, "csi-") && p.Status.Phase != corev1.PodRunning {
				o.fail("csi/"+p.Namespace+"/"+p.Name, p.Spec.NodeName, false, "CSI pod %s/%s is %s (node %s)", p.Namespace, p.Name, p.Status.Phase, orNone(p.Spec.NodeName))
			}
		}
	}
	return o, nil
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
				o.fail("flux/"+name, "", false, "%s: %s", name, why)
			}
		}
	}
	if installed == 0 {
		return outcome{skipped: "not installed (no Flux Kustomization or HelmRelease resource)"}, nil
	}
	sort.Slice(o.findings, func(i, j int) bool { return o.findings[i].Text < o.findings[j].Text })
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
		var o outcome
		matched := 0
		for _, u := range l.Items {
			if c.ObjectName != "" && u.GetName() != c.ObjectName {
				continue
			}
			matched++
			id := u.GetNamespace() + "/" + u.GetName()
			ok, err := prg.Eval(u.Object)
			switch {
			case err != nil:
				o.fail("custom/"+id, "", false, "%s %s: %v", c.Kind, id, err)
			case !ok:
				o.fail("custom/"+id, "", false, "%s %s: %s is false", c.Kind, id, c.Expression)
			}
		}
		if matched == 0 {
			o.fail("custom/none", "", false, "no %s matches the check's selection", c.Kind)
		}
		return o, nil
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
