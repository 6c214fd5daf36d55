package kube

import (
	"fmt"
	"sort"

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

// DiffIdentity compares a node before and after its upgrade.
func DiffIdentity(before, after rollout.Identity) IdentityDiff {
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
	for _, k := range sortedKeys(before.Labels) {
		v, ok := after.Labels[k]
		switch {
		case !ok:
			d.Lost = append(d.Lost, fmt.Sprintf("label %s=%s is gone", k, before.Labels[k]))
		case v != before.Labels[k]:
			d.Lost = append(d.Lost, fmt.Sprintf("label %s changed %q -> %q", k, before.Labels[k], v))
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

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
