package talos

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/siderolabs/talos/pkg/machinery/resources/config"
	"github.com/siderolabs/talos/pkg/machinery/resources/runtime"

	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/rollout"
)

// SchematicExtension is the extension Image Factory images carry: its
// version is the image's schematic ID.
const SchematicExtension = "schematic"

var factoryIDRE = regexp.MustCompile(`/[a-z0-9-]+-installer(?:-secureboot)?/([0-9a-f]{64})(?::|@|$)`)

// SchematicOf is the Image Factory schematic ID in an image reference
// (factory.talos.dev/<platform>-installer/<schematic>:<version>), or "".
func SchematicOf(ref string) string {
	if m := factoryIDRE.FindStringSubmatch(ref); m != nil {
		return m[1]
	}
	return ""
}

// WithVersion is ref with its tag (and digest) replaced by version.
func WithVersion(ref, version string) string {
	repo := ref
	if i := strings.Index(repo, "@"); i >= 0 {
		repo = repo[:i]
	}
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	return repo + ":" + version
}

// NodeImage reads what the node was installed from: the install image of
// its active machine configuration, and the system extensions it booted
// (the "schematic" one names its Image Factory schematic). Nothing else of
// the machine configuration (which holds secrets) is kept or shown.
func (a *API) NodeImage(ctx context.Context, pn plan.Node) (rollout.Image, error) {
	n := pn.Node
	nctx := a.nodeCtx(ctx, n)
	var img rollout.Image
	mc, err := safe.StateGetByID[*config.MachineConfig](nctx, a.Client.COSI, config.ActiveID)
	if err != nil {
		return img, fmt.Errorf("read the machine configuration of %s: %w", n.Name, err)
	}
	if c := mc.Config(); c != nil && c.Machine() != nil && c.Machine().Install() != nil {
		img.Ref = c.Machine().Install().Image()
	}
	exts, err := safe.StateListAll[*runtime.ExtensionStatus](nctx, a.Client.COSI)
	if err != nil {
		return img, fmt.Errorf("list the extensions of %s: %w", n.Name, err)
	}
	for e := range exts.All() {
		md := e.TypedSpec().Metadata
		if md.Name == SchematicExtension {
			img.Schematic = md.Version
			continue
		}
		img.Extensions = append(img.Extensions, md.Name)
	}
	sort.Strings(img.Extensions)
	if img.Schematic == "" {
		img.Schematic = SchematicOf(img.Ref)
	}
	return img, nil
}

var _ rollout.ImageReader = (*API)(nil)
