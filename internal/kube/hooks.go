package kube

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/rollout"
)

// HookLabel marks a hook's Job and its pods; its value is the hook point.
const HookLabel = "drover.prox-ops.io/hook"

// DefaultHookTimeout bounds a hook whose timeout is not set.
const DefaultHookTimeout = 10 * time.Minute

// HookSpec is one configured hook: the container its Job runs.
type HookSpec struct {
	Image   string
	Command []string
	// ServiceAccountName is the Job's ServiceAccount ("" the default).
	ServiceAccountName string
	NodeSelector       map[string]string
	Timeout            time.Duration
}

// Hooks runs the operator's hooks as Kubernetes Jobs in drover's
// namespace and waits for each to finish. A Job's name is the run's, the
// point's and the node's: a resumed run finds the Job it started, waits
// for it if it runs, and does not repeat one that succeeded; a failed one
// is replaced by a new try.
type Hooks struct {
	Client    kubernetes.Interface
	Clock     clock.Clock
	Namespace string
	RunID     string
	Specs     map[rollout.HookPoint]HookSpec
	// PollInterval is how often the Job is looked at (default 2s).
	PollInterval time.Duration
	// Progress, when set, is told what the hook does.
	Progress func(node, msg string)
}

var _ rollout.HookRunner = (*Hooks)(nil)

// Has says whether a hook is configured at p.
func (h *Hooks) Has(p rollout.HookPoint) bool {
	_, ok := h.Specs[p]
	return ok
}

// JobName is the name of the Job of one hook run: readable, at most 63
// characters, unique per run, point and node.
func JobName(runID string, p rollout.HookPoint, node string) string {
	sum := sha256.Sum256([]byte(runID + "/" + string(p) + "/" + node))
	base := "drover-" + strings.ToLower(string(p))
	if node != "" {
		base += "-" + node
	}
	if len(base) > 54 {
		base = strings.TrimRight(base[:54], "-")
	}
	return base + "-" + hex.EncodeToString(sum[:])[:8]
}

// RunHook runs the hook of c.Point and waits for its Job to succeed.
func (h *Hooks) RunHook(ctx context.Context, c rollout.HookCall) error {
	spec, ok := h.Specs[c.Point]
	if !ok {
		return nil
	}
	timeout := spec.Timeout
	if timeout <= 0 {
		timeout = DefaultHookTimeout
	}
	name := JobName(h.RunID, c.Point, c.Node)
	jobs := h.Client.BatchV1().Jobs(h.Namespace)
	existing, err := jobs.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		existing = nil
	case err != nil:
		return fmt.Errorf("read Job %s/%s: %w", h.Namespace, name, err)
	case jobSucceeded(existing):
		h.say(c.Node, fmt.Sprintf("hook %s: Job %s succeeded before (a resumed run): not run again", c.Point, name))
		return nil
	case jobFailed(existing) != "":
		// A failed try of an earlier attempt: the operator resumed, try again.
		if err := h.remove(ctx, name); err != nil {
			return err
		}
		existing = nil
	default:
		h.say(c.Node, fmt.Sprintf("hook %s: Job %s is still running from before the resume: waiting for it", c.Point, name))
	}
	if existing == nil {
		if _, err := jobs.Create(ctx, h.job(name, c, spec, timeout), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create the hook's Job %s/%s: %w", h.Namespace, name, err)
		}
		h.say(c.Node, fmt.Sprintf("hook %s: Job %s/%s started (%s, up to %s)", c.Point, h.Namespace, name, spec.Image, timeout))
	}
	var why string
	err = clock.Poll(ctx, h.Clock, "hook "+string(c.Point)+" (Job "+name+")", h.interval(), timeout, func(ctx context.Context) (bool, string, error) {
		j, err := jobs.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		if jobSucceeded(j) {
			return true, "", nil
		}
		if why = jobFailed(j); why != "" {
			return true, "", nil
		}
		return false, fmt.Sprintf("%d active, %d failed", j.Status.Active, j.Status.Failed), nil
	})
	if err == nil && why == "" {
		h.say(c.Node, fmt.Sprintf("hook %s: Job %s succeeded", c.Point, name))
		return nil
	}
	if err != nil && ctx.Err() != nil {
		return err // a stop: the Job goes on; a resume finds it
	}
	if err != nil {
		why = fmt.Sprintf("it did not finish within %s", timeout)
		// Nothing left running that the run no longer waits for.
		_ = h.remove(context.WithoutCancel(ctx), name)
	} else if msg := h.podMessage(ctx, name); msg != "" {
		why += ": " + msg
	}
	return &rollout.HookError{Point: c.Point, Node: c.Node, Err: fmt.Errorf("job %s/%s: %s", h.Namespace, name, why)}
}

func (h *Hooks) interval() time.Duration {
	if h.PollInterval > 0 {
		return h.PollInterval
	}
	return 2 * time.Second
}

func (h *Hooks) say(node, msg string) {
	if h.Progress != nil {
		h.Progress(node, msg)
	}
}

// job is the hook's Job: one pod, no retries, bounded by the timeout, kept
// a day after it finished (a resumed run finds it).
func (h *Hooks) job(name string, c rollout.HookCall, spec HookSpec, timeout time.Duration) *batchv1.Job {
	labels := map[string]string{HookLabel: strings.ToLower(string(c.Point)), "drover.prox-ops.io/run": h.RunID}
	if c.Node != "" {
		labels["drover.prox-ops.io/node"] = c.Node
	}
	var env []corev1.EnvVar
	for _, k := range slices.Sorted(maps.Keys(c.Env)) {
		env = append(env, corev1.EnvVar{Name: k, Value: c.Env[k]})
	}
	command := make([]string, len(spec.Command))
	for i, s := range spec.Command {
		command[i] = strings.ReplaceAll(s, "{node}", c.Node)
	}
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.Namespace, Labels: labels},
		Spec: batchv1.JobSpec{
			BackoffLimit:            ptr.To(int32(0)),
			ActiveDeadlineSeconds:   ptr.To(int64(timeout.Seconds())),
			TTLSecondsAfterFinished: ptr.To(int32(24 * 3600)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					RestartPolicy:      corev1.RestartPolicyNever,
					ServiceAccountName: spec.ServiceAccountName,
					NodeSelector:       spec.NodeSelector,
					SecurityContext:    &corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
					Containers: []corev1.Container{{
						Name: "hook", Image: spec.Image, Command: command, Env: env,
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr.To(false),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
					}},
				},
			},
		},
	}
}

// remove deletes a Job and its pods.
func (h *Hooks) remove(ctx context.Context, name string) error {
	err := h.Client.BatchV1().Jobs(h.Namespace).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete the hook's Job %s/%s: %w", h.Namespace, name, err)
	}
	// The name is free once the Job is gone.
	return clock.Poll(ctx, h.Clock, "Job "+name+" to be deleted", h.interval(), time.Minute, func(ctx context.Context) (bool, string, error) {
		_, err := h.Client.BatchV1().Jobs(h.Namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, "", nil
		}
		return false, "still there", nil
	})
}

// podMessage is what the hook's failed pod said (its container's
// termination message, else its exit code).
func (h *Hooks) podMessage(ctx context.Context, job string) string {
	pods, err := h.Client.CoreV1().Pods(h.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + job})
	if err != nil {
		return ""
	}
	for _, p := range pods.Items {
		for _, cs := range p.Status.ContainerStatuses {
			if t := cs.State.Terminated; t != nil && t.ExitCode != 0 {
				msg := fmt.Sprintf("container exited %d", t.ExitCode)
				if m := strings.TrimSpace(t.Message); m != "" {
					msg += ": " + firstLine(m)
				}
				return msg
			}
		}
	}
	return ""
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

func jobSucceeded(j *batchv1.Job) bool {
	return jobCondition(j, batchv1.JobComplete) != nil
}

// jobFailed is why the Job failed, or "".
func jobFailed(j *batchv1.Job) string {
	c := jobCondition(j, batchv1.JobFailed)
	if c == nil {
		return ""
	}
	why := "failed"
	if c.Reason != "" {
		why += " (" + c.Reason + ")"
	}
	if c.Message != "" {
		why += ": " + c.Message
	}
	return why
}

func jobCondition(j *batchv1.Job, t batchv1.JobConditionType) *batchv1.JobCondition {
	for i := range j.Status.Conditions {
		if c := &j.Status.Conditions[i]; c.Type == t && c.Status == corev1.ConditionTrue {
			return c
		}
	}
	return nil
}
