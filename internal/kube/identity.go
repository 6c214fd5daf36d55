package kube

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/prox-ops/drover/internal/rollout"
)

// GPUResource is the NVIDIA device plugin's extended resource.
const GPUResource = "nvidia.com/gpu"

// IdentityDiff is how a node changed across its upgrade.
type IdentityDiff struct {
	// Expected are changes an upgrade makes: versions, boot ID, UID.
	Expected []string
	// Lost are labels, taints or GPUs the node had and no longer has.
	Lost []string
}

// DefaultIdentityIgnore are the label and annotation keys that change with
// a version by design (Node Feature Discovery's kernel labels, Talos
// extension versions, bookkeeping annotations): health.identityIgnore
// replaces the list.
var DefaultIdentityIgnore = []string{
	"feature.node.kubernetes.io/*",
	"extensions.talos.dev/*",
	"node.alpha.kubernetes.io/ttl",
	"csi.volume.kubernetes.io/nodeid",
	"volumes.kubernetes.io/controller-managed-attach-detach",
	"talos.dev/*",
}

// OwnKeyPrefix starts the keys of drover's own labels and annotations.
const OwnKeyPrefix = "drover.prox-ops.io/"

// ignored says whether key matches one of the patterns: an exact key, or a
// prefix followed by "*".
func ignored(key string, patterns []string) bool {
	for _, p := range patterns {
		if pre, ok := strings.CutSuffix(p, "*"); ok && strings.HasPrefix(key, pre) || p == key {
			return true
		}
	}
	return false
}

// DiffIdentity compares a node before and after its upgrade. Label and
// annotation keys that match ignore (nil: DefaultIdentityIgnore) are not
// compared; a link whose name is in ignore as "link/NAME" neither.
func DiffIdentity(before, after rollout.Identity, ignore []string) IdentityDiff {
	if ignore == nil {
		ignore = DefaultIdentityIgnore
	}
	var d IdentityDiff
	expect := func(what, a, b string) {
		if a != b {
			d.Expected = append(d.Expected, fmt.Sprintf("%s %s -> %s", what, a, b))
		}
	}
	expect("osImage", before.OSImage, after.OSImage)
	expect("kubelet", before.KubeletVersion, after.KubeletVersion)
	if before.UID != after.UID {
		d.Expected = append(d.Expected, "new Node object (UID changed)")
	}
	for _, kv := range []struct {
		what          string
		before, after map[string]string
	}{{"label", before.Labels, after.Labels}, {"annotation", before.Annotations, after.Annotations}} {
		for _, k := range slices.Sorted(maps.Keys(kv.before)) {
			// drover's own bookkeeping (the run and step annotations) is
			// never the node's identity, whatever health.identityIgnore says.
			if ignored(k, ignore) || strings.HasPrefix(k, OwnKeyPrefix) {
				continue
			}
			v, ok := kv.after[k]
			switch {
			case !ok:
				d.Lost = append(d.Lost, fmt.Sprintf("%s %s=%s is gone", kv.what, k, kv.before[k]))
			case v != kv.before[k]:
				d.Lost = append(d.Lost, fmt.Sprintf("%s %s changed %q -> %q", kv.what, k, kv.before[k], v))
			}
		}
	}
	if before.Links != nil && after.Links != nil {
		d.Lost = append(d.Lost, diffLinks(before.Links, after.Links, ignore)...)
	}
	if before.Schematic != "" && after.Schematic != "" && before.Schematic != after.Schematic {
		d.Lost = append(d.Lost, fmt.Sprintf("schematic changed %s -> %s", before.Schematic, after.Schematic))
	}
	if before.Schematic != "" && after.Schematic != "" {
		for _, e := range before.Extensions {
			if !slices.Contains(after.Extensions, e) {
				d.Lost = append(d.Lost, "system extension "+e+" is gone")
			}
		}
	}
	have := map[string]bool{}
	for _, t := range after.Taints {
		have[t] = true
	}
	for _, t := range before.Taints {
		if !have[t] {
			d.Lost = append(d.Lost, "taint "+t+" is gone")
		}
	}
	if q, ok := before.Allocatable[GPUResource]; ok {
		was, _ := resource.ParseQuantity(q)
		now, _ := resource.ParseQuantity(after.Allocatable[GPUResource])
		if now.Cmp(was) < 0 {
			d.Lost = append(d.Lost, fmt.Sprintf("allocatable %s dropped %s -> %s", GPUResource, was.String(), now.String()))
		}
	}
	return d
}

// diffLinks: every physical link the node had is still there, with the
// same hardware address, and a link that carried addresses still does.
func diffLinks(before, after []rollout.Link, ignore []string) []string {
	now := map[string]rollout.Link{}
	for _, l := range after {
		now[l.Name] = l
	}
	var lost []string
	for _, l := range before {
		if ignored("link/"+l.Name, ignore) {
			continue
		}
		a, ok := now[l.Name]
		switch {
		case !ok:
			lost = append(lost, fmt.Sprintf("link %s (%s) is gone", l.Name, l.HardwareAddr))
		case a.HardwareAddr != l.HardwareAddr:
			lost = append(lost, fmt.Sprintf("link %s changed its hardware address %s -> %s", l.Name, l.HardwareAddr, a.HardwareAddr))
		case len(l.Addresses) > 0 && len(a.Addresses) == 0:
			lost = append(lost, fmt.Sprintf("link %s carried %s and now carries no address", l.Name, strings.Join(l.Addresses, ", ")))
		}
	}
	return lost
}
