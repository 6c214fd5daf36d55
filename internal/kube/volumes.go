package kube

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/rollout"
)

var _ rollout.VolumeWaiter = (*Client)(nil)

// AttachedVolume is a volume still attached to a node: its
// VolumeAttachment, the PersistentVolume and claim, and the pods that use
// the claim (where they run now).
type AttachedVolume struct {
	Attachment string
	Volume     string
	Claim      string
	Pods       []string
}

func (v AttachedVolume) String() string {
	s := v.Attachment
	if v.Volume != "" {
		s = "volume " + v.Volume
	}
	if v.Claim != "" {
		s += " (claim " + v.Claim
		if len(v.Pods) > 0 {
			s += ", used by " + strings.Join(v.Pods, ", ")
		}
		s += ")"
	}
	return s
}

// VolumeDetachError says which volumes stayed attached to a drained node
// past the timeout. The run halts with the node untouched.
type VolumeDetachError struct {
	Node     string
	Timeout  time.Duration
	Attached []AttachedVolume
}

func (e *VolumeDetachError) Error() string {
	parts := make([]string, len(e.Attached))
	for i, v := range e.Attached {
		parts[i] = v.String()
	}
	return fmt.Sprintf("%d volume(s) still attached to %s %s after its drain: %s; the VM was not touched "+
		"(a VM destroyed or rebooted with a volume attached leaves its pod unable to attach it elsewhere for minutes); "+
		"look at the VolumeAttachments (kubectl get volumeattachments), or raise rollout.volumeDetachTimeout",
		len(e.Attached), e.Node, e.Timeout, strings.Join(parts, "; "))
}

// WaitVolumesDetached waits, on the clock, until no VolumeAttachment names
// the node: the attach-detach controller detaches a drained node's volumes
// once their pods are gone. progress is told once what is waited for. It
// returns the claims (namespace/name) of the volumes that were attached:
// their pods must run again elsewhere.
func (c *Client) WaitVolumesDetached(ctx context.Context, node string, timeout time.Duration, progress func(string)) ([]string, error) {
	var attached []storagev1.VolumeAttachment
	var claims []string
	told := false
	err := clock.Poll(ctx, c.Clock, "volumes of "+node+" to detach", c.pollInterval(), timeout, func(ctx context.Context) (bool, string, error) {
		var err error
		if attached, err = c.attachments(ctx, node); err != nil {
			return false, "", err
		}
		if len(attached) > 0 && !told {
			told = true
			var names []string
			for _, v := range c.describe(ctx, attached) {
				names = append(names, volumeName(storagev1.VolumeAttachment{ObjectMeta: metav1.ObjectMeta{Name: v.Attachment}, Spec: storagev1.VolumeAttachmentSpec{Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: ptrOrNil(v.Volume)}}}))
				if v.Claim != "" {
					claims = append(claims, v.Claim)
				}
			}
			if progress != nil {
				progress(fmt.Sprintf("waiting for %d volume(s) to detach: %s", len(attached), strings.Join(names, ", ")))
			}
		}
		return len(attached) == 0, fmt.Sprintf("%d still attached", len(attached)), nil
	})
	var te *clock.TimeoutError
	if errors.As(err, &te) {
		return claims, &VolumeDetachError{Node: node, Timeout: timeout, Attached: c.describe(ctx, attached)}
	}
	if err == nil && told && progress != nil {
		progress("volumes detached")
	}
	return claims, err
}

func ptrOrNil(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// attachments are the VolumeAttachments that name the node.
func (c *Client) attachments(ctx context.Context, node string) ([]storagev1.VolumeAttachment, error) {
	var out []storagev1.VolumeAttachment
	opts := metav1.ListOptions{Limit: 500}
	for {
		l, err := c.Client.StorageV1().VolumeAttachments().List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list VolumeAttachments: %w", err)
		}
		for _, va := range l.Items {
			if va.Spec.NodeName == node {
				out = append(out, va)
			}
		}
		if l.Continue == "" {
			return out, nil
		}
		opts.Continue = l.Continue
	}
}

func volumeName(va storagev1.VolumeAttachment) string {
	if pv := va.Spec.Source.PersistentVolumeName; pv != nil {
		return *pv
	}
	return va.Name
}

// describe names each attachment's volume, claim and the pods using it,
// as far as they can be read.
func (c *Client) describe(ctx context.Context, vas []storagev1.VolumeAttachment) []AttachedVolume {
	var out []AttachedVolume
	for _, va := range vas {
		v := AttachedVolume{Attachment: va.Name}
		if pvName := va.Spec.Source.PersistentVolumeName; pvName != nil {
			v.Volume = *pvName
			if pv, err := c.Client.CoreV1().PersistentVolumes().Get(ctx, *pvName, metav1.GetOptions{}); err == nil && pv.Spec.ClaimRef != nil {
				ref := pv.Spec.ClaimRef
				v.Claim = ref.Namespace + "/" + ref.Name
				v.Pods = c.claimUsers(ctx, ref.Namespace, ref.Name)
			}
		}
		out = append(out, v)
	}
	return out
}

// claimUsers are the pods of ns that mount the claim, with their node.
func (c *Client) claimUsers(ctx context.Context, ns, claim string) []string {
	pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil
	}
	var out []string
	for _, p := range pods.Items {
		if slices.ContainsFunc(p.Spec.Volumes, func(v corev1.Volume) bool {
			return v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == claim
		}) {
			where := p.Spec.NodeName
			if where == "" {
				where = "not scheduled"
			}
			out = append(out, fmt.Sprintf("pod %s/%s (%s, %s)", p.Namespace, p.Name, where, p.Status.Phase))
		}
	}
	return out
}
