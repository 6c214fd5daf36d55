package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	yamlutil "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/utils/ptr"
)

// Namespace creates a namespace for one test.
func (e *Env) Namespace(t testing.TB, name string) string {
	t.Helper()
	_, err := e.Client.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("namespace %s: %v", name, err)
	}
	return name
}

// Deployment creates a Deployment of replicas pods labelled app=name,
// tolerating the control-plane taint when tolerateCP is set.
func (e *Env) Deployment(t testing.TB, ns, name string, replicas int, tolerateCP bool) {
	t.Helper()
	labels := map[string]string{"app": name}
	spec := corev1.PodSpec{
		Containers:                    []corev1.Container{{Name: name, Image: "registry.example/" + name + ":1"}},
		TerminationGracePeriodSeconds: ptr.To(int64(1)),
	}
	if tolerateCP {
		spec.Tolerations = []corev1.Toleration{{Key: "node-role.kubernetes.io/control-plane", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(replicas)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec},
		},
	}
	if _, err := e.Client.AppsV1().Deployments(ns).Create(context.Background(), d, metav1.CreateOptions{}); err != nil {
		t.Fatalf("deployment %s/%s: %v", ns, name, err)
	}
}

// PDB creates a PodDisruptionBudget over app=name with minAvailable.
func (e *Env) PDB(t testing.TB, ns, name string, minAvailable int) {
	t.Helper()
	v := intstr.FromInt32(int32(minAvailable))
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       policyv1.PodDisruptionBudgetSpec{MinAvailable: &v, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}},
	}
	if _, err := e.Client.PolicyV1().PodDisruptionBudgets(ns).Create(context.Background(), pdb, metav1.CreateOptions{}); err != nil {
		t.Fatalf("pdb %s/%s: %v", ns, name, err)
	}
}

// ReadyPods counts the Ready, not terminating pods labelled app=name.
func (e *Env) ReadyPods(ctx context.Context, ns, name string) (int, error) {
	pods, err := e.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
			continue
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				n++
			}
		}
	}
	return n, nil
}

// Eventually polls cond every 50ms until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok {
			return
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s (last error: %v)", timeout, what, last)
}

// PDBSettled waits until the disruption controller reports the budget's
// status for its current generation with the wanted disruptions allowed.
func (e *Env) PDBSettled(t testing.TB, ns, name string, allowed int) {
	t.Helper()
	Eventually(t, 30*time.Second, fmt.Sprintf("PDB %s/%s to allow %d disruption(s)", ns, name, allowed), func() (bool, error) {
		pdb, err := e.Client.PolicyV1().PodDisruptionBudgets(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return pdb.Status.ObservedGeneration == pdb.Generation && int(pdb.Status.DisruptionsAllowed) == allowed, nil
	})
}

// DeleteNodes removes test nodes at the end of a test.
func (e *Env) DeleteNodes(names ...string) {
	for _, n := range names {
		_ = e.Client.CoreV1().Nodes().Delete(context.Background(), n, metav1.DeleteOptions{})
	}
}

// WaitReplicas waits until n replicas of app=name are Ready.
func (e *Env) WaitReplicas(t testing.TB, ns, name string, n int) {
	t.Helper()
	Eventually(t, 30*time.Second, fmt.Sprintf("%d %s replicas Ready", n, name), func() (bool, error) {
		got, err := e.ReadyPods(context.Background(), ns, name)
		return got == n, err
	})
}

// WaitSchedulable waits until the node lifecycle controller has lifted its
// node.kubernetes.io/* taints from freshly registered nodes, so a test that
// depends on where pods land sees every node.
func (e *Env) WaitSchedulable(t testing.TB, names ...string) {
	t.Helper()
	Eventually(t, 30*time.Second, fmt.Sprintf("nodes %v schedulable", names), func() (bool, error) {
		for _, name := range names {
			n, err := e.Client.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			for _, taint := range n.Spec.Taints {
				if strings.HasPrefix(taint.Key, "node.kubernetes.io/") {
					return false, nil
				}
			}
		}
		return true, nil
	})
}

// ServiceAccountKubeconfig creates the ServiceAccount ns/name (and ns),
// asks the API server for a token of it (TokenRequest) and writes a
// kubeconfig that authenticates as it, so a test can run drover with
// exactly the permissions RBAC grants that account.
func (e *Env) ServiceAccountKubeconfig(t testing.TB, ns, name string) string {
	t.Helper()
	ctx := context.Background()
	e.Namespace(t, ns)
	_, err := e.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("service account %s/%s: %v", ns, name, err)
	}
	tr, err := e.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for %s/%s: %v", ns, name, err)
	}
	c := rest.CopyConfig(e.Config)
	c.BearerToken = tr.Status.Token
	path := filepath.Join(t.TempDir(), "kubeconfig-"+name)
	if err := writeKubeconfig(path, c); err != nil {
		t.Fatal(err)
	}
	return path
}

// Apply server-side applies every object of a multi-document YAML file,
// for real, creating their namespaces first.
func (e *Env) Apply(t testing.TB, path string) {
	t.Helper()
	ctx := context.Background()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(e.Config)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(e.Client.Discovery()))
	dec := yamlutil.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			return
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(u.Object) == 0 {
			continue
		}
		gvk := u.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s: %s: %v", path, gvk, err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == "namespace" {
			e.Namespace(t, u.GetNamespace())
			ri = dyn.Resource(m.Resource).Namespace(u.GetNamespace())
		}
		if _, err := ri.Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: "drover-test", Force: true}); err != nil {
			t.Fatalf("apply %s %s/%s: %v", gvk.Kind, u.GetNamespace(), u.GetName(), err)
		}
	}
}

// InstallUpstreamCRDs applies the named files of UpstreamCRDs (e.g.
// "helm.toolkit.fluxcd.io_helmreleases.yaml") and waits until each CRD is
// established.
func (e *Env) InstallUpstreamCRDs(t testing.TB, files ...string) {
	t.Helper()
	dir := UpstreamCRDs(t)
	for _, f := range files {
		e.Apply(t, filepath.Join(dir, f))
	}
	dyn, err := dynamic.NewForConfig(e.Config)
	if err != nil {
		t.Fatal(err)
	}
	crds := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	for _, f := range files {
		// The files are named GROUP_PLURAL.yaml; the CRD is PLURAL.GROUP.
		group, plural, _ := strings.Cut(strings.TrimSuffix(f, ".yaml"), "_")
		name := plural + "." + group
		Eventually(t, 30*time.Second, "CRD "+name+" to be established", func() (bool, error) {
			u, err := dyn.Resource(crds).Get(context.Background(), name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			for _, c := range conds {
				if m, ok := c.(map[string]any); ok && m["type"] == "Established" && m["status"] == "True" {
					return true, nil
				}
			}
			return false, nil
		})
	}
}
