package cli

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/run"
	"github.com/prox-ops/drover/internal/version"
)

// selfNote says what drover's own node means for the order.
func selfNote(p *run.Planned) string {
	self := p.Self.Node
	if p.Plan.Self == "" {
		return self + " is not changed by this run: the order is unchanged"
	}
	role := "workers"
	if n, ok := p.Config.NodeByName(self); ok && n.IsControlPlane() {
		role = "control-plane nodes"
	}
	return fmt.Sprintf("%s goes last among the %s; before it drover cordons it and hands the run to a runner on another node (exit 6), which continues with --resume", self, role)
}

// printPlanned prints a plan with where its versions and inventory came
// from, the rollback estimate and the minor hops.
func printPlanned(w io.Writer, p *run.Planned) {
	printPlan(w, p.Plan, p.Decision)
	printVersionSources(w, p)
	if p.Plan.RollbackETA > 0 {
		note := ""
		if p.Config.Terraform.Templates == config.TemplatesRebuild && p.Plan.Strategy == version.Cattle {
			note = ", the old templates rebuilt first (terraform.templates: rebuild)"
		}
		fmt.Fprintf(w, "a rollback of one node takes about %s%s\n", human(p.Plan.RollbackETA), note)
	}
	if len(p.Hops) > 0 {
		fmt.Fprintf(w, "Talos minor hops: v%d.%d -> %s\n", p.Change.From.Talos.Major, p.Change.From.Talos.Minor, strings.Join(p.Hops, " -> "))
	}
	if len(p.KubernetesHops) > 0 {
		fmt.Fprintf(w, "Kubernetes minor hops: v%d.%d -> %s\n", p.Change.From.Kubernetes.Major, p.Change.From.Kubernetes.Minor, strings.Join(p.KubernetesHops, " -> "))
	}
	if sch := p.Schematics(); len(sch) > 0 {
		fmt.Fprintln(w, "images (each node keeps its own; the upgrade changes the version):")
		for _, k := range slices.Sorted(maps.Keys(sch)) {
			fmt.Fprintf(w, "  %s: %s\n", k, strings.Join(sch[k], ", "))
		}
	}
	fmt.Fprintf(w, "cluster: %s\n", p.Site.Source())
	if p.Self.Node != "" {
		src := ""
		if p.Self.Source != "" {
			src = ", from " + p.Self.Source
		}
		fmt.Fprintf(w, "drover runs on %s%s: %s\n", p.Self.String(), src, selfNote(p))
	}
	if p.Refusal != nil {
		fmt.Fprintf(w, "an upgrade of this plan would be refused (exit 4): %s\n", p.Refusal)
	}
	for _, node := range slices.Sorted(maps.Keys(p.Plan.Held)) {
		fmt.Fprintf(w, "held: %s by %s (do-not-disrupt): planned last in its phase; the run waits up to %s (rollout.blockingTimeout) for them before it touches the node\n",
			node, strings.Join(p.Plan.Held[node], ", "), p.Config.Rollout.BlockingTimeout.Duration)
	}
	for _, warning := range p.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warning)
	}
	if tf := p.Terraform(); tf != "" {
		fmt.Fprintf(w, "inventory completed from the Terraform state (%s):\n", tf)
		for _, n := range p.Config.Nodes {
			fmt.Fprintf(w, "  %s: %s (host %s, VM %d)\n", n.Name, p.InventorySources[n.Name], orNone(n.ProxmoxHost), n.VMID)
		}
	}
}

// printVersionSources says where each node's version was read, grouped.
func printVersionSources(w io.Writer, p *run.Planned) {
	by := map[string][]string{}
	for n, src := range p.VersionSources() {
		by[src] = append(by[src], n)
	}
	fmt.Fprintln(w, "node versions read from:")
	for _, src := range slices.Sorted(maps.Keys(by)) {
		names := by[src]
		sort.Slice(names, func(i, j int) bool { return plan.NaturalLess(names[i], names[j]) })
		fmt.Fprintf(w, "  %s: %s\n", src, strings.Join(names, ", "))
	}
}

func printPlan(w io.Writer, p plan.Plan, d version.Decision) {
	fmt.Fprintf(w, "Upgrade %s -> %s\n", p.From, p.To)
	fmt.Fprintf(w, "Strategy: %s", p.Strategy)
	if d.ApprovalRequired {
		fmt.Fprint(w, " (approval required)")
	}
	fmt.Fprintf(w, "\n%s\n\n", d.Rationale)
	if len(p.Batches) > 0 {
		t := newTable(w)
		fmt.Fprintln(t, "BATCH\tNODE\tROLE\tHOST\tFROM -> TO\tSTRATEGY")
		for i, b := range p.Batches {
			for _, n := range b.Nodes {
				role := string(n.Role)
				if n.GPUs > 0 {
					role += fmt.Sprintf(" (%d GPU)", n.GPUs)
				}
				if slices.Contains(p.Canary, n.Name) {
					role += " (canary)"
				}
				if n.Name == p.Self {
					role += " (drover runs here)"
				}
				fmt.Fprintf(t, "%d\t%s\t%s\t%s\t%s -> %s\t%s\n", i+1, n.Name, role, n.ProxmoxHost, n.From.Talos, p.To.Talos, p.Strategy)
			}
		}
		t.Flush()
		fmt.Fprintln(w)
	}
	for _, s := range p.Skipped {
		fmt.Fprintf(w, "skipped %s: %s\n", s.Node.Name, s.Reason)
	}
	if p.KubernetesPhase {
		fmt.Fprintf(w, "then Kubernetes %s -> %s on every node (talosctl upgrade-k8s)\n", p.From.Kubernetes, p.To.Kubernetes)
	}
	fmt.Fprintf(w, "%d nodes in %d batches, %d skipped, ETA %s\n", p.NodeCount(), len(p.Batches), len(p.Skipped), human(p.ETA))
	if p.ETASource != "" && len(p.Batches) > 0 {
		fmt.Fprintf(w, "ETA from %s\n", p.ETASource)
	}
	if len(p.Only) > 0 {
		fmt.Fprintf(w, "only: %s (--only)\n", strings.Join(p.Only, ", "))
	}
	if len(p.Canary) > 0 {
		fmt.Fprintf(w, "canary: %s first, then the run pauses after batch %d (exit 5); drover upgrade --resume does the rest\n", strings.Join(p.Canary, ", "), p.PauseAfter)
		if p.CanaryNote != "" {
			fmt.Fprintf(w, "  %s\n", p.CanaryNote)
		}
	}
}
