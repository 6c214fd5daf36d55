package run

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/prox-ops/drover/internal/assemble"
	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/health"
	"github.com/prox-ops/drover/internal/lab"
	"github.com/prox-ops/drover/internal/observe"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/version"
)

// LabSpec describes the lab a run rehearses on.
type LabSpec struct {
	// Start is what the lab's nodes run at first (a saved state wins).
	Start version.Pair
	// Faults are the faults injected into nodes; FaultsNow shows the
	// health faults from the start.
	Faults    map[string]lab.Fault
	FaultsNow bool
	// StatePath keeps the lab between processes (--lab-state).
	StatePath string
	// CrashAt is NODE:STEP: drover dies right after the journal records it.
	CrashAt string
	// Crash ends the process at once (the rehearsed crash).
	Crash func()
	// PodsPerNode fills the workers with replicated services.
	PodsPerNode int
	// Log is told what the simulated infrastructure does.
	Log func(node, msg string)
	// RunnerNode is where drover's runner pod runs (lab.RunnerNone: outside
	// the cluster; "": where the lab's scheduler puts it).
	RunnerNode string
}

// labSite is the embedded lab.
type labSite struct {
	lab  *lab.Lab
	spec LabSpec
	// crashNode and crashStep are --lab-crash-at, parsed.
	crashNode, crashStep string
}

// OpenLab builds the lab for cfg at its starting versions, or from its
// saved state.
func OpenLab(cfg *config.Config, spec LabSpec) (Site, error) {
	for node := range spec.Faults {
		if _, ok := cfg.NodeByName(node); !ok {
			return nil, Usage(fmt.Errorf("--lab-fault: no node %q in the inventory", node))
		}
	}
	s := &labSite{spec: spec}
	if spec.CrashAt != "" {
		if err := s.parseCrash(cfg); err != nil {
			return nil, err
		}
	}
	var saved *lab.State
	if spec.StatePath != "" {
		var err error
		if saved, err = lab.LoadState(spec.StatePath); err != nil {
			return nil, Usage(err)
		}
	}
	lab.AddStandInHook(cfg, spec.Faults)
	l, err := lab.New(lab.Options{Config: *cfg, Talos: spec.Start.Talos, Kubernetes: spec.Start.Kubernetes, Faults: spec.Faults,
		Log: spec.Log, FaultsNow: spec.FaultsNow, State: saved, PodsPerNode: spec.PodsPerNode, RunnerNode: spec.RunnerNode})
	if err != nil {
		return nil, Usage(err)
	}
	s.lab = l
	return s, nil
}

func (s *labSite) parseCrash(cfg *config.Config) error {
	node, step, ok := strings.Cut(s.spec.CrashAt, ":")
	if !ok || node == "" || step == "" {
		return Usage(fmt.Errorf("--lab-crash-at %q: want NODE:STEP, such as k8s-work-2:destroy", s.spec.CrashAt))
	}
	if _, ok := cfg.NodeByName(node); !ok {
		return Usage(fmt.Errorf("--lab-crash-at: no node %q in the inventory", node))
	}
	if step != "replace" && step != string(rollout.StepHook) && !rollout.IsNodeStep(rollout.Step(step)) {
		return Usage(fmt.Errorf("--lab-crash-at: unknown step %q; steps are replace, hook (the node's first hook), %s", step, rollout.NodeSteps()))
	}
	s.crashNode, s.crashStep = node, step
	return nil
}

// Lab is the site's lab, for callers that rehearse on it directly.
func (s *labSite) Lab() *lab.Lab { return s.lab }

func (s *labSite) Source() string               { return "the lab" }
func (s *labSite) Client() kubernetes.Interface { return s.lab.Client }
func (s *labSite) Clock() clock.Clock           { return s.lab.Clock }
func (s *labSite) Versions() *observe.Reader {
	return &observe.Reader{Client: s.lab.Client, Talos: s.lab.Talos()}
}
func (s *labSite) EventsClient() kubernetes.Interface { return s.lab.Client }
func (s *labSite) LockClient() kubernetes.Interface   { return s.lab.Client }
func (s *labSite) Images() rollout.ImageReader        { return s.lab.Talos() }

// Self is where the lab runs drover's runner pod.
func (s *labSite) Self(context.Context, Env) (Self, error) {
	pod := s.lab.RunnerPod()
	if pod == nil {
		return Self{}, nil
	}
	return Self{Node: pod.Spec.NodeName, Namespace: pod.Namespace, Pod: pod.Name, Source: "the lab's runner pod", Spec: pod}, nil
}

// HandOver plays the continuation of a hand-off in this process, unless
// the lab is kept (--lab-state): then the run exits 6 and --resume
// continues it, as on a real cluster.
func (s *labSite) HandOver() (bool, error) {
	if s.spec.StatePath != "" {
		return false, nil
	}
	if _, _, _, err := s.lab.HandOver(); err != nil {
		return false, err
	}
	return true, nil
}
func (s *labSite) Defaults() Defaults { return Defaults{} }
func (s *labSite) Close()             { s.lab.Close() }

// CompleteInventory: the lab's inventory is complete.
func (s *labSite) CompleteInventory(context.Context, *config.Config, version.Change, Env) (map[string]string, error) {
	return nil, nil
}

func (s *labSite) Adapters(context.Context, *Upgrade) (assemble.Adapters, func(), error) {
	return s.lab.Adapters(), func() {}, nil
}

func (s *labSite) Gate(Env) (*health.Gate, error) { return s.lab.Health(), nil }

func (s *labSite) BuildTemplates(ctx context.Context, p *Planned) (bool, error) {
	built, err := s.lab.Hypervisor().BuildTemplates(ctx, p.Change.To)
	if err != nil {
		return false, err
	}
	if s.spec.StatePath != "" {
		if err := s.lab.SaveState(s.spec.StatePath); err != nil {
			return false, fmt.Errorf("save the lab state: %w", err)
		}
	}
	return built, nil
}

// Journal saves the lab with every entry (--lab-state) and plays the
// rehearsed crash (--lab-crash-at).
func (s *labSite) Journal(j rollout.Journal, p *Planned) rollout.Journal {
	if s.spec.StatePath == "" && s.crashNode == "" {
		return j
	}
	lj := &labJournal{inner: j, lab: s.lab, state: s.spec.StatePath, crash: s.spec.Crash, node: s.crashNode, step: rollout.Step(s.crashStep)}
	if s.crashStep == "replace" { // the replacement as a whole: it starts with the destroy (or the in-place upgrade)
		lj.step = rollout.StepDestroy
		if p.Plan.Strategy == version.Pets {
			lj.step = rollout.StepUpgrade
		}
	}
	return lj
}

func (s *labSite) Finished(env Env) []string {
	if s.spec.StatePath != "" {
		if err := s.lab.SaveState(s.spec.StatePath); err != nil {
			env.warn("save the lab state: %v", err)
		}
	}
	if line := s.events(); line != "" {
		return []string{line}
	}
	return nil
}

// events says what the lab's Nodes got as Events, as kubectl describe
// node would show them on a real cluster.
func (s *labSite) events() string {
	evs, err := s.lab.Client.EventsV1().Events(metav1.NamespaceDefault).List(context.Background(), metav1.ListOptions{})
	if err != nil || len(evs.Items) == 0 {
		return ""
	}
	count := map[string]int{}
	for _, e := range evs.Items {
		if e.ReportingController == "drover" {
			count[e.Reason]++
		}
	}
	var parts []string
	for _, r := range slices.Sorted(maps.Keys(count)) {
		parts = append(parts, fmt.Sprintf("%s %d", r, count[r]))
	}
	return fmt.Sprintf("lab: drover recorded %d Events on the Nodes (%s)", len(evs.Items), strings.Join(parts, ", "))
}

func (s *labSite) Stats() *LabStats {
	st := s.lab.Stats()
	return &LabStats{PDBViolations: st.PDBViolations, MaxControlPlaneDown: st.MaxControlPlaneDown, EtcdLeaderLost: st.EtcdLeaderLost}
}

// labJournal keeps the lab's state in step with the journal, and plays the
// rehearsed crash.
type labJournal struct {
	// mu keeps an entry and the state saved with it together: parallel
	// workers record at once, and an older state must never be saved
	// over a newer one.
	mu    sync.Mutex
	inner rollout.Journal
	lab   *lab.Lab
	state string
	node  string
	step  rollout.Step
	crash func()
}

func (j *labJournal) Record(ctx context.Context, e rollout.Entry) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.inner.Record(ctx, e); err != nil {
		return err
	}
	if j.state != "" {
		if err := j.lab.SaveState(j.state); err != nil {
			return fmt.Errorf("save the lab state: %w", err)
		}
	}
	if j.node != "" && e.Node == j.node && e.Step == j.step && e.Status == rollout.StatusStarted {
		// The rehearsed crash: no cleanup, no lock release, nothing flushed.
		if j.crash == nil {
			panic(errors.New("drover: a rehearsed crash (--lab-crash-at) needs a crash function"))
		}
		j.crash()
	}
	return nil
}
