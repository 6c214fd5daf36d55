package lab

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stesting "k8s.io/client-go/testing"

	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/kube"
	"github.com/prox-ops/drover/internal/rollout"
)

// HookDuration is how long a hook's Job runs in the lab.
const HookDuration = 20 * time.Second

var jobsGVR = schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "jobs"}

// installJobs plays the Job controller and kubelet for drover's hook Jobs:
// each finishes HookDuration after it was created, successfully unless its
// node's fault is hook-fails and it is the node's beforeNode hook.
func (l *Lab) installJobs() {
	l.Client.PrependReactor("create", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
		j, ok := a.(k8stesting.CreateAction).GetObject().(*batchv1.Job)
		if !ok {
			return false, nil, nil
		}
		ns, name := a.GetNamespace(), j.Name
		point, node := j.Labels[kube.HookLabel], j.Labels["drover.prox-ops.io/node"]
		l.Clock.AfterFunc(HookDuration, func() { l.finishJob(ns, name, point, node) })
		return false, nil, nil // the tracker stores it
	})
}

// AddStandInHook gives the hook-fails fault something to fail: a
// beforeNode hook, when the configuration has none.
func AddStandInHook(cfg *config.Config, faults map[string]Fault) {
	for _, f := range faults {
		if f == FaultHookFails && cfg.Hooks.BeforeNode == nil {
			cfg.Hooks.BeforeNode = &config.Hook{Image: "busybox:1.37", Command: []string{"sh", "-c", "echo before {node}"}}
		}
	}
}

// finishJob ends a hook Job as the Job controller would.
func (l *Lab) finishJob(ns, name, point, node string) {
	l.mu.Lock()
	fails := point == "beforenode" && l.vms[node] != nil && l.vms[node].fault == FaultHookFails
	l.mu.Unlock()
	obj, err := l.Client.Tracker().Get(jobsGVR, ns, name)
	if err != nil {
		return // deleted meanwhile
	}
	j := obj.(*batchv1.Job).DeepCopy()
	now := metav1.NewTime(l.Clock.Now())
	c := batchv1.JobCondition{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now}
	if fails {
		c = batchv1.JobCondition{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, LastTransitionTime: now,
			Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit (lab fault hook-fails)"}
		j.Status.Failed = 1
	} else {
		j.Status.Succeeded = 1
	}
	j.Status.Conditions = append(j.Status.Conditions, c)
	j.Status.CompletionTime = &now
	_ = l.Client.Tracker().Update(jobsGVR, j, ns)
}

// HookJobs are the hook Jobs drover created, by name, sorted.
func (l *Lab) HookJobs(ctx context.Context) ([]string, error) {
	list, err := l.Client.BatchV1().Jobs(metav1.NamespaceAll).List(ctx, metav1.ListOptions{LabelSelector: kube.HookLabel})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, j := range list.Items {
		out = append(out, j.Name)
	}
	sort.Strings(out)
	return out, nil
}

// Silence is one silence the lab's Alertmanager holds or held.
type Silence struct {
	ID, Node         string
	Created, Expired time.Time
}

// silences is the lab's Alertmanager taking drover's silences.
type silences struct{ lab *Lab }

// Silences is the lab's Alertmanager silences when the inventory asks
// for them (health.alertmanager.silences), else nil.
func (l *Lab) Silences() rollout.Silencer {
	if len(l.opts.Config.Health.Alertmanager.Silences) == 0 {
		return nil
	}
	return silences{lab: l}
}

// SilenceLog is every silence drover held in the lab, in order.
func (l *Lab) SilenceLog() []Silence {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.silenced)
}

func (s silences) Silence(_ context.Context, node string) (string, error) {
	l := s.lab
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, si := range l.silenced {
		if si.Node == node && si.Expired.IsZero() {
			return si.ID, nil
		}
	}
	id := fmt.Sprintf("lab-silence-%d", len(l.silenced)+1)
	l.silenced = append(l.silenced, Silence{ID: id, Node: node, Created: l.Clock.Now()})
	return id, nil
}

func (s silences) Expire(_ context.Context, node string) (bool, error) {
	return s.expire(func(si Silence) bool { return si.Node == node }) > 0, nil
}

func (s silences) ExpireAll(context.Context) error {
	s.expire(func(Silence) bool { return true })
	return nil
}

func (s silences) expire(which func(Silence) bool) int {
	l := s.lab
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for i := range l.silenced {
		if l.silenced[i].Expired.IsZero() && which(l.silenced[i]) {
			l.silenced[i].Expired = l.Clock.Now()
			n++
		}
	}
	return n
}
