package health

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/kube"
	"github.com/prox-ops/drover/internal/rollout"
)

// ProbeLabel marks drover's probe pods; its value is the probe's kind.
const ProbeLabel = "drover.prox-ops.io/probe"

// The probe kinds.
const (
	ProbeDNS        = "dns"
	ProbeNetwork    = "network"
	ProbeScheduling = "scheduling"
)

func isProbe(p *corev1.Pod) bool { _, ok := p.Labels[ProbeLabel]; return ok }

// dns: the kube-dns Service has ready endpoints, and the cluster name
// resolves from a probe pod on the node (for the whole cluster, on a Ready
// node), so a node whose DNS is broken fails, whatever the runner sees.
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
	var o outcome
	if ready == 0 {
		o.fail("kube-dns-endpoints", "", true, "the kube-dns Service has no ready endpoints (is CoreDNS running?)")
	}
	node := in.Node.Name
	if node == "" {
		if node, err = g.someReadyNode(ctx, in.Exclude); err != nil || node == "" {
			return o, err
		}
	}
	const host = "kubernetes.default.svc.cluster.local"
	ok, detail, err := g.probe(ctx, ProbeDNS, []string{"nslookup", host}, onNode(node))
	if err != nil {
		return o, err
	}
	if !ok {
		o.fail("dns/"+node, node, true, "%s does not resolve from a pod on %s: %s", host, node, detail)
	}
	return o, nil
}

// someReadyNode is a Ready, schedulable node not in exclude, by name.
func (g *Gate) someReadyNode(ctx context.Context, exclude []string) (string, error) {
	nodes, err := g.reader().Nodes(ctx)
	if err != nil {
		return "", err
	}
	var names []string
	for _, n := range nodes {
		if kube.IsReady(n) && !n.Spec.Unschedulable && !contains(exclude, n.Name) {
			names = append(names, n.Name)
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "", nil
	}
	return names[0], nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// network: from a probe on the node, a pod on another node (a CoreDNS pod,
// port 53) and the kubernetes Service (443) answer TCP.
func (g *Gate) network(ctx context.Context, in rollout.GateInput) (outcome, error) {
	if in.Node.Name == "" {
		return outcome{skipped: "needs a node"}, nil
	}
	pods, err := g.reader().PodsIn(ctx, "kube-system", labels.SelectorFromSet(labels.Set{"k8s-app": "kube-dns"}))
	if err != nil {
		return outcome{}, err
	}
	cmd := "nc -z -w 3 kubernetes.default.svc 443"
	peer := ""
	for _, p := range pods {
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
	ok, detail, err := g.probe(ctx, ProbeNetwork, []string{"sh", "-c", cmd}, onNode(in.Node.Name))
	if err != nil {
		return o, err
	}
	if !ok {
		o.fail("network/"+in.Node.Name, in.Node.Name, true, "from a pod on %s: %s (tried: %s)", in.Node.Name, detail, cmd)
	}
	return o, nil
}

// scheduling: a probe pod with no node set, pinned to the node only by a
// required node affinity, is bound by the scheduler and starts there: the
// node takes workloads again. For the whole cluster, the pod goes wherever
// the scheduler puts it.
func (g *Gate) scheduling(ctx context.Context, in rollout.GateInput) (outcome, error) {
	var o outcome
	ok, detail, err := g.probe(ctx, ProbeScheduling, []string{"true"}, byAffinity(in.Node.Name))
	if err != nil {
		return o, err
	}
	if !ok {
		where := "anywhere in the cluster"
		if in.Node.Name != "" {
			where = "onto " + in.Node.Name
		}
		o.fail("scheduling/"+in.Node.Name, in.Node.Name, in.Node.Name == "", "a pod could not be scheduled %s and started: %s", where, detail)
	}
	return o, nil
}

// placement puts a probe pod on a node.
type placement func(spec *corev1.PodSpec)

// onNode binds the pod to the node directly, past the scheduler, tolerating
// every taint: the probe tests the node's network, not its scheduling.
func onNode(node string) placement {
	return func(spec *corev1.PodSpec) {
		spec.NodeName = node
		spec.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
	}
}

// byAffinity leaves the pod to the scheduler, pinned to the node (if any)
// by a required node affinity and tolerating only the control-plane taint:
// a cordoned or tainted node does not take it.
func byAffinity(node string) placement {
	return func(spec *corev1.PodSpec) {
		spec.Tolerations = []corev1.Toleration{{Key: "node-role.kubernetes.io/control-plane", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
		if node == "" {
			return
		}
		spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{
				{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{node}},
			}}},
		}}}
	}
}

// ProbeError is a probe pod that could not be run at all: the check fails
// with the cause (for a refusal, the verb, resource and namespace drover
// lacks), so a missing permission is never mistaken for a sick node.
type ProbeError struct {
	Namespace string
	Err       error
}

// restrictedContainer is what Pod Security "restricted" asks of a
// container: no privilege escalation, every capability dropped, a
// read-only root filesystem (the probes write nothing).
func restrictedContainer() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true), RunAsNonRoot: ptr.To(true),
		Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
}

// admissionRE finds an admission refusal in a Forbidden error: Pod
// Security's ("violates PodSecurity "restricted:latest": ...") or a
// webhook's.
var admissionRE = regexp.MustCompile(`violates PodSecurity "([^"]+)"|admission webhook "([^"]+)" denied`)

// Admission says which admission refused the probe pod ("" when the
// refusal is not admission's: RBAC).
func (e *ProbeError) Admission() string {
	if !apierrors.IsForbidden(e.Err) {
		return ""
	}
	m := admissionRE.FindStringSubmatch(e.Err.Error())
	switch {
	case m == nil:
		return ""
	case m[1] != "":
		return `Pod Security "` + m[1] + `"`
	default:
		return `admission webhook "` + m[2] + `"`
	}
}

func (e *ProbeError) Error() string {
	if a := e.Admission(); a != "" {
		return fmt.Sprintf("admission refused the probe pod in namespace %s (%s; not a permission: RBAC allowed it): %v; "+
			"drover's probe pods meet Pod Security \"restricted\": look for a policy or webhook there that asks more, or set health.probeNamespace to a namespace that admits them", e.Namespace, a, e.Err)
	}
	if apierrors.IsForbidden(e.Err) {
		return fmt.Sprintf("drover may not create pods in namespace %s (grant create, get and delete on pods there; the kit's runner Role does): %v", e.Namespace, e.Err)
	}
	return fmt.Sprintf("create a probe pod in namespace %s: %v", e.Namespace, e.Err)
}

func (e *ProbeError) Unwrap() error { return e.Err }

// probe runs a short-lived pod placed by place, waits on the clock for it
// to finish, judges it by its exit status, and always deletes it.
func (g *Gate) probe(ctx context.Context, kind string, command []string, place placement) (ok bool, detail string, err error) {
	s := g.settings()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	name := fmt.Sprintf("drover-probe-%s-%s", kind, hex.EncodeToString(b))
	deadline := int64(s.CheckTimeout.Duration.Seconds())
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: s.ProbeNamespace, Labels: map[string]string{ProbeLabel: kind}},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever, ActiveDeadlineSeconds: &deadline,
			Containers: []corev1.Container{{Name: "probe", Image: s.ProbeImage, Command: command, SecurityContext: restrictedContainer()}},
			// Admitted under Pod Security "restricted", which Talos warns
			// and audits by default and an operator may enforce.
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To(int64(65534)), RunAsGroup: ptr.To(int64(65534)),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			AutomountServiceAccountToken: ptr.To(false),
		},
	}
	place(&pod.Spec)
	pods := g.Client.CoreV1().Pods(s.ProbeNamespace)
	if _, err := pods.Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return false, "", &ProbeError{Namespace: s.ProbeNamespace, Err: err}
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
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed, describe(p), nil
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

// describe says where a probe pod stands: not scheduled (and why), or its phase.
func describe(p *corev1.Pod) string {
	if p.Spec.NodeName == "" {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
				return "not scheduled: " + strings.TrimSpace(c.Reason+" "+c.Message)
			}
		}
		return "not scheduled yet"
	}
	return "phase " + string(p.Status.Phase) + " on " + p.Spec.NodeName
}
