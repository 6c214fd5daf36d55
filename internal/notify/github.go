// Package notify tells people what a run does: GitHub Actions annotations,
// step summary and outputs, and Discord messages.
package notify

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sethvargo/go-githubactions"

	"github.com/prox-ops/drover/internal/mdtext"
	"github.com/prox-ops/drover/internal/rollout"
)

// actions writes GitHub Actions workflow commands to w (go-githubactions
// escapes them). A stream that cannot be written to (a closed pipe) loses
// the command rather than stopping the run: the library panics on a
// failed write.
func actions(w io.Writer) *githubactions.Action {
	return githubactions.New(githubactions.WithWriter(lossy{w}))
}

// lossy swallows write errors.
type lossy struct{ w io.Writer }

func (l lossy) Write(p []byte) (int, error) {
	_, _ = l.w.Write(p)
	return len(p), nil
}

// AddMasks registers secret values with the GitHub Actions runner, which
// then hides them in every log line. It must run before anything else is
// printed.
func AddMasks(w io.Writer, values []string) {
	a := actions(w)
	for _, v := range values {
		for _, line := range strings.Split(v, "\n") {
			if strings.TrimSpace(line) != "" {
				a.AddMask(line)
			}
		}
	}
}

// Group opens a log group; EndGroup closes it.
func Group(w io.Writer, title string) { actions(w).Group(title) }

// EndGroup closes the open log group.
func EndGroup(w io.Writer) { actions(w).EndGroup() }

// Error writes an error annotation.
func Error(w io.Writer, title, msg string) {
	actions(w).WithFieldsMap(map[string]string{"title": title}).Errorf("%s", msg)
}

// Notice writes a notice annotation: something to know, nothing failed.
func Notice(w io.Writer, title, msg string) {
	actions(w).WithFieldsMap(map[string]string{"title": title}).Noticef("%s", msg)
}

// marks are the step summary's heading marks, by result.
var marks = map[rollout.Result]string{
	rollout.ResultSucceeded: "✅", rollout.ResultHalted: "🔴", rollout.ResultRollbackFailed: "🚨", rollout.ResultBlocked: "⛔",
	rollout.ResultInterrupted: "⏹", rollout.ResultPaused: "⏸", rollout.ResultCanary: "⏸", rollout.ResultHandedOff: "🔁",
}

// StepSummary is the run's markdown table for $GITHUB_STEP_SUMMARY. Every
// value is escaped (mdtext): a node or check name cannot add a heading.
func StepSummary(r *rollout.Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## %s drover %s upgrade: %s\n\n", marks[r.Result], mdtext.Text(string(r.Strategy)), mdtext.Text(string(r.Result)))
	if r.Result == rollout.ResultHandedOff {
		b.WriteString("drover's own node is next: the run continues on a runner on another node (`drover upgrade --resume`).\n\n")
	}
	fmt.Fprintf(&b, "%s → %s, run %s, %s\n\n", mdtext.Text(r.From), mdtext.Text(r.To), mdtext.Text(r.RunID), r.Duration.Round(1e9))
	b.WriteString("| Node | Strategy | Old → New | Duration | Result |\n|---|---|---|---|---|\n")
	for _, n := range r.Nodes {
		d := "-"
		if n.Duration > 0 {
			d = n.Duration.Round(1e9).String()
		}
		fmt.Fprintf(&b, "| %s | %s | %s → %s | %s | %s |\n", mdtext.Cell(n.Name), mdtext.Cell(string(r.Strategy)), mdtext.Cell(n.From), mdtext.Cell(n.To), d, mdtext.Cell(string(n.Outcome)))
	}
	if r.Error != "" {
		b.WriteString("\n" + mdtext.Quote(r.Error))
	}
	if len(r.KnownBeforeRun) > 0 {
		b.WriteString("\n<details><summary>Known before the run (the gates judged what is new or worse)</summary>\n\n")
		for _, k := range r.KnownBeforeRun {
			fmt.Fprintf(&b, "- %s\n", mdtext.Text(k))
		}
		b.WriteString("\n</details>\n")
	}
	return b.String()
}

// FailedNode is the node that stopped the run, or "".
func FailedNode(r *rollout.Report) string {
	for _, n := range r.Nodes {
		if n.Outcome == rollout.OutcomeFailed || n.Outcome == rollout.OutcomeRolledBack {
			return n.Name
		}
	}
	return ""
}

// WriteGitHubFiles appends the step summary and the outputs result,
// failed_node and run_id to the files GitHub Actions names in
// $GITHUB_STEP_SUMMARY and $GITHUB_OUTPUT. mask masks what is written.
func WriteGitHubFiles(getenv func(string) string, r *rollout.Report, mask func(string) string) error {
	if p := getenv("GITHUB_STEP_SUMMARY"); p != "" {
		if err := appendFile(p, mask(StepSummary(r))); err != nil {
			return fmt.Errorf("GITHUB_STEP_SUMMARY: %w", err)
		}
	}
	if p := getenv("GITHUB_OUTPUT"); p != "" {
		out := fmt.Sprintf("result=%s\nfailed_node=%s\nrun_id=%s\n", r.Result, FailedNode(r), r.RunID)
		if err := appendFile(p, mask(out)); err != nil {
			return fmt.Errorf("GITHUB_OUTPUT: %w", err)
		}
	}
	return nil
}

func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
