package kube_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"

	"github.com/prox-ops/drover/internal/kube"
	"github.com/prox-ops/drover/internal/testenv"
)

// volumeApp is a single-replica app on node whose pod mounts a claim bound
// to an RBD-like PersistentVolume, attached to the node by a
// VolumeAttachment (what the CSI attacher records).
func volumeApp(t *testing.T, ns, name, node string) {
	t.Helper()
	ctx := context.Background()
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-" + ns + "-" + name}, Spec: corev1.PersistentVolumeSpec{
		Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
		AccessModes:            []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "rook-ceph.rbd.csi.ceph.com", VolumeHandle: name}},
		ClaimRef:               &corev1.ObjectReference{Namespace: ns, Name: name},
	}}
	if _, err := env.Client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Bound as the PV controller (not run here) would bind it.
	pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: map[string]string{"pv.kubernetes.io/bind-completed": "yes"}}, Spec: corev1.PersistentVolumeClaimSpec{
		AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, VolumeName: pv.Name,
		Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
	}}
	created, err := env.Client.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created.Status.Phase = corev1.ClaimBound
	if _, err := env.Client.CoreV1().PersistentVolumeClaims(ns).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": name}
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: appsv1.ReplicaSetSpec{
		Replicas: ptr.To(int32(1)), Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To(int64(0)),
			// Bound to the node as the scheduler would (the claim's binding
			// is the PV controller's, which this control plane leaves out).
			NodeName:   node,
			Containers: []corev1.Container{{Name: name, Image: "registry.example/" + name + ":1", VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
			Volumes:    []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name}}}},
		}},
	}}
	if _, err := env.Client.AppsV1().ReplicaSets(ns).Create(ctx, rs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	va := &storagev1.VolumeAttachment{ObjectMeta: metav1.ObjectMeta{Name: "csi-" + pv.Name}, Spec: storagev1.VolumeAttachmentSpec{
		Attacher: "rook-ceph.rbd.csi.ceph.com", NodeName: node, Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: ptr.To(pv.Name)},
	}}
	if _, err := env.Client.StorageV1().VolumeAttachments().Create(ctx, va, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Client.StorageV1().VolumeAttachments().Delete(context.Background(), va.Name, metav1.DeleteOptions{})
		_ = env.Client.CoreV1().PersistentVolumes().Delete(context.Background(), pv.Name, metav1.DeleteOptions{})
	})
	testenv.Eventually(t, 30*time.Second, name+" Ready on "+node, func() (bool, error) {
		n, err := env.ReadyPods(ctx, ns, name)
		return n == 1, err
	})
}

// detacher stands in for the attach-detach controller and the CSI
// attacher (they need a kubelet and a storage backend, which cannot run
// here): once no pod on a node mounts an attachment's claim, it deletes
// the VolumeAttachment, unless the test says the volume is stuck.
// Nothing is detached before release is closed (nil: at once).
func detacher(t *testing.T, ns string, stuck map[string]bool, release <-chan struct{}) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		if release != nil {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		for ctx.Err() == nil {
			vas, _ := env.Client.StorageV1().VolumeAttachments().List(ctx, metav1.ListOptions{})
			pods, _ := env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			for _, va := range vas.Items {
				claim := strings.TrimPrefix(ptr.Deref(va.Spec.Source.PersistentVolumeName, ""), "pv-"+ns+"-")
				if stuck[claim] || !strings.HasPrefix(ptr.Deref(va.Spec.Source.PersistentVolumeName, ""), "pv-"+ns+"-") {
					continue
				}
				used := false
				for _, p := range pods.Items {
					if p.Spec.NodeName == va.Spec.NodeName && p.DeletionTimestamp == nil && len(p.Spec.Volumes) > 0 && p.Spec.Volumes[0].PersistentVolumeClaim != nil && p.Spec.Volumes[0].PersistentVolumeClaim.ClaimName == claim {
						used = true
					}
				}
				if !used {
					_ = env.Client.StorageV1().VolumeAttachments().Delete(ctx, va.Name, metav1.DeleteOptions{})
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
}

// TestVolumesDetachAfterTheDrain: once a node's pods left, drover waits
// until the node's VolumeAttachments are gone; one that stays ends the
// wait at its timeout with the volume, its claim and the pod that needs it
// named. (The engine waits so after each drain; the lab's volume-stuck
// fault plays the halt.)
func TestVolumesDetachAfterTheDrain(t *testing.T) {
	testenv.Require(t, env)
	ctx := context.Background()
	ns := env.Namespace(t, "volumes")
	k := testenv.NewKubelets(env.Client, ns)
	t.Cleanup(k.Close)
	nodes(t, k, "v1.12.0", "vol-w-1", "vol-w-2")
	env.WaitSchedulable(t, "vol-w-1", "vol-w-2")
	volumeApp(t, ns, "home-assistant", "vol-w-1")
	volumeApp(t, ns, "plex", "vol-w-2")
	// The detach waits until drover said what it waits for, so that the
	// test sees the wait whatever the machine's speed.
	release := make(chan struct{})
	detacher(t, ns, map[string]bool{"plex": true}, release)
	kc := client()

	var told []string
	progress := func(m string) {
		if len(told) == 0 {
			close(release)
		}
		told = append(told, m)
	}
	// Its pod leaves the node (as its drain evicts it; the ReplicaSet is
	// scaled down so that the replacement needs no node here).
	rs, err := env.Client.AppsV1().ReplicaSets(ns).Get(ctx, "home-assistant", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rs.Spec.Replicas = ptr.To(int32(0))
	if _, err := env.Client.AppsV1().ReplicaSets(ns).Update(ctx, rs, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	claims, err := kc.WaitVolumesDetached(ctx, "vol-w-1", 30*time.Second, progress)
	if err != nil || len(claims) != 1 || claims[0] != ns+"/home-assistant" {
		t.Fatalf("the detached volume: %v (claims %v)", err, claims)
	}
	if len(told) != 2 || !strings.Contains(told[0], "waiting for 1 volume(s) to detach: pv-"+ns+"-home-assistant") || told[1] != "volumes detached" {
		t.Errorf("the progress said %q", told)
	}
	if vas, _ := env.Client.StorageV1().VolumeAttachments().List(ctx, metav1.ListOptions{}); len(vas.Items) != 1 {
		t.Fatalf("%d VolumeAttachments left, want plex's only", len(vas.Items))
	}

	// plex's volume stays attached (its pod still runs there, or the
	// detach is stuck): the wait ends at its timeout, naming it.
	_, err = kc.WaitVolumesDetached(ctx, "vol-w-2", 3*time.Second, nil)
	var vd *kube.VolumeDetachError
	if !errors.As(err, &vd) || len(vd.Attached) != 1 || vd.Attached[0].Claim != ns+"/plex" ||
		!strings.Contains(err.Error(), "volume pv-"+ns+"-plex") || !strings.Contains(err.Error(), "used by pod "+ns+"/plex-") {
		t.Fatalf("the stuck volume: %v", err)
	}
}

// TestADoNotDisruptPodHoldsItsNodeUntilItEnds: a pod annotated
// drover.dev/do-not-disrupt, or one matching rollout.blockingPods, holds
// its node while it runs; once it ended (Succeeded), the node is free.
func TestADoNotDisruptPodHoldsItsNodeUntilItEnds(t *testing.T) {
	testenv.Require(t, env)
	ctx := context.Background()
	ns := env.Namespace(t, "holders")
	k := testenv.NewKubelets(env.Client, ns)
	t.Cleanup(k.Close)
	nodes(t, k, "v1.12.0", "hold-w-1")
	pod := func(name string, annotations, labels map[string]string) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: annotations, Labels: labels},
			Spec: corev1.PodSpec{NodeName: "hold-w-1", RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "c", Image: "registry.example/" + name + ":1"}}}}
		if _, err := env.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pod("transcode", map[string]string{kube.DoNotDisrupt: "true"}, nil)
	pod("backup", nil, map[string]string{"job-name": "nightly-backup"})
	pod("web", nil, map[string]string{"app": "web"})
	sel, err := labels.Parse("job-name in (nightly-backup)")
	if err != nil {
		t.Fatal(err)
	}
	kc := client()
	kc.BlockingPods = []labels.Selector{sel}
	testenv.Eventually(t, 30*time.Second, "the pods running", func() (bool, error) {
		n, err := kc.HoldingPods(ctx, "hold-w-1")
		return len(n) == 2, err
	})
	held, err := kc.HoldingPods(ctx, "hold-w-1")
	if err != nil || strings.Join(held, " ") != ns+"/backup "+ns+"/transcode" {
		t.Fatalf("held by %v (%v)", held, err)
	}
	for _, name := range []string{"transcode", "backup"} {
		p, err := env.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Status.Phase = corev1.PodSucceeded
		if _, err := env.Client.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if held, err := kc.HoldingPods(ctx, "hold-w-1"); err != nil || len(held) != 0 {
		t.Fatalf("still held by %v (%v) after the pods ended", held, err)
	}
}
