package kit

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	authv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/prox-ops/drover/internal/testenv"
)

// The runner manifests are applied with server-side dry-run to a real API
// server. The Flux, External Secrets and Talos CRDs are not in the module
// cache, so these are minimal CRDs of the same group, version and kind
// (labelled drover.prox-ops.io/minimal-crd), with a status subresource.

var env *testenv.Env

func TestMain(m *testing.M) { os.Exit(testenv.Main(m, &env)) }

var minimalCRDs = [][4]string{
	{"kustomize.toolkit.fluxcd.io", "v1", "Kustomization", "kustomizations"},
	{"helm.toolkit.fluxcd.io", "v2", "HelmRelease", "helmreleases"},
	{"source.toolkit.fluxcd.io", "v1", "OCIRepository", "ocirepositories"},
	{"external-secrets.io", "v1", "ExternalSecret", "externalsecrets"},
	{"talos.dev", "v1alpha1", "ServiceAccount", "serviceaccounts"},
}

func installCRDs(t *testing.T, dyn dynamic.Interface) {
	t.Helper()
	crds := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	for _, c := range minimalCRDs {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
			"metadata": map[string]any{"name": c[3] + "." + c[0], "labels": map[string]any{"drover.prox-ops.io/minimal-crd": "true"}},
			"spec": map[string]any{"group": c[0], "scope": "Namespaced",
				"names": map[string]any{"kind": c[2], "plural": c[3], "listKind": c[2] + "List", "singular": strings.ToLower(c[2])},
				"versions": []any{map[string]any{"name": c[1], "served": true, "storage": true,
					"subresources": map[string]any{"status": map[string]any{}},
					"schema":       map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}},
		}}
		if _, err := dyn.Resource(crds).Create(context.Background(), u, metav1.CreateOptions{}); err != nil && !strings.Contains(err.Error(), "already exists") {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 30*time.Second, "the CRDs to be served", func() (bool, error) {
		_, err := env.Client.Discovery().ServerResourcesForGroupVersion("talos.dev/v1alpha1")
		return err == nil, nil
	})
}

// manifests returns the rendered Kubernetes objects (kustomize files aside).
func manifests(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	files, err := Render(exampleValues(t))
	if err != nil {
		t.Fatal(err)
	}
	var out []*unstructured.Unstructured
	for _, p := range Paths(files) {
		if !strings.HasPrefix(p, "kubernetes/") || strings.HasSuffix(p, "/kustomization.yaml") {
			continue
		}
		for _, doc := range strings.Split(string(files[p]), "\n---\n") {
			u := &unstructured.Unstructured{}
			if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			if len(u.Object) > 0 {
				out = append(out, u)
			}
		}
	}
	return out
}

func TestManifestsApplyWithServerSideDryRun(t *testing.T) {
	testenv.Require(t, env)
	dyn, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	installCRDs(t, dyn)
	for _, ns := range []string{"github-actions", "flux-system"} {
		env.Namespace(t, ns)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(env.Client.Discovery()))
	objs := manifests(t)
	kinds := map[string]bool{}
	for _, u := range objs {
		gvk := u.GroupVersionKind()
		kinds[gvk.Kind] = true
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s: %v", gvk, err)
		}
		r := dyn.Resource(m.Resource)
		var ri dynamic.ResourceInterface = r
		if m.Scope.Name() == "namespace" {
			ri = r.Namespace(u.GetNamespace())
		}
		// Server-side apply, dry run: validated and admitted, not stored.
		if _, err := ri.Apply(context.Background(), u.GetName(), u, metav1.ApplyOptions{FieldManager: "drover-test", Force: true, DryRun: []string{metav1.DryRunAll}}); err != nil {
			t.Errorf("%s %s/%s: %v", gvk.Kind, u.GetNamespace(), u.GetName(), err)
		}
	}
	for _, k := range []string{"Kustomization", "OCIRepository", "HelmRelease", "ExternalSecret", "ServiceAccount", "ClusterRole", "Role", "Namespace"} {
		if !kinds[k] {
			t.Errorf("no %s among the manifests", k)
		}
	}
}

// TestRunnerPermissions applies the RBAC for real and asks the API server
// what the runner's ServiceAccount may do.
func TestRunnerPermissions(t *testing.T) {
	testenv.Require(t, env)
	ctx := context.Background()
	dyn, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	env.Namespace(t, "github-actions")
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(env.Client.Discovery()))
	for _, u := range manifests(t) {
		if u.GroupVersionKind().Group != "rbac.authorization.k8s.io" && !(u.GetKind() == "ServiceAccount" && u.GetAPIVersion() == "v1") {
			continue
		}
		m, err := mapper.RESTMapping(u.GroupVersionKind().GroupKind(), u.GroupVersionKind().Version)
		if err != nil {
			t.Fatal(err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == "namespace" {
			ri = dyn.Resource(m.Resource).Namespace(u.GetNamespace())
		}
		if _, err := ri.Create(ctx, u, metav1.CreateOptions{}); err != nil && !strings.Contains(err.Error(), "already exists") {
			t.Fatal(err)
		}
	}
	user := "system:serviceaccount:github-actions:github-actions-runner"
	can := func(ra authv1.ResourceAttributes) bool {
		sar, err := env.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authv1.SubjectAccessReview{Spec: authv1.SubjectAccessReviewSpec{
			User: user, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:github-actions"}, ResourceAttributes: &ra}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return sar.Status.Allowed
	}
	tests := []struct {
		name string
		ra   authv1.ResourceAttributes
		want bool
	}{
		{"patch nodes", authv1.ResourceAttributes{Verb: "patch", Resource: "nodes"}, true},
		{"evict pods", authv1.ResourceAttributes{Verb: "create", Resource: "pods", Subresource: "eviction", Namespace: "apps"}, true},
		{"read Flux Kustomizations", authv1.ResourceAttributes{Verb: "list", Group: "kustomize.toolkit.fluxcd.io", Resource: "kustomizations", Namespace: "flux-system"}, true},
		{"read HelmReleases", authv1.ResourceAttributes{Verb: "get", Group: "helm.toolkit.fluxcd.io", Resource: "helmreleases", Namespace: "apps"}, true},
		{"take the run lock in its namespace", authv1.ResourceAttributes{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Namespace: "github-actions"}, true},
		{"no Lease elsewhere", authv1.ResourceAttributes{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Namespace: "kube-system"}, false},
		{"no Secrets of kube-system", authv1.ResourceAttributes{Verb: "get", Resource: "secrets", Namespace: "kube-system"}, false},
		{"no Secrets listed cluster-wide", authv1.ResourceAttributes{Verb: "list", Resource: "secrets"}, false},
		{"no probe pods outside its namespace", authv1.ResourceAttributes{Verb: "create", Resource: "pods", Namespace: "apps"}, false},
	}
	for _, tc := range tests {
		if got := can(tc.ra); got != tc.want {
			t.Errorf("%s: allowed=%v, want %v", tc.name, got, tc.want)
		}
	}
}
