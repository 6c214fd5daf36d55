package talos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/common"
	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/client"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/version"
)

// API talks to every node through one Talos client; the node travels in
// the context (client.WithNode), so one client serves all of them.
type API struct {
	Client *client.Client
	Clock  clock.Clock
	Talos  config.Talos
	// RebootTimeout bounds the wait for a node to answer at its new version.
	RebootTimeout time.Duration
	// PollInterval is how often the wait asks the node's version.
	PollInterval time.Duration
	// Log, when set, is told which path ran and what the image is.
	Log func(node, msg string)
}

var _ rollout.Upgrader = (*API)(nil)

// LifecycleSince is the first Talos minor with the LifecycleService API.
var LifecycleSince = version.MustParse("v1.13.0")

func (a *API) log(node, format string, args ...any) {
	if a.Log != nil {
		a.Log(node, fmt.Sprintf(format, args...))
	}
}

func (a *API) nodeCtx(ctx context.Context, n config.Node) context.Context {
	return client.WithNode(ctx, n.IP)
}

// NodeVersion asks the node which Talos it runs.
func (a *API) NodeVersion(ctx context.Context, n config.Node) (version.Version, error) {
	resp, err := a.Client.Version(a.nodeCtx(ctx, n))
	if err != nil {
		return version.Version{}, fmt.Errorf("talos version of %s: %w", n.Name, err)
	}
	if len(resp.GetMessages()) == 0 || resp.GetMessages()[0].GetVersion() == nil {
		return version.Version{}, fmt.Errorf("talos version of %s: empty answer", n.Name)
	}
	return version.Parse(resp.GetMessages()[0].GetVersion().GetTag(), true)
}

var schematicRE = regexp.MustCompile(`^[a-z0-9.-]+(:[0-9]+)?/[a-z0-9-]+-installer/[0-9a-f]{64}:v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`)

// InstallerImage builds and checks the installer image for a version.
func InstallerImage(t config.Talos, v version.Version) (string, error) {
	if t.InstallerImage == "" {
		return "", errors.New("talos.installerImage is not set")
	}
	img := t.Image(v.String())
	if !schematicRE.MatchString(img) {
		return "", fmt.Errorf("installer image %q is not <factory>/<platform>-installer/<64-hex schematic>:<version>", img)
	}
	return img, nil
}

// Upgrade upgrades the node in place to `to` and waits until it answers at
// that version. Nodes at Talos 1.13 or later take the LifecycleService path
// (pull the image, stream the upgrade, reboot); older ones the legacy
// MachineService Upgrade, which reboots by itself. Cordon, drain and
// uncordon stay with the engine.
func (a *API) Upgrade(ctx context.Context, pn plan.Node, to version.Pair) error {
	n := pn.Node
	image, err := a.imageFor(pn, to)
	if err != nil {
		return err
	}
	cur, err := a.NodeVersion(ctx, n)
	if err != nil {
		return err
	}
	nctx := a.nodeCtx(ctx, n)
	a.log(n.Name, "installer image %s", image)
	if cur.Compare(LifecycleSince) >= 0 {
		a.log(n.Name, "Talos %s: upgrading through the LifecycleService API", cur)
		if err := a.lifecycleUpgrade(nctx, n, image); err != nil {
			return err
		}
		if err := a.Client.Reboot(nctx); err != nil {
			return fmt.Errorf("reboot %s: %w", n.Name, err)
		}
	} else {
		a.log(n.Name, "Talos %s predates the LifecycleService API: upgrading through the legacy MachineService Upgrade", cur)
		//nolint:staticcheck // SA1019: deprecated for the LifecycleService, which nodes before Talos v1.13 do not have
		if _, err := a.Client.UpgradeWithOptions(nctx, client.WithUpgradeImage(image)); err != nil {
			return fmt.Errorf("upgrade %s (legacy API): %w", n.Name, err)
		}
	}
	return a.waitVersion(ctx, n, to.Talos)
}

// imageFor is the installer image for the node at to: its own image with
// the version changed, as the plan resolved it (a rollback is the node's
// own image at the old version), else talos.installerImage.
func (a *API) imageFor(pn plan.Node, to version.Pair) (string, error) {
	if pn.Image != "" {
		return WithVersion(pn.Image, to.Talos.String()), nil
	}
	return InstallerImage(a.Talos, to.Talos)
}

func containerd() *common.ContainerdInstance {
	return &common.ContainerdInstance{Driver: common.ContainerDriver_CRI, Namespace: common.ContainerdNamespace_NS_SYSTEM}
}

func (a *API) lifecycleUpgrade(ctx context.Context, n config.Node, image string) error {
	pull, err := a.Client.ImageClient.Pull(ctx, &machineapi.ImageServicePullRequest{Containerd: containerd(), ImageRef: image})
	if err != nil {
		return fmt.Errorf("pull %s on %s: %w", image, n.Name, err)
	}
	for {
		if _, err := pull.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return fmt.Errorf("pull %s on %s: %w", image, n.Name, err)
		}
	}
	st, err := a.Client.LifecycleClient.Upgrade(ctx, &machineapi.LifecycleServiceUpgradeRequest{
		Containerd: containerd(), Source: &machineapi.InstallArtifactsSource{ImageName: image},
	})
	if err != nil {
		return fmt.Errorf("upgrade %s: %w", n.Name, err)
	}
	exit := int32(-1)
	for {
		msg, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("upgrade %s: stream: %w", n.Name, err)
		}
		p := msg.GetProgress()
		if p == nil {
			continue
		}
		switch r := p.GetResponse().(type) {
		case *machineapi.LifecycleServiceInstallProgress_Message:
			a.log(n.Name, "upgrade: %s", r.Message)
		case *machineapi.LifecycleServiceInstallProgress_ExitCode:
			exit = r.ExitCode
		}
	}
	switch exit {
	case 0:
		return nil
	case -1:
		return fmt.Errorf("upgrade %s: the stream ended without an exit code", n.Name)
	}
	return fmt.Errorf("upgrade %s: the installer exited with code %d", n.Name, exit)
}

// waitVersion polls the Version API through the clock until the node
// answers at want; errors while it reboots are expected.
func (a *API) waitVersion(ctx context.Context, n config.Node, want version.Version) error {
	timeout := a.RebootTimeout
	if timeout <= 0 {
		timeout = 10 * time.Minute
	}
	interval := a.PollInterval
	if interval <= 0 {
		interval = 5 * time.Second
	}
	return clock.Poll(ctx, a.Clock, fmt.Sprintf("%s to answer at Talos %s", n.Name, want), interval, timeout, func(ctx context.Context) (bool, string, error) {
		v, err := a.NodeVersion(ctx, n)
		if err != nil {
			return false, "not answering (rebooting?): " + err.Error(), nil
		}
		return v.Compare(want) == 0, "answers at " + v.String(), nil
	})
}

// Etcd is etcd through the Talos API of the control-plane nodes.
type Etcd struct{ API *API }

var _ EtcdAPI = Etcd{}

// Members lists the etcd members, as seen from node.
func (e Etcd) Members(ctx context.Context, n config.Node) ([]Member, error) {
	resp, err := e.API.Client.EtcdMemberList(e.API.nodeCtx(ctx, n), &machineapi.EtcdMemberListRequest{})
	if err != nil {
		return nil, fmt.Errorf("etcd members via %s: %w", n.Name, err)
	}
	var out []Member
	for _, msg := range resp.GetMessages() {
		for _, m := range msg.GetMembers() {
			out = append(out, Member{ID: m.GetId(), Hostname: m.GetHostname(), Learner: m.GetIsLearner()})
		}
	}
	return out, nil
}

// Status is the node's etcd member status.
func (e Etcd) Status(ctx context.Context, n config.Node) (Status, error) {
	resp, err := e.API.Client.EtcdStatus(e.API.nodeCtx(ctx, n))
	if err != nil {
		return Status{}, fmt.Errorf("etcd status of %s: %w", n.Name, err)
	}
	if len(resp.GetMessages()) == 0 || resp.GetMessages()[0].GetMemberStatus() == nil {
		return Status{}, fmt.Errorf("etcd status of %s: empty answer", n.Name)
	}
	s := resp.GetMessages()[0].GetMemberStatus()
	return Status{MemberID: s.GetMemberId(), Leader: s.GetLeader(), Errors: s.GetErrors()}, nil
}

// Snapshot streams an etcd snapshot from node into w.
func (e Etcd) Snapshot(ctx context.Context, n config.Node, w io.Writer) error {
	r, err := e.API.Client.EtcdSnapshot(e.API.nodeCtx(ctx, n), &machineapi.EtcdSnapshotRequest{})
	if err != nil {
		return fmt.Errorf("etcd snapshot from %s: %w", n.Name, err)
	}
	defer r.Close()
	if _, err := io.Copy(w, r); err != nil {
		return fmt.Errorf("etcd snapshot from %s: %w", n.Name, err)
	}
	return nil
}

// ForfeitLeadership moves etcd leadership away from node.
func (e Etcd) ForfeitLeadership(ctx context.Context, n config.Node) error {
	if _, err := e.API.Client.EtcdForfeitLeadership(e.API.nodeCtx(ctx, n), &machineapi.EtcdForfeitLeadershipRequest{}); err != nil {
		return fmt.Errorf("etcd forfeit leadership on %s: %w", n.Name, err)
	}
	return nil
}

// LeaveCluster removes node's member from etcd.
func (e Etcd) LeaveCluster(ctx context.Context, n config.Node) error {
	if err := e.API.Client.EtcdLeaveCluster(e.API.nodeCtx(ctx, n), &machineapi.EtcdLeaveClusterRequest{}); err != nil {
		return fmt.Errorf("etcd leave cluster on %s: %w", n.Name, err)
	}
	return nil
}
