package lab

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/prox-ops/drover/internal/health"
)

// The lab serves what the health checks read beyond core Kubernetes: a
// Rook CephCluster, Flux Kustomizations and HelmReleases (through a
// dynamic fake client), the kube-dns Service with its EndpointSlice, and
// probe pods that its simulated kubelets run.

var (
	slicesGVR = schema.GroupVersionResource{Group: "discovery.k8s.io", Version: "v1", Resource: "endpointslices"}
)

func (l *Lab) newDynamic() {
	l.Dynamic = dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		health.CephClusterGVR:   "CephClusterList",
		health.KustomizationGVR: "KustomizationList",
		health.HelmReleaseGVR:   "HelmReleaseList",
	})
	l.Client.Resources = append(l.Client.Resources,
		&metav1.APIResourceList{GroupVersion: "ceph.rook.io/v1", APIResources: []metav1.APIResource{{Name: "cephclusters", Kind: "CephCluster", Namespaced: true}}},
		&metav1.APIResourceList{GroupVersion: "kustomize.toolkit.fluxcd.io/v1", APIResources: []metav1.APIResource{{Name: "kustomizations", Kind: "Kustomization", Namespaced: true}}},
		&metav1.APIResourceList{GroupVersion: "helm.toolkit.fluxcd.io/v2", APIResources: []metav1.APIResource{{Name: "helmreleases", Kind: "HelmRelease", Namespaced: true}}},
	)
}

func fluxObject(apiVersion, kind, ns, name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": apiVersion, "kind": kind,
		"metadata": map[string]any{"namespace": ns, "name": name, "generation": int64(1)},
		"spec":     map[string]any{"interval": "10m"},
	}}
	return u
}

// seedResources creates the custom resources and kube-dns.
func (l *Lab) seedResources() error {
	t := l.Client.Tracker()
	if err := t.Add(&corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "kube-dns", Labels: map[string]string{"k8s-app": "kube-dns"}},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"k8s-app": "kube-dns"}, ClusterIP: "10.96.0.10", Ports: []corev1.ServicePort{{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}}},
	}); err != nil {
		return err
	}
	ceph := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "ceph.rook.io/v1", "kind": "CephCluster",
		"metadata": map[string]any{"namespace": "rook-ceph", "name": "rook-ceph", "generation": int64(1)},
	}}
	objs := []*unstructured.Unstructured{ceph}
	for _, n := range []string{"flux-system", "infrastructure", "apps"} {
		objs = append(objs, fluxObject("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "flux-system", n))
	}
	for _, r := range [][2]string{{"kube-system", "cilium"}, {"rook-ceph", "rook-ceph"}, {"ai", "ollama"}} {
		objs = append(objs, fluxObject("helm.toolkit.fluxcd.io/v2", "HelmRelease", r[0], r[1]))
	}
	gvr := map[string]schema.GroupVersionResource{"CephCluster": health.CephClusterGVR, "Kustomization": health.KustomizationGVR, "HelmRelease": health.HelmReleaseGVR}
	dt := l.Dynamic.Tracker()
	for _, o := range objs {
		if err := dt.Create(gvr[o.GetKind()], o, o.GetNamespace()); err != nil {
			return err
		}
	}
	l.refreshResources()
	return nil
}

// faultActive reports whether a node's fault of this kind shows: once the
// node left its starting version, or from the start when the lab was asked
// to (drover health --lab). l.mu must be held.
func (l *Lab) faultActive(kind Fault) (string, bool) {
	for _, name := range l.order {
		v := l.vms[name]
		if v.fault == kind && (v.at != v.initial || l.opts.FaultsNow) {
			return name, true
		}
	}
	return "", false
}

func (l *Lab) nodeFaultActive(node string, kind Fault) bool {
	v := l.vms[node]
	return v != nil && v.fault == kind && (v.at != v.initial || l.opts.FaultsNow)
}

// refreshResources is Rook's and Flux's controllers; l.mu must be held (or
// the lab not yet shared).
func (l *Lab) refreshResources() {
	dt := l.Dynamic.Tracker()
	now := l.Clock.Now().UTC().Format(time.RFC3339)
	if obj, err := dt.Get(health.CephClusterGVR, "rook-ceph", "rook-ceph"); err == nil {
		u := obj.(*unstructured.Unstructured)
		st := map[string]any{"health": "HEALTH_OK", "lastChecked": now, "details": map[string]any{}}
		if node, bad := l.faultActive(FaultCephWarn); bad {
			st["health"] = "HEALTH_WARN"
			st["details"] = map[string]any{"OSD_DOWN": map[string]any{"message": fmt.Sprintf("1 osds down (osd.3 on %s)", node), "severity": "HEALTH_WARN"}}
		}
		_ = unstructured.SetNestedField(u.Object, st, "status", "ceph")
		_ = unstructured.SetNestedField(u.Object, "Ready", "status", "phase")
		_ = dt.Update(health.CephClusterGVR, u, "rook-ceph")
	}
	_, fluxBroken := l.faultActive(FaultFluxFailed)
	for _, gvr := range []schema.GroupVersionResource{health.KustomizationGVR, health.HelmReleaseGVR} {
		obj, err := dt.List(gvr, schema.GroupVersionKind{Group: gvr.Group, Version: gvr.Version, Kind: map[string]string{"kustomizations": "Kustomization", "helmreleases": "HelmRelease"}[gvr.Resource]}, "")
		if err != nil {
			continue
		}
		list, ok := obj.(*unstructured.UnstructuredList)
		if !ok {
			continue
		}
		for i := range list.Items {
			u := &list.Items[i]
			cond := map[string]any{"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded", "message": "Applied revision: main@sha1:4f2a9c1", "lastTransitionTime": now}
			if fluxBroken && u.GetKind() == "HelmRelease" && u.GetName() == "ollama" {
				cond = map[string]any{"type": "Ready", "status": "False", "reason": "InstallFailed", "message": "Helm install failed for release ai/ollama: context deadline exceeded", "lastTransitionTime": now}
			}
			_ = unstructured.SetNestedField(u.Object, int64(1), "status", "observedGeneration")
			_ = unstructured.SetNestedSlice(u.Object, []any{cond}, "status", "conditions")
			_ = dt.Update(gvr, u, u.GetNamespace())
		}
	}
}

// syncDNSSlice keeps the kube-dns EndpointSlice in step with the CoreDNS
// pods; l.mu must be held.
func (l *Lab) syncDNSSlice() {
	var pods []*corev1.Pod
	if a := l.appIndex["kube-system/coredns"]; a != nil {
		pods = l.store.sorted(l.store.ofApp[a])
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "kube-system", Name: "kube-dns-lab", Labels: map[string]string{discoveryv1.LabelServiceName: "kube-dns"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("dns"), Port: ptr.To(int32(53)), Protocol: ptr.To(corev1.ProtocolUDP)}},
	}
	for _, p := range pods {
		if p.Namespace != "kube-system" || p.Labels["k8s-app"] != "kube-dns" || p.Status.PodIP == "" || p.DeletionTimestamp != nil {
			continue
		}
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
			Addresses: []string{p.Status.PodIP}, NodeName: ptr.To(p.Spec.NodeName),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(podReady(p) && p.Status.Phase == corev1.PodRunning)},
		})
	}
	t := l.Client.Tracker()
	if err := t.Update(slicesGVR, slice, "kube-system"); err != nil {
		_ = t.Create(slicesGVR, slice, "kube-system")
	}
}

// installProbes makes the simulated kubelets run drover's probe pods: a
// probe finishes a few seconds after it is created, Succeeded or Failed as
// the node and the cluster allow.
func (l *Lab) installProbes() {
	l.Client.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "" {
			return false, nil, nil
		}
		p, ok := a.(k8stesting.CreateAction).GetObject().(*corev1.Pod)
		if !ok || p.Labels[health.ProbeLabel] == "" {
			return false, nil, nil
		}
		p = p.DeepCopy()
		p.CreationTimestamp = l.now()
		p.Status.Phase = corev1.PodPending
		if err := l.Client.Tracker().Create(podsGVR, p, p.Namespace); err != nil {
			return true, nil, err
		}
		ns, name := p.Namespace, p.Name
		l.mu.Lock()
		l.probes[ns+"/"+name] = true
		l.mu.Unlock()
		l.Clock.AfterFunc(3*time.Second, func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.finishProbe(ns, name)
		})
		return true, p, nil
	})
}

// scheduleProbe is the scheduler for a probe left to it (the Scheduling
// check): the node its required affinity names, if that node is Ready,
// schedulable and its taints tolerated; without affinity any such worker.
// A pod it cannot place stays Pending with the scheduler's reason.
func (l *Lab) scheduleProbe(p *corev1.Pod) {
	want := ""
	if a := p.Spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		for _, t := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
			for _, e := range t.MatchExpressions {
				if e.Key == corev1.LabelHostname && len(e.Values) > 0 {
					want = e.Values[0]
				}
			}
		}
	}
	var ok []string
	nodes := l.nodes()
	for _, n := range nodes {
		if (want == "" || n.Name == want) && nodeReady(n) && !n.Spec.Unschedulable && (!cpTainted(n) || want != "") {
			ok = append(ok, n.Name)
		}
	}
	if len(ok) == 0 {
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable",
			Message: fmt.Sprintf("0/%d nodes are available: the node the affinity asks for is not Ready, or is cordoned", len(nodes))}}
		return
	}
	p.Spec.NodeName = ok[0]
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}}
}

func (l *Lab) finishProbe(ns, name string) {
	obj, err := l.Client.Tracker().Get(podsGVR, ns, name)
	if err != nil {
		return
	}
	p := obj.(*corev1.Pod)
	if p.Spec.NodeName == "" {
		l.scheduleProbe(p)
		_ = l.Client.Tracker().Update(podsGVR, p, ns)
		if p.Spec.NodeName == "" {
			return // unschedulable: it stays Pending and times out
		}
	}
	n := l.node(p.Spec.NodeName)
	if n == nil || !nodeReady(n) {
		return // no kubelet to run it: it stays Pending and times out
	}
	ok, msg := true, ""
	switch p.Labels[health.ProbeLabel] {
	case health.ProbeDNS:
		switch {
		case l.nodeFaultActive(p.Spec.NodeName, FaultDNSDown):
			ok, msg = false, ";; connection timed out; no servers could be reached"
		case l.readyDNSEndpoints() == 0:
			ok, msg = false, "** server can't find kubernetes.default.svc.cluster.local: NXDOMAIN"
		}
	case health.ProbeNetwork:
		if l.nodeFaultActive(p.Spec.NodeName, FaultDNSDown) {
			ok, msg = false, "nc: bad address 'kubernetes.default.svc'"
		}
	}
	exit := int32(0)
	p.Status.Phase = corev1.PodSucceeded
	if !ok {
		exit = 1
		p.Status.Phase = corev1.PodFailed
	}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "probe", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: exit, Message: msg, Reason: map[bool]string{true: "Completed", false: "Error"}[ok]}}}}
	_ = l.Client.Tracker().Update(podsGVR, p, ns)
}

func (l *Lab) readyDNSEndpoints() int {
	obj, err := l.Client.Tracker().Get(slicesGVR, "kube-system", "kube-dns-lab")
	if err != nil {
		return 0
	}
	ready := 0
	for _, e := range obj.(*discoveryv1.EndpointSlice).Endpoints {
		if e.Conditions.Ready != nil && *e.Conditions.Ready {
			ready++
		}
	}
	return ready
}

// alerts is the lab's Alertmanager: an alert fires for every node whose
// alert-fires fault is active.
type alerts struct{ lab *Lab }

// Alerts returns the lab's alert source when the inventory rehearses
// alerts (an alert-fires fault, or health.alertmanager configured), else nil.
func (l *Lab) Alerts() health.AlertSource {
	if l.opts.Config.Health.Alertmanager.URL == "" && !l.hasFault(FaultAlertFires) {
		return nil
	}
	return alerts{lab: l}
}

func (l *Lab) hasFault(f Fault) bool {
	for _, v := range l.vms {
		if v.fault == f {
			return true
		}
	}
	return false
}

// Firing lists the alerts that fire now.
func (a alerts) Firing(context.Context) ([]health.Alert, error) {
	l := a.lab
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []health.Alert
	for _, name := range l.order {
		v := l.vms[name]
		if l.nodeFaultActive(name, FaultAlertFires) && v.running {
			out = append(out, health.Alert{
				Fingerprint: "lab-" + name, StartsAt: v.booted,
				Labels:  map[string]string{"alertname": "NodeNetworkReceiveErrs", "severity": "warning", "node": name},
				Summary: "network interface on " + name + " reports receive errors (lab fault alert-fires)",
			})
		}
	}
	return out, nil
}
