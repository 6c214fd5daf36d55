package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/runreport"
)

func newReportCmd(s Streams) *cobra.Command {
	var reportPath, journalPath, format string
	var src sourceFlags
	var lock lockFlags
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Render a finished run as a test-results report (Markdown or HTML)",
		Long: `Render a run for people: versions, strategy and why, who and what
triggered it, each node's duration against the PRD's targets (cattle 6 min,
pets 3 min, templates 15 min), its health verdict and outcome, the
rollbacks, the notifications sent, and a Gantt chart of the nodes by step
(Mermaid in Markdown, which GitHub renders; an SVG in HTML).

The run comes from the report drover upgrade writes (--report, the richest:
health verdicts, trigger, notifications), or from a journal (--journal, a
file or configmap[:[NS/]NAME]: its last run, steps and outcomes only).`,
		Example: `  drover report --report drover-report.json >> "$GITHUB_STEP_SUMMARY"
  drover report --report drover-report.json --format html > report.html
  drover report --journal configmap --format markdown`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "markdown" && format != "html" {
				return usage(fmt.Errorf("--format %q: want markdown or html", format))
			}
			if (reportPath == "") == (journalPath == "") {
				return usage(errors.New("pass one of --report FILE and --journal FILE|configmap[:[NS/]NAME]"))
			}
			var d runreport.Doc
			if reportPath != "" {
				data, err := readRegular(reportPath, 64<<20)
				if err != nil {
					return usage(fmt.Errorf("--report: %w", err))
				}
				if err := json.Unmarshal(data, &d); err != nil {
					return usage(fmt.Errorf("--report %s: not a drover report: %w", reportPath, err))
				}
				if d.RunID == "" {
					return usage(fmt.Errorf("--report %s: not a drover report (no runId)", reportPath))
				}
				d.Duration = d.Report.Finished.Sub(d.Report.Started)
				for i := range d.Nodes {
					n := &d.Nodes[i]
					if n.Duration == 0 && n.DurationSeconds > 0 {
						n.Duration = secondsToDuration(n.DurationSeconds)
					}
				}
				if d.DurationSeconds > 0 {
					d.Duration = secondsToDuration(d.DurationSeconds)
				}
				d.Source = "report " + reportPath
			} else {
				entries, err := readJournal(cmd.Context(), s, journalPath, &src, &lock)
				if err != nil {
					return err
				}
				last := rollout.LastRun(entries)
				if len(last) == 0 {
					return usage(fmt.Errorf("--journal %s: no run in it", journalPath))
				}
				d = runreport.FromJournal(last)
				d.Source = "journal " + journalPath
			}
			if format == "html" {
				return runreport.HTML(s.Out, d)
			}
			return runreport.Markdown(s.Out, d)
		},
	}
	cmd.Flags().StringVar(&reportPath, "report", "", "the run's report (drover upgrade --report, default drover-report.json)")
	cmd.Flags().StringVar(&journalPath, "journal", "", "a journal: a file, or configmap[:[NAMESPACE/]NAME]; its last run is rendered")
	cmd.Flags().StringVarP(&format, "format", "f", "markdown", "markdown (GitHub renders its Mermaid chart) or html (one self-contained page with an SVG chart)")
	cmd.Flags().StringVar(&src.kubeconfig, "kubeconfig", "", "kubeconfig file, for a ConfigMap journal (default: like kubectl)")
	src.registerClient(cmd.Flags())
	cmd.Flags().StringVar(&src.kubeCtx, "context", "", "kubeconfig context")
	lock.register(cmd.Flags())
	return cmd
}

// readRegular reads a regular file of at most max bytes; anything else (a
// FIFO, a device, a directory) is refused before it is opened.
func readRegular(path string, max int64) ([]byte, error) {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return nil, err
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%s: not a regular file (%s)", path, config.DescribeMode(fi.Mode()))
	case fi.Size() > max:
		return nil, fmt.Errorf("%s: %d MiB, more than the %d MiB drover reads", path, fi.Size()>>20, max>>20)
	}
	return os.ReadFile(path)
}

func secondsToDuration(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
