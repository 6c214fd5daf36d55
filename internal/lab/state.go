package lab

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/prox-ops/drover/internal/version"
)

// State is the lab cluster saved between processes (--lab-state), so a
// crashed rehearsal can be resumed: the VMs and their versions, which
// nodes are cordoned, the templates, etcd, the workloads' pods and where
// they ran, and the virtual time.
type State struct {
	Clock     time.Time          `json:"clock"`
	VMs       map[string]VMState `json:"vms"`
	Templates []string           `json:"templates"`
	Etcd      EtcdState          `json:"etcd"`
	// Stats carry the safety counters across processes.
	Stats Stats `json:"stats"`
	// Pods are the workloads' pods and where they ran; Seq names the next.
	Pods []PodState `json:"pods,omitempty"`
	Seq  int        `json:"seq,omitempty"`
	// RunnerNode is where drover's runner pod runs.
	RunnerNode string `json:"runnerNode,omitempty"`
}

// PodState is one pod of a workload.
type PodState struct {
	App     string `json:"app"` // namespace/name
	Name    string `json:"name"`
	Node    string `json:"node,omitempty"`
	Running bool   `json:"running,omitempty"`
}

// VMState is one VM.
type VMState struct {
	Running       bool   `json:"running"`
	Talos         string `json:"talos"`
	Kubernetes    string `json:"kubernetes"`
	Unschedulable bool   `json:"unschedulable,omitempty"`
	// Image is the installer image the node was installed from.
	Image string `json:"image,omitempty"`
}

// EtcdState is the simulated etcd.
type EtcdState struct {
	Members map[string]uint64 `json:"members"`
	Leader  uint64            `json:"leader"`
	NextID  uint64            `json:"nextID"`
}

// Snapshot captures the lab's state.
func (l *Lab) Snapshot() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := State{Clock: l.Clock.Now(), VMs: map[string]VMState{}, Etcd: EtcdState{Members: map[string]uint64{}, Leader: l.etcd.leader, NextID: l.etcd.nextID}, Stats: l.stats}
	for name, v := range l.vms {
		vs := VMState{Running: v.running, Talos: v.at.Talos.String(), Kubernetes: v.at.Kubernetes.String(), Image: v.image}
		if n := l.node(name); n != nil {
			vs.Unschedulable = n.Spec.Unschedulable
		}
		st.VMs[name] = vs
	}
	for t := range l.tmpl {
		st.Templates = append(st.Templates, t)
	}
	sort.Strings(st.Templates)
	for k, v := range l.etcd.members {
		st.Etcd.Members[k] = v
	}
	for _, p := range l.store.sorted(l.store.all) {
		if a := l.appOf(p); a != nil {
			st.Pods = append(st.Pods, PodState{App: a.key(), Name: p.Name, Node: p.Spec.NodeName, Running: p.Status.Phase == corev1.PodRunning})
		}
	}
	st.Seq = l.seq
	if l.runner != nil {
		st.RunnerNode = l.runner.pinned
	}
	return st
}

// SaveState writes the lab's state to path (atomically).
func (l *Lab) SaveState(path string) error {
	data, err := json.MarshalIndent(l.Snapshot(), "", "  ")
	if err != nil {
		return err
	}
	// Parallel workers save at once: each through a temporary file of its
	// own, renamed over the state (the last rename wins, whole).
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// LoadState reads a saved lab state; a missing file is (nil, nil).
func LoadState(path string) (*State, error) {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("lab state %s: %w", path, err)
	}
	return &st, nil
}

// restore applies a saved state before the cluster is seeded; l.mu need
// not be held (the lab is not shared yet).
func (l *Lab) restore(st *State) error {
	for name, vs := range st.VMs {
		v, ok := l.vms[name]
		if !ok {
			return fmt.Errorf("lab state: node %s is not in the inventory", name)
		}
		t, err := version.Parse(vs.Talos, true)
		if err != nil {
			return fmt.Errorf("lab state: %s: %w", name, err)
		}
		k, err := version.Parse(vs.Kubernetes, true)
		if err != nil {
			return fmt.Errorf("lab state: %s: %w", name, err)
		}
		v.running, v.at = vs.Running, version.Pair{Talos: t, Kubernetes: k}
		if vs.Image != "" {
			v.image = vs.Image
		}
	}
	for _, t := range st.Templates {
		l.tmpl[t] = true
	}
	l.stats = st.Stats
	l.saved, l.seq = st.Pods, st.Seq
	l.etcd = etcdState{members: map[string]uint64{}, leader: st.Etcd.Leader, nextID: st.Etcd.NextID}
	for k, v := range st.Etcd.Members {
		l.etcd.members[k] = v
	}
	return nil
}
