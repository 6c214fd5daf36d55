package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/journal"
	"github.com/prox-ops/drover/internal/rollout"
)

func newHistoryCmd(s Streams) *cobra.Command {
	var path string
	var out outputFlag
	var src sourceFlags
	var lock lockFlags
	cmd := &cobra.Command{
		Use:   "history",
		Short: "List the runs recorded in a journal",
		Long: `List the runs a journal records: run id, cluster, strategy, versions, when
it started and last wrote, how many attempts (resumes) it took, and how it
ended. A run that crashed or is still going shows as incomplete.`,
		Example: `  drover history --journal drover-journal.jsonl
  drover history --journal drover-journal.jsonl --output json
  drover history --journal configmap:github-actions/drover-journal --output jsonl > drover-journal.jsonl`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.validateAlso("jsonl"); err != nil {
				return err
			}
			entries, err := readJournal(cmd.Context(), s, path, &src, &lock)
			if err != nil {
				return err
			}
			if out.format == "jsonl" {
				// The journal itself, one entry per line: what a workflow
				// keeps as an artifact.
				for _, e := range entries {
					if err := writeJSONLine(s, e); err != nil {
						return err
					}
				}
				return nil
			}
			runs := rollout.Runs(entries)
			if out.json() {
				if runs == nil {
					runs = []rollout.RunSummary{}
				}
				return writeJSON(s, runs)
			}
			t := newTable(s.Out)
			fmt.Fprintln(t, "RUN\tCLUSTER\tSTRATEGY\tFROM -> TO\tSTARTED\tLAST ENTRY\tATTEMPTS\tRESULT")
			for _, r := range runs {
				fmt.Fprintf(t, "%s\t%s\t%s\t%s -> %s\t%s\t%s\t%d\t%s\n", r.RunID, r.Header.Cluster, r.Header.Strategy, r.Header.From, r.Header.To,
					r.Started.UTC().Format("2006-01-02 15:04:05"), r.Ended.UTC().Format("2006-01-02 15:04:05"), r.Attempts, r.Result)
			}
			return t.Flush()
		},
	}
	cmd.Flags().StringVar(&path, "journal", "drover-journal.jsonl", "the journal: a file, or configmap[:NAMESPACE/NAME]")
	cmd.Flags().StringVar(&src.kubeconfig, "kubeconfig", "", "kubeconfig file, for a ConfigMap journal (default: like kubectl)")
	src.registerClient(cmd.Flags())
	cmd.Flags().StringVar(&src.kubeCtx, "context", "", "kubeconfig context")
	lock.register(cmd.Flags())
	out.register(cmd.Flags())
	return cmd
}

// readJournal reads the journal --journal names: a file, or a ConfigMap
// (configmap[:[NS/]NAME], through the cluster access of src).
func readJournal(ctx context.Context, s Streams, path string, src *sourceFlags, lock *lockFlags) ([]rollout.Entry, error) {
	if ns, name, ok, err := journal.ParseConfigMapRef(path, ""); ok {
		if err != nil {
			return nil, usage(err)
		}
		cs, _, err := src.clientset(s)
		if err != nil {
			return nil, err
		}
		if ns == "" {
			ns = lock.lease(cs, clock.Real{}, s).Namespace
		}
		return (&journal.ConfigMap{Client: cs, Namespace: ns, Name: name}).Entries(ctx)
	}
	log, err := journal.ReadFile(path)
	if err != nil {
		return nil, usage(fmt.Errorf("--journal: %w", err))
	}
	for _, w := range log.Warnings {
		fmt.Fprintf(s.Err, "drover: warning: %s\n", w)
	}
	return log.Entries, nil
}
