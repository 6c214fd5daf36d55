package lab

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/version"
)

// The lab's Image Factory schematics: the GPU workers boot the NVIDIA
// system extensions (PRD CR6), every node the QEMU guest agent. The base
// schematic is the one of talos.installerImage.
const (
	// GPUSchematic is the lab's schematic of the GPU workers.
	GPUSchematic = "b94d1cfa9e0a4c1bd1b3a1d35d0c0c2aaf5bb6c1cf5e18c6b4f73a0f8e7d6c51"
	// DefaultSchematic is the base schematic when the configuration has none.
	DefaultSchematic = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"
)

var (
	baseExtensions = []string{"qemu-guest-agent"}
	gpuExtensions  = []string{"nonfree-kmod-nvidia-production", "nvidia-container-toolkit-production", "qemu-guest-agent"}
	labSchematicRE = regexp.MustCompile(`-installer/([0-9a-f]{64})`)
)

func schematicOf(ref string) string {
	if m := labSchematicRE.FindStringSubmatch(ref); m != nil {
		return m[1]
	}
	return ""
}

// baseSchematic is the schematic of talos.installerImage.
func (l *Lab) baseSchematic() string {
	if s := schematicOf(l.opts.Config.Talos.InstallerImage); s != "" {
		return s
	}
	return DefaultSchematic
}

// imageAt is the factory image of a schematic at a version.
func imageAt(schematic string, v version.Version) string {
	return "factory.talos.dev/nocloud-installer/" + schematic + ":" + v.String()
}

// initialImage is what a node was installed from: the GPU schematic on GPU
// workers, the base one elsewhere.
func (l *Lab) initialImage(n config.Node, at version.Version) string {
	if n.GPUs > 0 {
		return imageAt(GPUSchematic, at)
	}
	return imageAt(l.baseSchematic(), at)
}

// extensionsOf are the system extensions a schematic boots.
func (l *Lab) extensionsOf(schematic string) []string {
	if schematic == GPUSchematic {
		return gpuExtensions
	}
	return baseExtensions
}

// hasNVIDIA says whether the node's booted image drives its GPUs; l.mu
// must be held.
func (l *Lab) hasNVIDIA(v *vm) bool {
	return slices.Contains(l.extensionsOf(schematicOf(v.image)), "nonfree-kmod-nvidia-production")
}

var (
	_ rollout.ImageReader = (*Talos)(nil)
)

// NodeImage is what the node's Talos API says it was installed from. With
// the wrong-image fault its machine configuration's install image names
// another schematic than the one it booted (a GPU worker's config says the
// base one): drover, keeping the node's image, must see the mismatch.
func (t *Talos) NodeImage(_ context.Context, n plan.Node) (rollout.Image, error) {
	l := t.lab
	l.mu.Lock()
	defer l.mu.Unlock()
	v, ok := l.vms[n.Name]
	if !ok || !v.running || l.node(n.Name) == nil {
		return rollout.Image{}, fmt.Errorf("%s (%s): connection refused (the node is down)", n.Name, n.IP)
	}
	booted := schematicOf(v.image)
	ref := v.image
	if v.fault == FaultWrongImage && v.at == v.initial {
		other := l.baseSchematic()
		if booted == other {
			other = GPUSchematic
		}
		ref = imageAt(other, v.at.Talos)
	}
	return rollout.Image{Ref: ref, Schematic: booted, Extensions: slices.Clone(l.extensionsOf(booted))}, nil
}

// Registry is the lab's image registry: Image Factory has every image,
// but for a node with the image-missing fault its target is not there.
type Registry struct{ lab *Lab }

// Registry returns the lab's image registry.
func (l *Lab) Registry() Registry { return Registry{lab: l} }

// Head says whether the registry has ref.
func (r Registry) Head(_ context.Context, ref string) error {
	if r.lab.missing(ref) {
		return fmt.Errorf("GET https://%s: MANIFEST_UNKNOWN: manifest unknown; unknown tag=%s", strings.Replace(ref, ":", "/manifests/", 1), ref[strings.LastIndex(ref, ":")+1:])
	}
	return nil
}

// missing says whether ref is an image the registry lacks: the target of
// a node with the image-missing fault.
func (l *Lab) missing(ref string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, name := range l.faulty(FaultImageMissing) {
		v := l.vms[name]
		if schematicOf(ref) == schematicOf(v.image) && !strings.HasSuffix(ref, ":"+v.initial.Talos.String()) {
			return true
		}
	}
	return false
}

// Pull pulls ref onto the node (ahead of its upgrade).
func (t *Talos) Pull(ctx context.Context, n plan.Node, ref string) error {
	if t.lab.missing(ref) {
		return fmt.Errorf("failed to pull image %q: not found", ref)
	}
	return nil
}
