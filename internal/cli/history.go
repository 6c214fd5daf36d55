package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/prox-ops/drover/internal/journal"
	"github.com/prox-ops/drover/internal/rollout"
)

func newHistoryCmd(s Streams) *cobra.Command {
	var path string
	var out outputFlag
	cmd := &cobra.Command{
		Use:   "history",
		Short: "List the runs recorded in a journal",
		Long: `List the runs a journal records: run id, cluster, strategy, versions, when
it started and last wrote, how many attempts (resumes) it took, and how it
ended. A run that crashed or is still going shows as incomplete.`,
		Example: `  drover history --journal drover-journal.jsonl
  drover history --journal drover-journal.jsonl --output json`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			f, err := os.Open(path)
			if err != nil {
				return usage(fmt.Errorf("--journal: %w", err))
			}
			defer f.Close()
			entries, err := journal.Read(f)
			if err != nil {
				return usage(err)
			}
			runs := rollout.Runs(entries)
			if out.json() {
				if runs == nil {
					runs = []rollout.RunSummary{}
				}
				return writeJSON(s.Out, runs)
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
	cmd.Flags().StringVar(&path, "journal", "drover-journal.jsonl", "the journal file")
	out.register(cmd.Flags())
	return cmd
}
