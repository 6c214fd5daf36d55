package kube_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/kube"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/testenv"
)

// TestHookJobsRunByTheJobController: drover's hooks are Jobs that the real
// Job controller runs (the simulated kubelet ends their pods, as it cannot
// run a container): one that succeeds, told the node and the versions; the
// same hook called again (a resumed run) is not repeated; one that fails
// is named with its pod's message; called again after a failure (the
// operator resumed), it runs anew.
func TestHookJobsRunByTheJobController(t *testing.T) {
	testenv.Require(t, env)
	ctx := context.Background()
	ns := env.Namespace(t, "hooks")
	k := testenv.NewKubelets(env.Client, ns)
	t.Cleanup(k.Close)
	nodes(t, k, "v1.12.0", "hook-w-1")
	env.WaitSchedulable(t, "hook-w-1")
	var failing atomic.Bool
	var ran atomic.Int32
	k.HookResult = func(p *corev1.Pod) (bool, string) {
		ran.Add(1)
		if failing.Load() {
			return false, "ceph: noout could not be set\n(more)"
		}
		return true, ""
	}
	hooks := &kube.Hooks{Client: env.Drover, Clock: clock.Real{}, Namespace: ns, RunID: "20261203T120000Z-abcdef12", PollInterval: 100 * time.Millisecond,
		Specs: map[rollout.HookPoint]kube.HookSpec{rollout.HookBeforeNode: {
			Image: "registry.k8s.io/kubectl:v1.34.1", Command: []string{"sh", "-c", "echo {node}"}, Timeout: time.Minute,
			// Its pod runs where this test's kubelet runs.
			NodeSelector: map[string]string{"kubernetes.io/hostname": "hook-w-1"},
		}}}
	call := rollout.HookCall{Point: rollout.HookBeforeNode, Node: "k8s-work-2", Env: map[string]string{"DROVER_NODE": "k8s-work-2", "DROVER_TO_TALOS": "v1.12.0"}}
	name := kube.JobName(hooks.RunID, call.Point, call.Node)

	if err := hooks.RunHook(ctx, call); err != nil {
		t.Fatal(err)
	}
	job, err := env.Client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := job.Spec.Template.Spec.Containers[0]
	if strings.Join(c.Command, " ") != "sh -c echo k8s-work-2" || len(c.Env) != 2 || c.Env[0].Name != "DROVER_NODE" || c.Env[0].Value != "k8s-work-2" {
		t.Fatalf("the hook's container: %v %v", c.Command, c.Env)
	}
	if job.Status.Succeeded != 1 || ran.Load() != 1 {
		t.Fatalf("the Job: %+v; pods run %d", job.Status, ran.Load())
	}

	// A resumed run calls it again: the Job that succeeded stands.
	if err := hooks.RunHook(ctx, call); err != nil {
		t.Fatal(err)
	}
	again, err := env.Client.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil || again.UID != job.UID || ran.Load() != 1 {
		t.Fatalf("the hook ran again on a resume (%v, pods run %d)", err, ran.Load())
	}

	// Another node's hook fails: its pod's message is named.
	failing.Store(true)
	other := rollout.HookCall{Point: rollout.HookBeforeNode, Node: "k8s-work-3"}
	err = hooks.RunHook(ctx, other)
	var he *rollout.HookError
	if !errors.As(err, &he) || !strings.Contains(err.Error(), "container exited 1: ceph: noout could not be set") || strings.Contains(err.Error(), "(more)") {
		t.Fatalf("a failed hook: %v", err)
	}
	failed, err := env.Client.BatchV1().Jobs(ns).Get(ctx, kube.JobName(hooks.RunID, other.Point, other.Node), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Resumed after the operator fixed what failed: a new try.
	failing.Store(false)
	if err := hooks.RunHook(ctx, other); err != nil {
		t.Fatal(err)
	}
	retried, err := env.Client.BatchV1().Jobs(ns).Get(ctx, kube.JobName(hooks.RunID, other.Point, other.Node), metav1.GetOptions{})
	if err != nil || retried.UID == failed.UID || retried.Status.Succeeded != 1 {
		t.Fatalf("the retried hook: %v, same Job %v", err, retried.UID == failed.UID)
	}
}

// TestJobNamesAreValidAndDistinct: a Job's name is at most 63 characters,
// a DNS label, and differs per run, point and node.
func TestJobNamesAreValidAndDistinct(t *testing.T) {
	long := strings.Repeat("k8s-work-", 7)
	seen := map[string]bool{}
	for _, tc := range []struct {
		run   string
		point rollout.HookPoint
		node  string
	}{
		{"r1", rollout.HookBeforeRun, ""}, {"r2", rollout.HookBeforeRun, ""}, {"r1", rollout.HookBeforeNode, "k8s-work-1"},
		{"r1", rollout.HookAfterNode, "k8s-work-1"}, {"r1", rollout.HookBeforeNode, long + "1"}, {"r1", rollout.HookBeforeNode, long + "2"},
	} {
		n := kube.JobName(tc.run, tc.point, tc.node)
		if len(n) > 63 || strings.HasSuffix(n, "-") || n != strings.ToLower(n) || seen[n] {
			t.Errorf("%+v: %q", tc, n)
		}
		seen[n] = true
	}
}
