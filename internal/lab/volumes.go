package lab

import (
	corev1 "k8s.io/api/core/v1"
	"time"

	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
)

var vaGVR = schema.GroupVersionResource{Group: "storage.k8s.io", Version: "v1", Resource: "volumeattachments"}

// detachDelay is how long the attach-detach controller and the CSI
// attacher take to detach a volume once its pod left the node.
const detachDelay = 10 * time.Second

func attachmentName(a *app, node string) string { return "csi-" + a.ns + "-" + a.name + "-" + node }

// attach records a's volume attached to node, as the CSI attacher does
// when its pod starts there. l.mu must be held.
func (l *Lab) attach(a *app, node string) {
	va := &storagev1.VolumeAttachment{
		ObjectMeta: metav1.ObjectMeta{Name: attachmentName(a, node), UID: l.newUID()},
		Spec: storagev1.VolumeAttachmentSpec{Attacher: "rook-ceph.rbd.csi.ceph.com", NodeName: node,
			Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: ptr.To("pvc-" + a.ns + "-" + a.name)}},
		Status: storagev1.VolumeAttachmentStatus{Attached: true},
	}
	_ = l.Client.Tracker().Add(va)
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "pvc-" + a.ns + "-" + a.name},
		Spec:       corev1.PersistentVolumeSpec{ClaimRef: &corev1.ObjectReference{Namespace: a.ns, Name: a.name}},
	}
	_ = l.Client.Tracker().Add(pv) // once: it stays when its pod moves
}

// detachLater detaches a's volume from node a little after its pod left,
// unless another of its pods runs there again, or the node's fault keeps
// it attached (volume-stuck). l.mu must be held.
func (l *Lab) detachLater(a *app, node string) {
	if v := l.vms[node]; v != nil && v.fault == FaultVolumeStuck {
		return
	}
	l.Clock.AfterFunc(detachDelay, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, p := range l.store.ofApp[a] {
			if p.Spec.NodeName == node {
				return
			}
		}
		_ = l.Client.Tracker().Delete(vaGVR, "", attachmentName(a, node))
	})
}
