package talos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/version"
)

// ImageCheckName is the image preflight's name (--skip-image-check).
const ImageCheckName = "image check"

// Registry says whether an image exists.
type Registry interface {
	Head(ctx context.Context, ref string) error
}

// Puller pulls an image onto a node, ahead of its upgrade.
type Puller interface {
	Pull(ctx context.Context, n plan.Node, ref string) error
}

// ErrNoPull is a node whose Talos offers no image pull (before v1.13).
var ErrNoPull = errors.New("its Talos has no image pull API (before v1.13)")

// ImageCheck is the preflight of an in-place upgrade's images: before any
// node is touched, every distinct target image exists in its registry (a
// manifest request), and each node to upgrade pulls its own. A typo in a
// schematic or a registry outage stops the run with nothing drained.
type ImageCheck struct {
	Talos    config.Talos
	Registry Registry
	// Puller, when set, pre-pulls each node's image through its Talos API.
	Puller Puller
	// Log is told which nodes could not pre-pull, and why.
	Log func(node, msg string)
}

// Name implements rollout.Preflight.
func (ImageCheck) Name() string { return ImageCheckName }

// Check implements rollout.Preflight. Cattle nodes boot their templates'
// images, built by Terraform: only pets plans are checked.
func (c ImageCheck) Check(ctx context.Context, p plan.Plan) error {
	if p.Strategy != version.Pets {
		return nil
	}
	refs := map[string][]string{}
	var nodes []plan.Node
	for _, b := range p.Batches {
		for _, n := range b.Nodes {
			ref, err := targetRef(c.Talos, n, p.To.Talos)
			if err != nil {
				return fmt.Errorf("%s: %w", n.Name, err)
			}
			refs[ref] = append(refs[ref], n.Name)
			n.Image = ref
			nodes = append(nodes, n)
		}
	}
	var problems []string
	for _, ref := range sortedKeys(refs) {
		if err := c.Registry.Head(ctx, ref); err != nil {
			problems = append(problems, fmt.Sprintf("%s (for %s): %v", ref, strings.Join(refs[ref], ", "), err))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("the target images are not in their registry (pass --skip-image-check only for a registry drover cannot reach): %s", strings.Join(problems, "; "))
	}
	if c.Puller == nil {
		return nil
	}
	for _, n := range nodes {
		err := c.Puller.Pull(ctx, n, n.Image)
		switch {
		case errors.Is(err, ErrNoPull):
			if c.Log != nil {
				c.Log(n.Name, "not pre-pulled: "+err.Error()+"; it pulls "+n.Image+" during its upgrade")
			}
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s cannot pull %s: %v", n.Name, n.Image, err))
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

func targetRef(t config.Talos, n plan.Node, to version.Version) (string, error) {
	if n.Image != "" {
		return WithVersion(n.Image, to.String()), nil
	}
	return InstallerImage(t, to)
}

func sortedKeys(m map[string][]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// RemoteRegistry asks the image's registry for its manifest (a HEAD
// request), anonymously or with the credentials of ~/.docker/config.json.
type RemoteRegistry struct{}

// Head implements Registry.
func (RemoteRegistry) Head(ctx context.Context, ref string) error {
	r, err := name.ParseReference(ref)
	if err != nil {
		return err
	}
	if _, err := remote.Head(r, remote.WithContext(ctx)); err != nil {
		// A HEAD answer has no body: ask again with GET for the
		// registry's own words (MANIFEST_UNKNOWN, UNAUTHORIZED, ...).
		if _, gerr := remote.Get(r, remote.WithContext(ctx)); gerr != nil {
			return gerr
		}
		return err
	}
	return nil
}

// Pull pulls ref onto the node through its Talos API's ImageService.
func (a *API) Pull(ctx context.Context, pn plan.Node, ref string) error {
	n := pn.Node
	st, err := a.Client.ImageClient.Pull(a.nodeCtx(ctx, n), &machineapi.ImageServicePullRequest{Containerd: containerd(), ImageRef: ref})
	if err == nil {
		for {
			if _, err = st.Recv(); err != nil {
				break
			}
		}
		if isEOF(err) {
			return nil
		}
	}
	if status.Code(err) == codes.Unimplemented {
		return ErrNoPull
	}
	return err
}

var _ Puller = (*API)(nil)

func isEOF(err error) bool { return errors.Is(err, io.EOF) }
