package kit

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	authv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/prox-ops/drover/internal/testenv"
)

// The runner manifests are applied with server-side dry-run, strict field
// validation, to a real API server with the upstream CRDs of Flux
// (kustomize-controller and source-controller v1.10.1, helm-controller
// v1.6.0) and External Secrets (v1.3.2), taken from the projects' modules
// by hack/crds.sh. Talos's ServiceAccount CRD ships in no Go module (the
// Talos controller registers it at run time), so it alone is a minimal,
// schema-less stand-in of the same group, version and kind (labelled
// drover.prox-ops.io/minimal-crd).

var env *testenv.Env

func TestMain(m *testing.M) { os.Exit(testenv.Main(m, &env)) }

var minimalCRDs = [][4]string{
	{"talos.dev", "v1alpha1", "ServiceAccount", "serviceaccounts"},
}

func installCRDs(t *testing.T, dyn dynamic.Interface) {
	t.Helper()
	env.InstallUpstreamCRDs(t, "kustomize.toolkit.fluxcd.io_kustomizations.yaml", "source.toolkit.fluxcd.io_ocirepositories.yaml",
		"helm.toolkit.fluxcd.io_helmreleases.yaml", "external-secrets.io_externalsecrets.yaml")
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
	for _, ns := range []string{"github-actions", "flux-system", "rook-ceph"} {
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
		// Server-side apply, dry run, strict: validated against the
		// schema (an unknown field is an error) and admitted, not stored.
		if err := dryRunApply(ri, u); err != nil {
			t.Errorf("%s %s/%s: %v", gvk.Kind, u.GetNamespace(), u.GetName(), err)
		}
	}
	// The schemas are real: a misspelt field is refused.
	for _, u := range objs {
		if u.GetKind() != "HelmRelease" && u.GetKind() != "ExternalSecret" && u.GetKind() != "Kustomization" {
			continue
		}
		bad := u.DeepCopy()
		if err := unstructured.SetNestedField(bad.Object, "10m", "spec", "intervall"); err != nil {
			t.Fatal(err)
		}
		m, _ := mapper.RESTMapping(bad.GroupVersionKind().GroupKind(), bad.GroupVersionKind().Version)
		err := dryRunApply(dyn.Resource(m.Resource).Namespace(bad.GetNamespace()), bad)
		if err == nil || !strings.Contains(err.Error(), "intervall") {
			t.Errorf("%s %s with spec.intervall: %v, want it refused", bad.GetKind(), bad.GetName(), err)
		}
	}
	for _, k := range []string{"Kustomization", "OCIRepository", "HelmRelease", "ExternalSecret", "ServiceAccount", "ClusterRole", "Role", "Namespace"} {
		if !kinds[k] {
			t.Errorf("no %s among the manifests", k)
		}
	}
}

// dryRunApply is a server-side apply, dry run, with strict field validation.
func dryRunApply(ri dynamic.ResourceInterface, u *unstructured.Unstructured) error {
	data, err := u.MarshalJSON()
	if err != nil {
		return err
	}
	_, err = ri.Patch(context.Background(), u.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{
		FieldManager: "drover-test", Force: ptr.To(true), DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"})
	return err
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
	env.Namespace(t, "rook-ceph")
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
	canAs := func(sa string, ra authv1.ResourceAttributes) bool {
		sar, err := env.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authv1.SubjectAccessReview{Spec: authv1.SubjectAccessReviewSpec{
			User: "system:serviceaccount:github-actions:" + sa, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:github-actions"}, ResourceAttributes: &ra}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return sar.Status.Allowed
	}
	can := func(ra authv1.ResourceAttributes) bool { return canAs("github-actions-runner", ra) }
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
		{"see the volumes attached to a node", authv1.ResourceAttributes{Verb: "list", Group: "storage.k8s.io", Resource: "volumeattachments"}, true},
		{"append to the journal's chunks", authv1.ResourceAttributes{Verb: "patch", Resource: "configmaps", Namespace: "github-actions"}, true},
		{"list the journal's chunks", authv1.ResourceAttributes{Verb: "list", Resource: "configmaps", Namespace: "github-actions"}, true},
		{"delete old runs' chunks", authv1.ResourceAttributes{Verb: "delete", Resource: "configmaps", Namespace: "github-actions"}, true},
		{"no ConfigMaps elsewhere", authv1.ResourceAttributes{Verb: "patch", Resource: "configmaps", Namespace: "kube-system"}, false},
		{"no Lease elsewhere", authv1.ResourceAttributes{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Namespace: "kube-system"}, false},
		{"no Secrets of kube-system", authv1.ResourceAttributes{Verb: "get", Resource: "secrets", Namespace: "kube-system"}, false},
		{"no Secrets listed cluster-wide", authv1.ResourceAttributes{Verb: "list", Resource: "secrets"}, false},
		{"no probe pods outside its namespace", authv1.ResourceAttributes{Verb: "create", Resource: "pods", Namespace: "apps"}, false},
		{"run the hooks' Jobs in its namespace", authv1.ResourceAttributes{Verb: "create", Group: "batch", Resource: "jobs", Namespace: "github-actions"}, true},
		{"delete a failed hook Job", authv1.ResourceAttributes{Verb: "delete", Group: "batch", Resource: "jobs", Namespace: "github-actions"}, true},
		{"no Jobs elsewhere", authv1.ResourceAttributes{Verb: "create", Group: "batch", Resource: "jobs", Namespace: "kube-system"}, false},
		{"no exec for the runner", authv1.ResourceAttributes{Verb: "create", Resource: "pods", Subresource: "exec", Namespace: "rook-ceph"}, false},
	}
	for _, tc := range tests {
		if got := can(tc.ra); got != tc.want {
			t.Errorf("%s: allowed=%v, want %v", tc.name, got, tc.want)
		}
	}
	// The hooks' ServiceAccount: exec into the Rook toolbox, nothing else.
	hooks := []struct {
		name string
		ra   authv1.ResourceAttributes
		want bool
	}{
		{"exec into the toolbox", authv1.ResourceAttributes{Verb: "create", Resource: "pods", Subresource: "exec", Namespace: "rook-ceph"}, true},
		{"find the toolbox Deployment", authv1.ResourceAttributes{Verb: "get", Group: "apps", Resource: "deployments", Name: "rook-ceph-tools", Namespace: "rook-ceph"}, true},
		{"no other Deployment", authv1.ResourceAttributes{Verb: "get", Group: "apps", Resource: "deployments", Name: "rook-ceph-operator", Namespace: "rook-ceph"}, false},
		{"no exec elsewhere", authv1.ResourceAttributes{Verb: "create", Resource: "pods", Subresource: "exec", Namespace: "kube-system"}, false},
		{"no Secrets of Rook", authv1.ResourceAttributes{Verb: "get", Resource: "secrets", Namespace: "rook-ceph"}, false},
	}
	for _, tc := range hooks {
		if got := canAs(HooksServiceAccount, tc.ra); got != tc.want {
			t.Errorf("drover-hooks: %s: allowed=%v, want %v", tc.name, got, tc.want)
		}
	}
}

// runnerPod is the runner pod the scale set creates: the HelmRelease's
// values.template, as a Pod in the kit's namespace.
func runnerPod(t *testing.T) *corev1.Pod {
	t.Helper()
	for _, u := range manifests(t) {
		if u.GetKind() != "HelmRelease" {
			continue
		}
		tmpl, ok, err := unstructured.NestedMap(u.Object, "spec", "values", "template")
		if err != nil {
			t.Fatalf("HelmRelease %s: values.template: %v", u.GetName(), err)
		}
		if !ok {
			continue // the controller's release
		}
		pod := &corev1.Pod{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(tmpl, pod, true); err != nil {
			t.Fatalf("values.template is not a pod template: %v", err)
		}
		pod.Name, pod.Namespace = "runner-dry-run", u.GetNamespace()
		return pod
	}
	t.Fatal("no HelmRelease with a runner pod template among the manifests")
	return nil
}

// TestRunnerPodIsAdmitted creates the runner pod with a server-side dry run
// after the kit's ServiceAccount exists: the API server validates the spec
// and admits it under the namespace's "restricted" Pod Security level.
func TestRunnerPodIsAdmitted(t *testing.T) {
	testenv.Require(t, env)
	ctx := t.Context()
	ns := "github-actions"
	env.Namespace(t, ns)
	nsObj, err := env.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nsObj.Labels = map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}
	if _, err := env.Client.CoreV1().Namespaces().Update(ctx, nsObj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if n, err := env.Client.CoreV1().Namespaces().Get(context.Background(), ns, metav1.GetOptions{}); err == nil {
			delete(n.Labels, "pod-security.kubernetes.io/enforce")
			_, _ = env.Client.CoreV1().Namespaces().Update(context.Background(), n, metav1.UpdateOptions{})
		}
	})
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "github-actions-runner", Namespace: ns}}
	if _, err := env.Client.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatal(err)
	}
	pod := runnerPod(t)
	got, err := env.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatalf("the runner pod is refused: %v", err)
	}
	if got.Spec.ServiceAccountName != "github-actions-runner" {
		t.Fatalf("service account %q", got.Spec.ServiceAccountName)
	}
	// The namespace's level is enforced: the same pod, loosened, is refused.
	loose := pod.DeepCopy()
	esc := true
	loose.Spec.InitContainers[0].SecurityContext.AllowPrivilegeEscalation = &esc
	if _, err := env.Client.CoreV1().Pods(ns).Create(ctx, loose, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err == nil || !strings.Contains(err.Error(), "restricted") {
		t.Fatalf("a pod allowing privilege escalation: %v", err)
	}
}

// TestEveryPathTheRunnerWritesIsWritable walks what the runner and the
// kit's steps write (actions/runner's run.sh, config and diagnostics, the
// work directory with the checkout, RUNNER_TEMP and the file commands, the
// tools drover-tools installs, HOME's caches, drover's temporary files and
// snapshots) and checks each lands on a writable volume of the runner
// container, whose root filesystem is read-only. The init container must
// fill that same home volume from the image.
func TestEveryPathTheRunnerWritesIsWritable(t *testing.T) {
	pod := runnerPod(t)
	v := exampleValues(t)
	var runner *corev1.Container
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == "runner" {
			runner = &pod.Spec.Containers[i]
		}
	}
	if runner == nil {
		t.Fatal("no runner container")
	}
	sc := runner.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
		t.Fatalf("the runner container is not hardened: %+v", sc)
	}
	if ps := pod.Spec.SecurityContext; ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot {
		t.Fatal("the pod may run as root")
	}
	emptyDirs := map[string]bool{}
	for _, vol := range pod.Spec.Volumes {
		emptyDirs[vol.Name] = vol.EmptyDir != nil
	}
	writable := func(c corev1.Container, path string) (string, bool) {
		best := ""
		var vm corev1.VolumeMount
		for _, m := range c.VolumeMounts {
			mp := strings.TrimSuffix(m.MountPath, "/")
			if (path == mp || strings.HasPrefix(path, mp+"/")) && len(mp) > len(best) {
				best, vm = mp, m
			}
		}
		if best == "" {
			return "the read-only root filesystem", false
		}
		return "volume " + vm.Name, !vm.ReadOnly && emptyDirs[vm.Name]
	}
	home := "/home/runner"
	work := home + "/_work"
	workspace := work + "/infrastructure/infrastructure"
	paths := []string{
		home + "/run-helper.sh", // run.sh copies run-helper.sh.template here
		home + "/.runner", home + "/.credentials", home + "/.credentials_rsaparams", home + "/.env", home + "/.path",
		home + "/_diag/Runner_20261126.log",
		workspace + "/drover.yaml",                           // the checkout
		workspace + "/drover-report.json",                    // --report
		workspace + "/drover-journal.jsonl",                  // the journal export
		workspace + "/classify.json",                         // the plan job
		workspace + "/" + v.SnapshotDir + "/etcd.snapshot",   // etcd snapshots
		workspace + "/terraform/.terraform/providers/x",      // tofu init
		work + "/_temp/drover-tools/bin/drover",              // drover-tools
		work + "/_temp/_runner_file_commands/step_summary_1", // GITHUB_STEP_SUMMARY, GITHUB_PATH, GITHUB_OUTPUT
		work + "/_actions/actions/upload-artifact/x/action.yml",
		work + "/_tool/x",
		home + "/.cache/x", home + "/.terraform.d/plugin-cache/x", home + "/.talos/config",
		"/tmp/drover-123/x", // os.TempDir for drover, tofu and talosctl
	}
	for _, p := range paths {
		if where, ok := writable(*runner, p); !ok {
			t.Errorf("%s is on %s, not writable", p, where)
		}
	}
	// The Talos credentials are mounted read-only, as they should be.
	if _, ok := writable(*runner, "/var/run/secrets/talos.dev/x"); ok {
		t.Error("the Talos credentials are writable")
	}
	// The init container copies the image's home into the same volume.
	if len(pod.Spec.InitContainers) != 1 {
		t.Fatalf("%d init containers", len(pod.Spec.InitContainers))
	}
	ic := pod.Spec.InitContainers[0]
	if ic.Image != runner.Image || ic.Image != v.RunnerImage {
		t.Errorf("the init container runs %s, the runner %s", ic.Image, runner.Image)
	}
	if len(ic.Command) != 4 || ic.Command[0] != "cp" || ic.Command[2] != home+"/." {
		t.Fatalf("init command %q", ic.Command)
	}
	dest := ic.Command[3]
	homeVol := ""
	for _, m := range runner.VolumeMounts {
		if m.MountPath == home {
			homeVol = m.Name
		}
	}
	copied := false
	for _, m := range ic.VolumeMounts {
		if strings.TrimSuffix(m.MountPath, "/") == strings.TrimSuffix(dest, "/") && m.Name == homeVol && !m.ReadOnly {
			copied = true
		}
	}
	if !copied {
		t.Errorf("the init container does not copy into the runner's home volume %q", homeVol)
	}
	if !strings.Contains(v.RunnerImage, ":") || strings.HasSuffix(v.RunnerImage, ":latest") {
		t.Errorf("the runner image %q is not pinned", v.RunnerImage)
	}
}
