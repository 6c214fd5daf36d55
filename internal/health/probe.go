package health

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/rollout"
)

// ProbeLabel marks drover's probe pods; its value is the probe's kind.
const ProbeLabel = "drover.prox-ops.io/probe"

// The probe kinds.
const (
	ProbeDNS     = "dns"
	ProbeNetwork = "network"
)

func isProbe(p *corev1.Pod) bool { _, ok := p.Labels[ProbeLabel]; return ok }

// dns: the kube-dns Service has ready endpoints, and the cluster name
// resolves from inside the cluster (from drover's own pod, or a probe pod
// on the node).
func (g *Gate) dns(ctx context.Context, in rollout.GateInput) (outcome, error) {
	slices, err := g.Client.DiscoveryV1().EndpointSlices("kube-system").List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=kube-dns"})
	if err != nil {
		return outcome{}, err
	}
	ready := 0
	for _, s := range slices.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				ready++
			}
		}
	}
	var d []string
	if ready == 0 {
		d = append(d, "the kube-dns Service has no ready endpoints (is CoreDNS running?)")
	}
	const host = "kubernetes.default.svc.cluster.local"
	switch {
	case g.Resolve != nil:
		if err := g.Resolve(ctx, host); err != nil {
			d = append(d, fmt.Sprintf("%s does not resolve from drover's pod: %v", host, err))
		}
	case in.Node.Name != "":
		ok, detail, err := g.probe(ctx, in.Node.Name, ProbeDNS, []string{"nslookup", host})
		if err != nil {
			return outcome{diags: d}, err
		}
		if !ok {
			d = append(d, fmt.Sprintf("%s does not resolve from a pod on %s: %s", host, in.Node.Name, detail))
		}
	}
	return outcome{diags: d}, nil
}

// network: from a probe on the node, a pod on another node (a CoreDNS pod,
// port 53) and the kubernetes Service (443) answer TCP.
func (g *Gate) network(ctx context.Context, in rollout.GateInput) (outcome, error) {
	if in.Node.Name == "" {
		return outcome{skipped: "needs a node"}, nil
	}
	pods, err := g.Client.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "k8s-app=kube-dns"})
	if err != nil {
		return outcome{}, err
	}
	cmd := "nc -z -w 3 kubernetes.default.svc 443"
	peer := ""
	for _, p := range pods.Items {
		if p.Spec.NodeName != in.Node.Name && p.Status.PodIP != "" && p.Status.Phase == corev1.PodRunning {
			peer = p.Status.PodIP
			cmd += " && nc -z -w 3 " + p.Status.PodIP + " 53"
			break
		}
	}
	var o outcome
	if peer == "" {
		o.notes = append(o.notes, "no pod on another node to reach: only pod-to-service was tested")
	}
	ok, detail, err := g.probe(ctx, in.Node.Name, ProbeNetwork, []string{"sh", "-c", cmd})
	if err != nil {
		return o, err
	}
	if !ok {
		o.diags = append(o.diags, fmt.Sprintf("from a pod on %s: %s (tried: %s)", in.Node.Name, detail, cmd))
	}
	return o, nil
}

// probe runs a short-lived pod pinned to node, waits on the clock for it to
// finish, judges it by its exit status, and always deletes it.
func (g *Gate) probe(ctx context.Context, node, kind string, command []string) (ok bool, detail string, err error) {
	s := g.settings()
	if err := g.ensureNamespace(ctx, s.ProbeNamespace); err != nil {
		return false, "", err
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	name := fmt.Sprintf("drover-probe-%s-%s", kind, hex.EncodeToString(b))
	deadline := int64(s.CheckTimeout.Duration.Seconds())
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.ProbeNamespace, Labels: map[string]string{ProbeLabel: kind}},
		Spec: corev1.PodSpec{
			NodeName: node, RestartPolicy: corev1.RestartPolicyNever, ActiveDeadlineSeconds: &deadline,
			Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Containers:  []corev1.Container{{Name: "probe", Image: s.ProbeImage, Command: command}},
		},
	}
	pods := g.Client.CoreV1().Pods(s.ProbeNamespace)
	if _, err := pods.Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return false, "", fmt.Errorf("create probe pod: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		zero := int64(0)
		_ = pods.Delete(dctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	}()
	var final *corev1.Pod
	err = clock.Poll(ctx, g.Clock, "probe pod "+name, 500*time.Millisecond, s.CheckTimeout.Duration, func(ctx context.Context) (bool, string, error) {
		p, err := pods.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		final = p
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed, "phase " + string(p.Status.Phase), nil
	})
	if err != nil {
		return false, "probe did not finish: " + err.Error(), nil
	}
	if final.Status.Phase == corev1.PodSucceeded {
		return true, "", nil
	}
	detail = "probe failed"
	for _, cs := range final.Status.ContainerStatuses {
		if t := cs.State.Terminated; t != nil {
			detail = fmt.Sprintf("probe exited with %d", t.ExitCode)
			if t.Message != "" {
				detail += ": " + t.Message
			}
		}
	}
	return false, detail, nil
}

func (g *Gate) ensureNamespace(ctx context.Context, ns string) error {
	_, err := g.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = g.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("probe namespace %s: %w", ns, err)
	}
	return nil
}
