package run

import (
	"context"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/talos"
	"github.com/prox-ops/drover/internal/version"
)

// NodeImage is what a node runs and what it is upgraded with, as the plan
// says it.
type NodeImage struct {
	// Current is the node's install image, schematic and extensions (empty
	// when its Talos API could not tell).
	Current rollout.Image `json:"current"`
	// Target is the installer image an in-place upgrade installs.
	Target string `json:"target,omitempty"`
	// TargetSchematic is the schematic of Target.
	TargetSchematic string `json:"targetSchematic,omitempty"`
	// Source says where Target came from.
	Source string `json:"source"`
	// Asked: talos.installerImages names the node, so its schematic may
	// change on purpose.
	Asked bool `json:"asked,omitempty"`
}

// readImages asks each node what it was installed from; a node that
// cannot tell is left out (its target then comes from the configuration).
func (p *Planned) readImages(ctx context.Context) map[string]rollout.Image {
	reader := p.Site.Images()
	if reader == nil {
		return nil
	}
	out := map[string]rollout.Image{}
	for _, n := range p.Config.Nodes {
		img, err := reader.NodeImage(ctx, plan.Node{Node: n})
		if err != nil {
			p.env.warn("the image of %s could not be read (%v): its target comes from talos.installerImage", n.Name, err)
			continue
		}
		out[n.Name] = img
	}
	return out
}

// nodeLabels are the Node objects' labels, for talos.installerImages
// selectors.
func (p *Planned) nodeLabels(ctx context.Context) map[string]map[string]string {
	out := map[string]map[string]string{}
	kc := p.Site.Client()
	if kc == nil || len(p.Config.Talos.InstallerImages) == 0 {
		return out
	}
	list, err := kc.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		p.env.warn("list the Node labels for talos.installerImages: %v", err)
		return out
	}
	for _, n := range list.Items {
		out[n.Name] = n.Labels
	}
	return out
}

// resolveImages gives each node its target image: an entry of
// talos.installerImages that names or selects it (a change of schematic
// on purpose), else its own image with the target version, else
// talos.installerImage. A pets target that would change a node's
// schematic without the configuration saying so is refused.
func resolveImages(cfg *config.Config, current map[string]rollout.Image, labels map[string]map[string]string, to version.Version, strategy version.Strategy) (map[string]NodeImage, error) {
	out := map[string]NodeImage{}
	var changed []string
	for _, n := range cfg.Nodes {
		ni := NodeImage{Current: current[n.Name]}
		explicit := false
		for i, im := range cfg.Talos.InstallerImages {
			if im.Matches(n.Name, labels[n.Name]) {
				ni.Target = strings.ReplaceAll(im.Image, config.InstallerPlaceholder, to.String())
				ni.Source, explicit, ni.Asked = fmt.Sprintf("talos.installerImages[%d]", i), true, true
				break
			}
		}
		switch {
		case explicit:
		case ni.Current.Ref != "":
			ni.Target, ni.Source = talos.WithVersion(ni.Current.Ref, to.String()), "its own image (its machine configuration's install image)"
		case cfg.Talos.InstallerImage != "":
			ni.Target, ni.Source = cfg.Talos.Image(to.String()), "talos.installerImage (its own image could not be read)"
		default:
			ni.Source = "none: its image could not be read and talos.installerImage is not set"
		}
		ni.TargetSchematic = talos.SchematicOf(ni.Target)
		if strategy == version.Pets && !explicit && ni.Current.Schematic != "" && ni.TargetSchematic != "" && ni.TargetSchematic != ni.Current.Schematic {
			changed = append(changed, fmt.Sprintf("%s runs schematic %s%s but would get %s from %s", n.Name, short(ni.Current.Schematic), extList(ni.Current.Extensions), short(ni.TargetSchematic), ni.Source))
		}
		out[n.Name] = ni
	}
	if len(changed) > 0 {
		return out, &rollout.BlockedError{Reason: "a target image would change a node's schematic, and the configuration does not say so: " + strings.Join(changed, "; ") +
			" (to change a schematic on purpose, name the nodes in talos.installerImages)"}
	}
	return out, nil
}

// planImages are the resolved images in the plan's terms.
func planImages(images map[string]NodeImage) map[string]plan.NodeImage {
	out := map[string]plan.NodeImage{}
	for name, ni := range images {
		// A schematic goes with the node only when the configuration asks
		// for it: otherwise the node keeps the one it booted, and a node
		// that comes back with another has lost something.
		want := ""
		if ni.Asked {
			want = ni.TargetSchematic
		}
		out[name] = plan.NodeImage{Image: ni.Target, Schematic: want}
	}
	return out
}

func short(schematic string) string {
	if len(schematic) > 12 {
		return schematic[:12] + "…"
	}
	return schematic
}

func extList(exts []string) string {
	if len(exts) == 0 {
		return ""
	}
	return " (" + strings.Join(exts, ", ") + ")"
}

// Schematics groups the nodes by the schematic they run, for people:
// "schematic 376567988ad3… (qemu-guest-agent)" -> nodes.
func (p *Planned) Schematics() map[string][]string {
	out := map[string][]string{}
	for _, n := range p.Config.Nodes {
		ni, ok := p.Images[n.Name]
		if !ok {
			continue
		}
		key := "schematic unknown (its Talos API did not say)"
		if s := ni.Current.Schematic; s != "" {
			key = "schematic " + short(s) + extList(ni.Current.Extensions)
		}
		out[key] = append(out[key], n.Name)
	}
	return out
}
