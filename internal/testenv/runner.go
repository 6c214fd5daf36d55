package testenv

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"
)

// ScaleSet is the runner scale set's name in the kit.
const ScaleSet = "cattle-upgrade"

var (
	crdsGVR            = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	ephemeralRunnerGVR = schema.GroupVersionResource{Group: "actions.github.com", Version: "v1alpha1", Resource: "ephemeralrunners"}
)

// RunnerPod creates a runner pod as ARC's runner scale set does: an
// EphemeralRunner (a custom resource; its CRD, which no served module
// ships, is a schema-less stand-in of the same group, version and kind)
// owns it as its controller, and the scale set's label marks it. It runs
// on node, or where the scheduler puts it when node is "". The kit's
// runner pod requests 500m CPU and 1Gi.
func (e *Env) RunnerPod(t testing.TB, ns, name, node string) *corev1.Pod {
	t.Helper()
	dyn, err := dynamic.NewForConfig(e.Config)
	if err != nil {
		t.Fatal(err)
	}
	e.ephemeralRunnerCRD(t, dyn)
	e.Namespace(t, ns)
	p, err := e.NewRunnerPod(context.Background(), ns, name, node)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// NewRunnerPod is RunnerPod once the CRD and the namespace are there, for
// a goroutine that plays ARC starting the next job's runner pod.
func (e *Env) NewRunnerPod(ctx context.Context, ns, name, node string) (*corev1.Pod, error) {
	dyn, err := dynamic.NewForConfig(e.Config)
	if err != nil {
		return nil, err
	}
	er := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "actions.github.com/v1alpha1", "kind": "EphemeralRunner",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     map[string]any{"githubConfigUrl": "https://github.com/prox-ops/infrastructure"},
	}}
	cur, err := dyn.Resource(ephemeralRunnerGVR).Namespace(ns).Create(ctx, er, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		cur, err = dyn.Resource(ephemeralRunnerGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("EphemeralRunner %s/%s: %w", ns, name, err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns,
			Labels: map[string]string{"actions.github.com/scale-set-name": ScaleSet, "app.kubernetes.io/component": "runner"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "actions.github.com/v1alpha1", Kind: "EphemeralRunner", Name: name,
				UID: cur.GetUID(), Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
		},
		Spec: corev1.PodSpec{
			NodeName: node,
			Containers: []corev1.Container{{Name: "runner", Image: "ghcr.io/actions/actions-runner:2.330.0",
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("1Gi")}}}},
			TerminationGracePeriodSeconds: ptr.To(int64(1)),
		},
	}
	created, err := e.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("runner pod %s/%s: %w", ns, name, err)
	}
	return created, nil
}

// ephemeralRunnerCRD installs the EphemeralRunner stand-in CRD once.
func (e *Env) ephemeralRunnerCRD(t testing.TB, dyn dynamic.Interface) {
	t.Helper()
	crd := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": "ephemeralrunners.actions.github.com"},
		"spec": map[string]any{
			"group": "actions.github.com", "scope": "Namespaced",
			"names": map[string]any{"kind": "EphemeralRunner", "plural": "ephemeralrunners", "singular": "ephemeralrunner", "listKind": "EphemeralRunnerList"},
			"versions": []any{map[string]any{"name": "v1alpha1", "served": true, "storage": true,
				"schema": map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}},
		},
	}}
	_, err := dyn.Resource(crdsGVR).Create(context.Background(), crd, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("EphemeralRunner CRD: %v", err)
	}
	Eventually(t, 30*time.Second, "the EphemeralRunner CRD to be served", func() (bool, error) {
		_, err := dyn.Resource(ephemeralRunnerGVR).Namespace("default").List(context.Background(), metav1.ListOptions{})
		return err == nil, nil
	})
}
