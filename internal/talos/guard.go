package talos

import (
	"context"

	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/rollout"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Member is an etcd member.
type Member struct {
	ID       uint64
	Hostname string
	Learner  bool
}

// Status is one member's view of etcd.
type Status struct {
	MemberID uint64
	Leader   uint64
	Errors   []string
}

// EtcdAPI is what the guard needs of etcd, asked through one node. The
// Talos API implements it (Etcd), and so does the lab's simulated Talos.
type EtcdAPI interface {
	Members(ctx context.Context, n config.Node) ([]Member, error)
	Status(ctx context.Context, n config.Node) (Status, error)
	Snapshot(ctx context.Context, n config.Node, w io.Writer) error
	ForfeitLeadership(ctx context.Context, n config.Node) error
	LeaveCluster(ctx context.Context, n config.Node) error
}

// Guard keeps etcd safe around every control-plane change: it checks
// health and membership before a run, snapshots etcd and moves leadership
// away before a node is touched, takes the old member out before its VM is
// destroyed, and waits for full, healthy membership before the next node.
type Guard struct {
	Etcd         EtcdAPI
	ControlPlane []config.Node
	Clock        clock.Clock
	// SnapshotDir receives the snapshots; Keep of them are kept (default 3).
	SnapshotDir string
	Keep        int
	// Timeout bounds the wait for membership to come back (default 10m).
	Timeout      time.Duration
	PollInterval time.Duration
	Log          func(node, msg string)
	// Upload, when set, copies each snapshot off the runner before the
	// node is touched (talos.etcdSnapshotUpload): a failed upload stops the
	// node like a failed snapshot.
	Upload SnapshotUploader
	// Recipients, when set, encrypt every snapshot (age) before any byte
	// of it is written: it holds every Secret of the cluster. The file is
	// NAME.snapshot.age; only the recipients' identities decrypt it.
	Recipients []age.Recipient
}

// SnapshotUploader keeps a snapshot somewhere that outlives the runner and
// says where (a URL).
type SnapshotUploader interface {
	Upload(ctx context.Context, path string) (url string, err error)
}

var (
	_ rollout.ControlPlaneGuard = (*Guard)(nil)
	_ rollout.Preflight         = (*Guard)(nil)
	_ rollout.MemberChecker     = (*Guard)(nil)
)

// EtcdUnhealthyError is etcd not fit for a control-plane change.
type EtcdUnhealthyError struct{ Detail string }

func (e *EtcdUnhealthyError) Error() string { return "etcd is not healthy: " + e.Detail }

func (g *Guard) log(node, format string, args ...any) {
	if g.Log != nil {
		g.Log(node, fmt.Sprintf(format, args...))
	}
}

// Name names the preflight.
func (g *Guard) Name() string { return "etcd health" }

// Check is the preflight: before a plan that touches the control plane,
// etcd must be healthy with one member per control-plane node. A node a
// resumed run caught mid-step (plan.InFlight) may be missing.
func (g *Guard) Check(ctx context.Context, p plan.Plan) error {
	for _, b := range p.Batches {
		for _, n := range b.Nodes {
			if n.IsControlPlane() {
				return g.healthy(ctx, p.InFlight...)
			}
		}
	}
	return nil
}

// healthy checks membership and every member's status, through the
// control-plane nodes not in tolerate. A tolerated node may be missing
// from etcd or not answer (it is the one about to be changed, or caught
// mid-change); every other control-plane node must be a healthy member, and
// all must agree on one leader.
func (g *Guard) healthy(ctx context.Context, tolerate ...string) error {
	var asked []config.Node
	for _, n := range g.ControlPlane {
		if !slices.Contains(tolerate, n.Name) {
			asked = append(asked, n)
		}
	}
	if len(asked) == 0 {
		// A single control-plane node: it is etcd, so it must answer.
		asked, tolerate = g.ControlPlane, nil
	}
	if len(asked) == 0 {
		return &EtcdUnhealthyError{Detail: "no control-plane node to ask"}
	}
	members, err := g.Etcd.Members(ctx, asked[0])
	if err != nil {
		return &EtcdUnhealthyError{Detail: err.Error()}
	}
	var names []string
	present := map[string]bool{}
	for _, m := range members {
		names = append(names, m.Hostname)
		present[m.Hostname] = true
		if m.Learner {
			return &EtcdUnhealthyError{Detail: fmt.Sprintf("member %s is still a learner", m.Hostname)}
		}
	}
	sort.Strings(names)
	want := len(g.ControlPlane)
	if len(tolerate) == 0 && len(members) != want {
		return &EtcdUnhealthyError{Detail: fmt.Sprintf("%d members (%s), want %d, one per control-plane node", len(members), strings.Join(names, ", "), want)}
	}
	for _, n := range asked {
		if !present[n.Name] {
			return &EtcdUnhealthyError{Detail: fmt.Sprintf("%d members (%s): %s is missing", len(members), strings.Join(names, ", "), n.Name)}
		}
	}
	if len(members) > want {
		return &EtcdUnhealthyError{Detail: fmt.Sprintf("%d members (%s), more than the %d control-plane nodes", len(members), strings.Join(names, ", "), want)}
	}
	leaders := map[uint64]bool{}
	for _, n := range asked {
		st, err := g.Etcd.Status(ctx, n)
		if err != nil {
			return &EtcdUnhealthyError{Detail: err.Error()}
		}
		if len(st.Errors) > 0 {
			return &EtcdUnhealthyError{Detail: fmt.Sprintf("member on %s reports: %s", n.Name, strings.Join(st.Errors, "; "))}
		}
		if st.Leader == 0 {
			return &EtcdUnhealthyError{Detail: fmt.Sprintf("member on %s sees no leader", n.Name)}
		}
		leaders[st.Leader] = true
	}
	if len(leaders) != 1 {
		return &EtcdUnhealthyError{Detail: "members disagree on the leader"}
	}
	return nil
}

// BeforeNode runs before a control-plane node is changed (forward, resumed
// or rolled back): the other members healthy, a snapshot written and
// rotated, leadership moved away if the node leads. The node itself may be
// missing from etcd or down (a resumed node after its member left, a
// rollback of a node that never joined): the snapshot then comes from
// another member.
func (g *Guard) BeforeNode(ctx context.Context, n plan.Node) (rollout.Snapshot, error) {
	if err := g.healthy(ctx, n.Name); err != nil {
		return rollout.Snapshot{}, err
	}
	st, stErr := g.Etcd.Status(ctx, n.Node)
	member := stErr == nil && len(st.Errors) == 0 && st.MemberID != 0
	from := n.Node
	if !member {
		for _, o := range g.ControlPlane {
			if o.Name != n.Name {
				from = o
				break
			}
		}
		g.log(n.Name, "is not a healthy etcd member now: the snapshot comes from %s", from.Name)
	}
	path, err := g.snapshot(ctx, from, n.Name)
	if err != nil {
		return rollout.Snapshot{}, err
	}
	snap := rollout.Snapshot{Path: path}
	if g.Upload != nil {
		url, err := g.Upload.Upload(ctx, path)
		if err != nil {
			return snap, fmt.Errorf("upload the etcd snapshot %s: %w", path, err)
		}
		snap.URL = url
		g.log(n.Name, "etcd snapshot uploaded to %s", url)
	}
	switch {
	case member && st.MemberID == st.Leader:
		g.log(n.Name, "is the etcd leader: forfeiting leadership")
		if err := g.Etcd.ForfeitLeadership(ctx, n.Node); err != nil {
			return snap, err
		}
	case member:
		g.log(n.Name, "is not the etcd leader")
	}
	return snap, nil
}

// IsMember says whether the node is an etcd member, asking the others.
func (g *Guard) IsMember(ctx context.Context, n plan.Node) (bool, error) {
	members, err := g.membersFromOthers(ctx, n.Name)
	if err != nil {
		return false, err
	}
	for _, m := range members {
		if m.Hostname == n.Name {
			return true, nil
		}
	}
	return false, nil
}

// snapshot writes a snapshot taken through from, named after the node it
// guards.
func (g *Guard) snapshot(ctx context.Context, from config.Node, guarded string) (string, error) {
	dir := g.SnapshotDir
	if dir == "" {
		dir = "etcd-snapshots"
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("etcd snapshot directory: %w", err)
	}
	name := fmt.Sprintf("etcd-%s-%s.snapshot", g.Clock.Now().UTC().Format("20060102T150405Z"), guarded)
	if len(g.Recipients) > 0 {
		name += ".age"
	}
	path := filepath.Join(dir, name)
	tmp, err := os.CreateTemp(dir, ".partial-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return "", err
	}
	// A snapshot that broke off because its Talos API endpoint went away
	// is taken again, from the start, through the next endpoint.
	for attempt := 1; ; attempt++ {
		err := g.snapshotTo(ctx, from, tmp)
		if err == nil {
			break
		}
		if attempt == 3 || ctx.Err() != nil || !transient(err) {
			tmp.Close()
			return "", err
		}
		g.log(guarded, "etcd snapshot from %s broke off (%v); taking it again", from.Name, err)
		if err := tmp.Truncate(0); err != nil {
			tmp.Close()
			return "", err
		}
		if _, err := tmp.Seek(0, io.SeekStart); err != nil {
			tmp.Close()
			return "", err
		}
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	fi, err := os.Stat(tmp.Name())
	if err != nil {
		return "", err
	}
	if fi.Size() == 0 {
		return "", fmt.Errorf("etcd snapshot from %s is empty", from.Name)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", err
	}
	g.log(guarded, "etcd snapshot %s (%d bytes, from %s)", path, fi.Size(), from.Name)
	return path, g.rotate(dir)
}

// Recipients parses the configured age public keys (validated when the
// configuration was loaded).
func Recipients(keys []string) []age.Recipient {
	var out []age.Recipient
	for _, k := range keys {
		if r, err := age.ParseX25519Recipient(strings.TrimSpace(k)); err == nil {
			out = append(out, r)
		}
	}
	return out
}

// snapshotTo streams a snapshot from node into w, through age when there
// are recipients: no plaintext byte reaches the disk.
func (g *Guard) snapshotTo(ctx context.Context, from config.Node, w io.Writer) error {
	if len(g.Recipients) == 0 {
		return g.Etcd.Snapshot(ctx, from, w)
	}
	enc, err := age.Encrypt(w, g.Recipients...)
	if err != nil {
		return fmt.Errorf("encrypt the etcd snapshot: %w", err)
	}
	if err := g.Etcd.Snapshot(ctx, from, enc); err != nil {
		return err
	}
	return enc.Close()
}

// transient says a call failed because its endpoint went away or did not
// answer in time, not because the node refused.
func transient(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return false
}

// rotate keeps the newest Keep snapshots.
func (g *Guard) rotate(dir string) error {
	keep := g.Keep
	if keep <= 0 {
		keep = 3
	}
	var files []string
	for _, pattern := range []string{"etcd-*.snapshot", "etcd-*.snapshot.age"} {
		m, err := filepath.Glob(filepath.Join(dir, pattern))
		if err != nil {
			return err
		}
		files = append(files, m...)
	}
	sort.Strings(files) // the timestamp in the name orders them
	for len(files) > keep {
		if err := os.Remove(files[0]); err != nil {
			return err
		}
		files = files[1:]
	}
	return nil
}

// BeforeDestroy takes the node's member out of etcd before its VM goes.
func (g *Guard) BeforeDestroy(ctx context.Context, n plan.Node) error {
	members, err := g.Etcd.Members(ctx, n.Node)
	if err != nil {
		// The node may already be gone (a rollback of a node that never
		// joined): ask the others whether it is still a member.
		if members, err = g.membersFromOthers(ctx, n.Name); err != nil {
			return err
		}
		for _, m := range members {
			if m.Hostname == n.Name {
				return fmt.Errorf("%s is still an etcd member but does not answer; remove it by hand (talosctl etcd remove-member)", n.Name)
			}
		}
		return nil
	}
	for _, m := range members {
		if m.Hostname == n.Name {
			g.log(n.Name, "leaving the etcd cluster")
			return g.Etcd.LeaveCluster(ctx, n.Node)
		}
	}
	return nil
}

func (g *Guard) membersFromOthers(ctx context.Context, skip string) ([]Member, error) {
	var last error
	for _, o := range g.ControlPlane {
		if o.Name == skip {
			continue
		}
		m, err := g.Etcd.Members(ctx, o)
		if err == nil {
			return m, nil
		}
		last = err
	}
	return nil, last
}

// AfterNode waits until etcd has every member again and is healthy.
func (g *Guard) AfterNode(ctx context.Context, n plan.Node) error {
	timeout := g.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Minute
	}
	interval := g.PollInterval
	if interval <= 0 {
		interval = 5 * time.Second
	}
	return clock.Poll(ctx, g.Clock, "etcd to have every member back and healthy", interval, timeout, func(ctx context.Context) (bool, string, error) {
		if err := g.healthy(ctx); err != nil {
			return false, err.Error(), nil
		}
		return true, "", nil
	})
}
