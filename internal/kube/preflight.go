package kube

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/kubectl/pkg/drain"

	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/rollout"
)

// Blocker is a PodDisruptionBudget that would stop a drain.
type Blocker struct {
	Namespace string
	PDB       string
	// Workload is Kind/name of the pods' owner, such as Deployment/web.
	Workload string
	Node     string
	Reason   string
}

// DrainBlockedError lists the budgets that would block the planned drains.
type DrainBlockedError struct {
	Blockers []Blocker
}

func (e *DrainBlockedError) Error() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%d PodDisruptionBudget(s) would block draining the planned nodes (override with --skip-drain-preflight):\n", len(e.Blockers))
	t := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(t, "  NAMESPACE\tPDB\tWORKLOAD\tNODE\tREASON")
	for _, bl := range e.Blockers {
		fmt.Fprintf(t, "  %s\t%s\t%s\t%s\t%s\n", bl.Namespace, bl.PDB, bl.Workload, bl.Node, bl.Reason)
	}
	t.Flush()
	return strings.TrimRight(b.String(), "\n")
}

// DrainPreflight finds, before any change, every PodDisruptionBudget that
// covers pods a drain of the nodes would evict and that allows no
// disruption now, can never allow one (minAvailable at or above the
// replicas, maxUnavailable 0), or protects a single-replica workload. It
// also reports pods no drain could evict (no controller, local storage).
func (c *Client) DrainPreflight(ctx context.Context, nodes []string) ([]Blocker, error) {
	h := &drain.Helper{Ctx: ctx, Client: c.Client, IgnoreAllDaemonSets: true, DeleteEmptyDirData: c.DeleteEmptyDirData, Out: io.Discard, ErrOut: io.Discard}
	pdbs, err := c.Client.PolicyV1().PodDisruptionBudgets(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list PodDisruptionBudgets: %w", err)
	}
	// Each selector is parsed once, and a pod is only held against the
	// budgets of its namespace.
	type budget struct {
		pdb *policyv1.PodDisruptionBudget
		sel labels.Selector
	}
	byNS := map[string][]budget{}
	for i := range pdbs.Items {
		pdb := &pdbs.Items[i]
		if pdb.Spec.Selector == nil {
			continue
		}
		if sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector); err == nil {
			byNS[pdb.Namespace] = append(byNS[pdb.Namespace], budget{pdb, sel})
		}
	}
	var out []Blocker
	seen := map[string]bool{}
	for _, node := range nodes {
		list, errs := h.GetPodsForDeletion(node)
		for _, err := range errs {
			out = append(out, Blocker{Node: node, Reason: "cannot be drained: " + err.Error()})
		}
		if list == nil {
			continue
		}
		for _, p := range list.Pods() {
			for _, b := range byNS[p.Namespace] {
				pdb := b.pdb
				key := pdb.Namespace + "/" + pdb.Name
				if seen[key] || !b.sel.Matches(labels.Set(p.Labels)) {
					continue
				}
				kind, name, replicas := c.workloadOf(ctx, &p)
				if reason := blockReason(pdb, replicas); reason != "" {
					seen[key] = true
					out = append(out, Blocker{Namespace: pdb.Namespace, PDB: pdb.Name, Workload: kind + "/" + name, Node: node, Reason: reason})
				}
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Namespace+out[i].PDB < out[j].Namespace+out[j].PDB })
	return out, nil
}

// blockReason says why a budget blocks a drain, or "". replicas is the
// workload's desired count, -1 when unknown.
func blockReason(pdb *policyv1.PodDisruptionBudget, replicas int) string {
	expected := replicas
	if expected < 0 {
		expected = int(pdb.Status.ExpectedPods)
	}
	var why []string
	if v := pdb.Spec.MinAvailable; v != nil {
		if n, err := intstr.GetScaledValueFromIntOrPercent(v, expected, true); err == nil && expected > 0 && n >= expected {
			why = append(why, fmt.Sprintf("can never allow a disruption: minAvailable %s >= %d replicas", v.String(), expected))
		}
	}
	if v := pdb.Spec.MaxUnavailable; v != nil {
		if n, err := intstr.GetScaledValueFromIntOrPercent(v, expected, false); err == nil && n == 0 {
			why = append(why, fmt.Sprintf("can never allow a disruption: maxUnavailable %s", v.String()))
		}
	}
	if replicas == 1 {
		why = append(why, "blocks a single-replica workload")
	}
	if len(why) == 0 && pdb.Status.ObservedGeneration > 0 && pdb.Status.DisruptionsAllowed == 0 {
		why = append(why, fmt.Sprintf("0 disruptions allowed now (%d healthy, %d needed)", pdb.Status.CurrentHealthy, pdb.Status.DesiredHealthy))
	}
	return strings.Join(why, "; ")
}

// workloadOf names the pod's top-level owner and its desired replicas (-1
// when unknown): ReplicaSet pods are credited to their Deployment.
func (c *Client) workloadOf(ctx context.Context, p *corev1.Pod) (kind, name string, replicas int) {
	ref := metav1.GetControllerOf(p)
	if ref == nil {
		return "Pod", p.Name, 1
	}
	apps := c.Client.AppsV1()
	switch ref.Kind {
	case "ReplicaSet":
		rs, err := apps.ReplicaSets(p.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return ref.Kind, ref.Name, -1
		}
		if dref := metav1.GetControllerOf(rs); dref != nil && dref.Kind == "Deployment" {
			if d, err := apps.Deployments(p.Namespace).Get(ctx, dref.Name, metav1.GetOptions{}); err == nil && d.Spec.Replicas != nil {
				return "Deployment", d.Name, int(*d.Spec.Replicas)
			}
			return "Deployment", dref.Name, -1
		}
		if rs.Spec.Replicas != nil {
			return "ReplicaSet", rs.Name, int(*rs.Spec.Replicas)
		}
	case "StatefulSet":
		if s, err := apps.StatefulSets(p.Namespace).Get(ctx, ref.Name, metav1.GetOptions{}); err == nil && s.Spec.Replicas != nil {
			return "StatefulSet", s.Name, int(*s.Spec.Replicas)
		}
	}
	return ref.Kind, ref.Name, -1
}

// DrainPreflightCheck is the engine preflight that runs DrainPreflight
// over every planned node.
type DrainPreflightCheck struct{ Client *Client }

var _ rollout.Preflight = DrainPreflightCheck{}

// Name names the preflight.
func (DrainPreflightCheck) Name() string { return "drain preflight" }

// Check fails with *DrainBlockedError when a budget would block a drain.
func (d DrainPreflightCheck) Check(ctx context.Context, p plan.Plan) error {
	var nodes []string
	for _, b := range p.Batches {
		for _, n := range b.Nodes {
			nodes = append(nodes, n.Name)
		}
	}
	blockers, err := d.Client.DrainPreflight(ctx, nodes)
	if err != nil {
		if apierrors.IsForbidden(err) {
			return fmt.Errorf("drain preflight needs to list pods and PodDisruptionBudgets: %w", err)
		}
		return err
	}
	if len(blockers) > 0 {
		return &DrainBlockedError{Blockers: blockers}
	}
	return nil
}
