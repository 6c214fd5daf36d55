package cli

import (
	"github.com/spf13/cobra"

	"github.com/prox-ops/drover/internal/run"
	"github.com/prox-ops/drover/internal/version"
)

type planFlags struct {
	src    sourceFlags
	target targetFlags
	out    outputFlag
}

func newPlanCmd(s Streams) *cobra.Command {
	f := &planFlags{}
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Show the ordered batches an upgrade would run, without changing anything",
		Long: `Show the plan of an upgrade: the strategy, then every node in the order it
will be upgraded. Control-plane nodes come first, one per batch; workers
follow in batches of at most rollout.maxParallelWorkers, never two VMs of one
Proxmox host in a batch. Nodes already at the target version are skipped.
The ETA adds up each step's duration: the median of the durations this
cluster's earlier runs measured (kept beside the run lock), else
rollout.stepDurations; every wait counts (gates, soaks, the hand-off).

The versions are read from the cluster: each node's Node object (kubelet
version, osImage "Talos (vX.Y.Z)") and, where a talosconfig is at hand, the
Talos API of the control-plane nodes (of every node for a patch). The plan
says where each node's version came from. --from-talos, --from-kubernetes
and --vars-before/--git-range are checked against it: a node that
disagrees stops the plan (exit 4). Without cluster access the plan is made
from the claim alone, and says so.`,
		Example: `  drover plan --lab --to-talos v1.12.0
  drover plan --config drover.yaml --git-range "$BASE_SHA..$MERGE_SHA" --output json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.out.validate(); err != nil {
				return err
			}
			p, err := f.src.planFor(cmd.Context(), s, planOptions{target: f.target})
			if err != nil {
				return err
			}
			defer p.Close()
			if f.out.json() {
				return writeJSON(s, planJSON(p))
			}
			printPlanned(s.Out, p)
			return nil
		},
	}
	f.src.register(cmd.Flags())
	f.target.register(cmd.Flags())
	f.out.register(cmd.Flags())
	return cmd
}

type planNodeJSON struct {
	Name string `json:"name"`
	Role string `json:"role"`
	Host string `json:"host"`
	VMID int    `json:"vmId,omitempty"`
	From string `json:"from"`
	GPUs int    `json:"gpus,omitempty"`
	// Source says where host and VM id came from, when the Terraform state filled some.
	Source string `json:"source,omitempty"`
	// VersionSource says where From was read: the Talos API, the Node
	// object, or the claim (no cluster access).
	VersionSource string `json:"versionSource,omitempty"`
	// Image is what the node runs (install image, schematic, extensions)
	// and the installer image an in-place upgrade gives it.
	Image *run.NodeImage `json:"image,omitempty"`
}

type planBatchJSON struct {
	Nodes []planNodeJSON `json:"nodes"`
}

type skippedJSON struct {
	Name          string `json:"name"`
	Reason        string `json:"reason"`
	VersionSource string `json:"versionSource,omitempty"`
}

type planOutput struct {
	Strategy         version.Strategy `json:"strategy"`
	Label            string           `json:"label,omitempty"`
	ApprovalRequired bool             `json:"approvalRequired"`
	Rationale        string           `json:"rationale"`
	From             string           `json:"from"`
	To               string           `json:"to"`
	FromKubernetes   string           `json:"fromKubernetes,omitempty"`
	ToKubernetes     string           `json:"toKubernetes,omitempty"`
	Batches          []planBatchJSON  `json:"batches"`
	Skipped          []skippedJSON    `json:"skipped,omitempty"`
	ETASeconds       float64          `json:"etaSeconds"`
	// Hops are the Talos minors passed through, one per run.
	Hops []string `json:"hops,omitempty"`
	// KubernetesHops are the Kubernetes minors passed through, one per run.
	KubernetesHops []string `json:"kubernetesHops,omitempty"`
	// KubernetesPhase: Kubernetes is upgraded after the nodes (pets).
	KubernetesPhase bool `json:"kubernetesPhase,omitempty"`
	// RollbackETASeconds is how long rolling one node back takes.
	RollbackETASeconds float64 `json:"rollbackEtaSeconds,omitempty"`
	// Canary are the canary workers; the run pauses (exit 5) after the
	// first PauseAfterBatch batches.
	Canary []string `json:"canary,omitempty"`
	// CanaryNote says how the canary was chosen when rollout.canary names
	// nodes this run does not change.
	CanaryNote      string `json:"canaryNote,omitempty"`
	PauseAfterBatch int    `json:"pauseAfterBatch,omitempty"`
	// Only is the --only selection.
	Only []string `json:"only,omitempty"`
	// ETASource says what the ETA was computed from.
	ETASource string `json:"etaSource,omitempty"`
	// ClusterSource says where the node versions were read.
	ClusterSource string `json:"clusterSource,omitempty"`
	// RunsOn says where drover runs and what it means for the order.
	RunsOn *runsOnJSON `json:"runsOn,omitempty"`
	// Refused says why an upgrade of this plan would be refused.
	Refused string `json:"refused,omitempty"`
	// Warnings are what the plan saw that may hold the run: pods whose
	// grace period is longer than the drain timeout.
	Warnings []string `json:"warnings,omitempty"`
	// Held are the nodes that pods hold (do-not-disrupt), with the pods:
	// each is planned last in its phase, and waited for.
	Held map[string][]string `json:"held,omitempty"`
}

// runsOnJSON is where drover runs, inside the cluster.
type runsOnJSON struct {
	run.Self
	// HandOff: drover's node is planned last, and the run hands off
	// before it (exit 6).
	HandOff bool   `json:"handOff"`
	Note    string `json:"note"`
}

func kubeString(v version.Version) string {
	if v.IsZero() {
		return ""
	}
	return v.String()
}

func planJSON(pd *run.Planned) planOutput {
	p, d, sources, versionSources := pd.Plan, pd.Decision, pd.InventorySources, pd.VersionSources()
	out := planOutput{
		Hops: pd.Hops, KubernetesHops: pd.KubernetesHops, ClusterSource: pd.Site.Source(),
		Strategy: p.Strategy, Label: d.Label, ApprovalRequired: d.ApprovalRequired, Rationale: d.Rationale,
		From: p.From.Talos.String(), To: p.To.Talos.String(),
		FromKubernetes: kubeString(p.From.Kubernetes), ToKubernetes: kubeString(p.To.Kubernetes),
		Batches: []planBatchJSON{}, ETASeconds: p.ETA.Seconds(), KubernetesPhase: p.KubernetesPhase, RollbackETASeconds: p.RollbackETA.Seconds(),
		Canary: p.Canary, CanaryNote: p.CanaryNote, PauseAfterBatch: p.PauseAfter, Only: p.Only, ETASource: p.ETASource,
	}
	for _, b := range p.Batches {
		var jb planBatchJSON
		for _, n := range b.Nodes {
			pn := planNodeJSON{Name: n.Name, Role: string(n.Role), Host: n.ProxmoxHost, VMID: n.VMID, From: n.From.Talos.String(), GPUs: n.GPUs,
				Source: sources[n.Name], VersionSource: versionSources[n.Name]}
			if ni, ok := pd.Images[n.Name]; ok {
				pn.Image = &ni
			}
			jb.Nodes = append(jb.Nodes, pn)
		}
		out.Batches = append(out.Batches, jb)
	}
	for _, s := range p.Skipped {
		out.Skipped = append(out.Skipped, skippedJSON{Name: s.Node.Name, Reason: s.Reason, VersionSource: versionSources[s.Node.Name]})
	}
	if pd.Self.Node != "" {
		out.RunsOn = &runsOnJSON{Self: pd.Self, HandOff: p.Self != "", Note: selfNote(pd)}
	}
	if pd.Refusal != nil {
		out.Refused = pd.Refusal.Error()
	}
	out.Warnings = pd.Warnings
	out.Held = p.Held
	return out
}
