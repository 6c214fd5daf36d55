package talos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"

	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/version"
)

// UpgradeK8s upgrades Kubernetes with Talos's own `talosctl upgrade-k8s`,
// a dry run first, through one control-plane node.
type UpgradeK8s struct {
	// Talosctl is the executable; "" means talosctl on PATH.
	Talosctl    string
	Talosconfig string
	// Node is the control-plane node (IP) talosctl talks to.
	Node string
	// Out receives talosctl's output (drover passes a masking writer).
	Out      io.Writer
	LookPath func(string) (string, error)
}

var (
	_ rollout.KubernetesUpgrader = (*UpgradeK8s)(nil)
	_ rollout.Preflight          = (*UpgradeK8s)(nil)
)

func (u *UpgradeK8s) binary() (string, error) {
	look := u.LookPath
	if look == nil {
		look = exec.LookPath
	}
	name := u.Talosctl
	if name == "" {
		name = "talosctl"
	}
	p, err := look(name)
	if err != nil {
		return "", fmt.Errorf("%s not found: a Kubernetes upgrade of a pets run uses `talosctl upgrade-k8s`; install talosctl matching the cluster's Talos version (%w)", name, err)
	}
	return p, nil
}

// Name names the preflight.
func (u *UpgradeK8s) Name() string { return "talosctl" }

// Check makes sure talosctl is there before any change, when the plan
// upgrades Kubernetes.
func (u *UpgradeK8s) Check(_ context.Context, p plan.Plan) error {
	if !p.KubernetesPhase {
		return nil
	}
	_, err := u.binary()
	return err
}

// UpgradeKubernetes runs upgrade-k8s with --dry-run, then for real.
func (u *UpgradeK8s) UpgradeKubernetes(ctx context.Context, from, to version.Version) error {
	bin, err := u.binary()
	if err != nil {
		return err
	}
	if u.Node == "" {
		return errors.New("talosctl upgrade-k8s needs a control-plane node")
	}
	base := []string{"--talosconfig", u.Talosconfig, "--nodes", u.Node, "upgrade-k8s",
		"--from", strings.TrimPrefix(from.String(), "v"), "--to", strings.TrimPrefix(to.String(), "v")}
	for _, dry := range []bool{true, false} {
		args := base
		what := "upgrade-k8s"
		if dry {
			args = append(append([]string(nil), base...), "--dry-run")
			what = "upgrade-k8s --dry-run"
		}
		cmd := exec.CommandContext(ctx, bin, args...)
		out := u.Out
		if out == nil {
			out = io.Discard
		}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("talosctl %s %s -> %s: %w", what, from, to, err)
		}
	}
	return nil
}
