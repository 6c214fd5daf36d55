package lab

import (
	"context"
	"fmt"
	"io"
	"sort"

	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/talos"
)

// etcdState is the simulated etcd of the control plane; l.mu guards it.
type etcdState struct {
	members map[string]uint64 // node name -> member ID
	leader  uint64
	nextID  uint64
}

func (l *Lab) seedEtcd() {
	l.etcd = etcdState{members: map[string]uint64{}, nextID: 0x1000}
	for _, name := range l.order {
		if l.vms[name].node.IsControlPlane() {
			l.etcdJoin(name)
		}
	}
	// The second control-plane node leads, so a run shows both cases.
	if id, ok := l.etcd.members["k8s-ctrl-2"]; ok {
		l.etcd.leader = id
	}
}

// etcdJoin adds a member for a control-plane node; l.mu must be held.
func (l *Lab) etcdJoin(name string) {
	if _, ok := l.etcd.members[name]; ok {
		return
	}
	l.etcd.nextID++
	l.etcd.members[name] = l.etcd.nextID
	if l.etcd.leader == 0 {
		l.etcd.leader = l.etcd.nextID
	}
}

// Etcd is the lab's etcd, seen through its simulated Talos API.
type Etcd struct{ lab *Lab }

// Etcd returns the lab's etcd API for the control-plane guard.
func (l *Lab) Etcd() Etcd { return Etcd{lab: l} }

var _ talos.EtcdAPI = Etcd{}

func (e Etcd) reachable(n config.Node) error {
	v := e.lab.vms[n.Name]
	if v == nil || !v.running || e.lab.node(n.Name) == nil {
		return fmt.Errorf("%s: connection refused (the node is down)", n.Name)
	}
	return nil
}

// Members lists the members.
func (e Etcd) Members(_ context.Context, n config.Node) ([]talos.Member, error) {
	e.lab.mu.Lock()
	defer e.lab.mu.Unlock()
	if err := e.reachable(n); err != nil {
		return nil, err
	}
	var out []talos.Member
	for name, id := range e.lab.etcd.members {
		out = append(out, talos.Member{ID: id, Hostname: name})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Status is the node's member status.
func (e Etcd) Status(_ context.Context, n config.Node) (talos.Status, error) {
	e.lab.mu.Lock()
	defer e.lab.mu.Unlock()
	if err := e.reachable(n); err != nil {
		return talos.Status{}, err
	}
	id, ok := e.lab.etcd.members[n.Name]
	if !ok {
		return talos.Status{Errors: []string{"etcd is not running on this node"}}, nil
	}
	return talos.Status{MemberID: id, Leader: e.lab.etcd.leader}, nil
}

// Snapshot writes a small simulated snapshot.
func (e Etcd) Snapshot(_ context.Context, n config.Node, w io.Writer) error {
	e.lab.mu.Lock()
	err := e.reachable(n)
	members := len(e.lab.etcd.members)
	e.lab.mu.Unlock()
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "drover lab etcd snapshot of %s taken on %s at %s (%d members)\n", e.lab.opts.Config.Cluster.Name, n.Name, e.lab.Clock.Now().UTC().Format("2006-01-02T15:04:05Z"), members)
	return err
}

// ForfeitLeadership hands leadership to another member.
func (e Etcd) ForfeitLeadership(_ context.Context, n config.Node) error {
	e.lab.mu.Lock()
	defer e.lab.mu.Unlock()
	if err := e.reachable(n); err != nil {
		return err
	}
	e.lab.etcd.leader = e.lab.otherMember(n.Name)
	return nil
}

// LeaveCluster removes the node's member.
func (e Etcd) LeaveCluster(_ context.Context, n config.Node) error {
	e.lab.mu.Lock()
	defer e.lab.mu.Unlock()
	if err := e.reachable(n); err != nil {
		return err
	}
	id := e.lab.etcd.members[n.Name]
	delete(e.lab.etcd.members, n.Name)
	if e.lab.etcd.leader == id {
		e.lab.stats.EtcdLeaderLost++ // the leader left without handing over
		e.lab.etcd.leader = e.lab.otherMember(n.Name)
	}
	return nil
}

// leaderDown counts a control-plane node going down while it leads etcd;
// l.mu must be held.
func (l *Lab) leaderDown(node string) {
	if id, ok := l.etcd.members[node]; ok && id == l.etcd.leader {
		l.stats.EtcdLeaderLost++
		l.log(node, "ETCD LEADER DOWN: the node went down while leading etcd")
		l.etcd.leader = l.otherMember(node)
	}
}

// otherMember is the lowest member ID not of node; l.mu must be held.
func (l *Lab) otherMember(node string) uint64 {
	var best uint64
	for name, id := range l.etcd.members {
		if name != node && (best == 0 || id < best) {
			best = id
		}
	}
	return best
}
