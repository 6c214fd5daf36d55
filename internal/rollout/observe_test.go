package rollout

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/version"
)

// sightStub answers what observe asks; a name in gone has no Node, no VM
// and no etcd member, and every question about it errs.
type sightStub struct {
	gone  map[string]bool
	ready bool
}

var errGone = errors.New("gone")

func (s sightStub) Identity(_ context.Context, n string) (Identity, error) {
	if s.gone[n] {
		return Identity{}, errGone
	}
	return Identity{Ready: s.ready, Unschedulable: true}, nil
}
func (sightStub) Cordon(context.Context, string) error   { return nil }
func (sightStub) Uncordon(context.Context, string) error { return nil }
func (sightStub) Drain(context.Context, string, time.Duration, func(string)) error {
	return nil
}
func (sightStub) DeleteNode(context.Context, string) error { return nil }
func (sightStub) WaitReady(context.Context, string, ReadyWant, time.Duration) (Identity, error) {
	return Identity{}, nil
}
func (s sightStub) NodeVersions(_ context.Context, n plan.Node, _ bool) (Observed, error) {
	if s.gone[n.Name] {
		return Observed{}, errGone
	}
	return Observed{Versions: version.Pair{Talos: version.MustParse("v1.11.3")}}, nil
}
func (s sightStub) VMExists(_ context.Context, n plan.Node) (bool, error) {
	if s.gone[n.Name] {
		return false, errGone
	}
	return true, nil
}
func (sightStub) EnsureTemplates(context.Context, version.Pair) error     { return nil }
func (sightStub) Destroy(context.Context, []plan.Node) error              { return nil }
func (sightStub) Create(context.Context, []plan.Node, version.Pair) error { return nil }
func (sightStub) BeforeNode(context.Context, plan.Node) (Snapshot, error) { return Snapshot{}, nil }
func (sightStub) BeforeDestroy(context.Context, plan.Node) error          { return nil }
func (sightStub) AfterNode(context.Context, plan.Node) error              { return nil }
func (s sightStub) IsMember(_ context.Context, n plan.Node) (bool, error) {
	if s.gone[n.Name] {
		return false, errGone
	}
	return true, nil
}

// TestObserveTellsWhatItCouldSee: what observe could read is set, what it
// could not stays unknown (nil), never a guess; the VM only for cattle,
// membership only for the control plane.
func TestObserveTellsWhatItCouldSee(t *testing.T) {
	s := sightStub{gone: map[string]bool{"gone": true}, ready: true}
	e := &Engine{Cluster: s, Versions: s, Replacer: s, Guard: s}
	cp := plan.Node{Node: config.Node{Name: "cp", Role: config.RoleControlPlane}}
	w := plan.Node{Node: config.Node{Name: "w", Role: config.RoleWorker}}
	gone := plan.Node{Node: config.Node{Name: "gone", Role: config.RoleControlPlane}}
	cattle, pets := plan.Plan{Strategy: version.Cattle}, plan.Plan{Strategy: version.Pets}

	got := e.observe(context.Background(), cattle, cp)
	if !got.Exists || !got.Ready || !got.Cordoned || got.Versions == nil || got.VM == nil || !*got.VM || got.Member == nil || !*got.Member {
		t.Fatalf("a control-plane node in a cattle run: %+v", got)
	}
	if got := e.observe(context.Background(), pets, w); got.VM != nil || got.Member != nil || got.Versions == nil {
		t.Fatalf("a worker in a pets run: %+v", got)
	}
	if got := e.observe(context.Background(), cattle, gone); got.Exists || got.Versions != nil || got.VM != nil || got.Member != nil {
		t.Fatalf("a node nothing can be read of: %+v", got)
	}
}
