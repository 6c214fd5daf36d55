package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/prox-ops/drover/internal/assemble"
	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/rollout"
)

type healthFlags struct {
	src    sourceFlags
	node   string
	output string
}

// UnhealthyError says drover health found a failing check. Exit 1.
type UnhealthyError struct{ Summary string }

func (e *UnhealthyError) Error() string { return e.Summary }

func newHealthCmd(s Streams) *cobra.Command {
	f := &healthFlags{}
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Run the health gate now and report (exit 0 healthy, 1 not)",
		Long: `Run drover's health gate, as it runs between nodes: Node Readiness, Pod
Health, Storage Health (Rook Ceph), Flux Reconciliation, DNS Resolution,
Network Connectivity, GPU Availability and the custom CEL checks of
drover.yaml. Each check has health.checkTimeout (30s) and the gate retries
failing checks rollout.healthAttempts times. With --node the node-level
checks (versions, pods on the node, DNS and network probes, GPUs) look at
that node; without it the gate looks at the whole cluster.

--output markdown is what the health-check workflow writes to the GitHub
step summary. With --lab, --lab-fault NODE=dns-down|ceph-warn|flux-failed|
gpu-lost|crashloop breaks a category from the start.`,
		Example: `  drover health --lab --node k8s-work-1
  drover health --lab --lab-fault k8s-work-1=dns-down --node k8s-work-1 --output json
  drover health --lab --lab-nodes 1000 --node worker-42
  drover health --config drover.yaml --node k8s-work-4 --output markdown >> "$GITHUB_STEP_SUMMARY"`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return f.run(cmd.Context(), s) },
	}
	fs := cmd.Flags()
	fs.StringVarP(&f.src.configPath, "config", "c", "", "drover.yaml describing the cluster")
	fs.BoolVar(&f.src.lab, "lab", false, "check the embedded lab cluster")
	fs.StringArrayVar(&f.src.labFaults, "lab-fault", nil, "break a lab health category from the start, NODE=KIND (dns-down, ceph-warn, flux-failed, gpu-lost, crashloop), repeatable")
	f.src.registerLabShape(fs)
	fs.StringVar(&f.src.kubeconfig, "kubeconfig", "", "kubeconfig file (default: like kubectl)")
	f.src.registerClient(fs)
	fs.StringVar(&f.src.kubeCtx, "context", "", "kubeconfig context")
	fs.StringVar(&f.node, "node", "", "check this node (default: the whole cluster)")
	fs.StringVarP(&f.output, "output", "o", "table", "output format: table, json or markdown")
	return cmd
}

type healthJSON struct {
	Node    string                `json:"node"`
	Passed  bool                  `json:"passed"`
	Summary string                `json:"summary"`
	Checks  []rollout.CheckResult `json:"checks"`
}

func (f *healthFlags) run(ctx context.Context, s Streams) error {
	switch f.output {
	case "table", "json", "markdown":
	default:
		return usage(fmt.Errorf("--output %q: want table, json or markdown", f.output))
	}
	cfg, err := f.src.loadConfig(s)
	if err != nil {
		return err
	}
	// The lab shows its health faults from the start.
	f.src.faultsNow = true
	site, err := f.src.open(ctx, s, cfg, nil, s.Err)
	if err != nil {
		return err
	}
	defer site.Close()
	if kc := site.Client(); kc != nil {
		// An unreachable cluster is not an unhealthy one: exit 4 at once,
		// as every command does, rather than a minute of failing checks.
		if _, err := kc.Discovery().ServerVersion(); err != nil {
			return &rollout.BlockedError{Reason: "reach the cluster", Err: err}
		}
	}
	gate, err := site.Gate(s.env())
	if err != nil {
		return err
	}
	clk := site.Clock()
	in := rollout.GateInput{}
	if f.node != "" {
		n, ok := cfg.NodeByName(f.node)
		if !ok {
			if f.src.configPath != "" || f.src.lab {
				return usage(fmt.Errorf("--node %s is not in the inventory", f.node))
			}
			n = config.Node{Name: f.node}
		}
		in.Node = plan.Node{Node: n}
	}
	res, gerr := rollout.GateFrom(assemble.Policy(*cfg), gate, clk).Run(ctx, in)
	var hf *rollout.HealthFailedError
	if gerr != nil && !errors.As(gerr, &hf) {
		return gerr
	}
	summary := res.Summary(f.node)
	switch f.output {
	case "json":
		if err := writeJSON(s, healthJSON{Node: f.node, Passed: res.Passed(), Summary: summary, Checks: res.Checks}); err != nil {
			return err
		}
	case "markdown":
		writeHealthMarkdown(s.Out, summary, res)
	default:
		writeHealthTable(s.Out, summary, res)
	}
	if !res.Passed() {
		return &UnhealthyError{Summary: summary}
	}
	return nil
}

func writeHealthTable(w io.Writer, summary string, res rollout.HealthResult) {
	fmt.Fprintln(w, summary)
	for _, c := range res.Checks {
		for _, d := range c.Diagnostics {
			fmt.Fprintf(w, "  [%s] %s\n", c.Name, d)
		}
	}
	fmt.Fprintln(w)
	t := newTable(w)
	fmt.Fprintln(t, "CHECK\tRESULT\tATTEMPTS\tDURATION\tNOTE")
	for _, c := range res.Checks {
		fmt.Fprintf(t, "%s\t%s\t%d\t%dms\t%s\n", c.Name, checkResult(c), c.Attempts, c.DurationMs, strings.Join(append([]string{c.SkipReason}, c.Notes...), " "))
	}
	t.Flush()
}

func writeHealthMarkdown(w io.Writer, summary string, res rollout.HealthResult) {
	fmt.Fprintf(w, "### %s\n\n| Check | Result | Attempts | Details |\n|---|---|---|---|\n", summary)
	for _, c := range res.Checks {
		details := append(append([]string(nil), c.Diagnostics...), c.Notes...)
		if c.SkipReason != "" {
			details = append(details, c.SkipReason)
		}
		fmt.Fprintf(w, "| %s | %s | %d | %s |\n", c.Name, checkResult(c), c.Attempts, strings.ReplaceAll(strings.Join(details, "<br>"), "|", "\\|"))
	}
}

func checkResult(c rollout.CheckResult) string {
	switch {
	case c.Skipped:
		return "skipped"
	case c.Passed:
		return "passed"
	}
	return "FAILED"
}
