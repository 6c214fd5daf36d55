// Package notify tells people what a run does: GitHub Actions annotations,
// step summary and outputs, and Discord messages.
package notify

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/prox-ops/drover/internal/rollout"
)

// AddMasks registers secret values with the GitHub Actions runner, which
// then hides them in every log line. It must run before anything else is
// printed.
func AddMasks(w io.Writer, values []string) {
	for _, v := range values {
		for _, line := range strings.Split(v, "\n") {
			if strings.TrimSpace(line) != "" {
				fmt.Fprintf(w, "::add-mask::%s\n", line)
			}
		}
	}
}

// escapeData escapes a workflow command's message.
func escapeData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

// escapeProperty escapes a workflow command's property value.
func escapeProperty(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C").Replace(s)
}

// Group opens a log group; EndGroup closes it.
func Group(w io.Writer, title string) { fmt.Fprintf(w, "::group::%s\n", escapeData(title)) }

// EndGroup closes the open log group.
func EndGroup(w io.Writer) { fmt.Fprintln(w, "::endgroup::") }

// Error writes an error annotation.
func Error(w io.Writer, title, msg string) {
	fmt.Fprintf(w, "::error title=%s::%s\n", escapeProperty(title), escapeData(msg))
}

// Notice writes a notice annotation: something to know, nothing failed.
func Notice(w io.Writer, title, msg string) {
	fmt.Fprintf(w, "::notice title=%s::%s\n", escapeProperty(title), escapeData(msg))
}

// marks are the step summary's heading marks, by result.
var marks = map[rollout.Result]string{
	rollout.ResultSucceeded: "✅", rollout.ResultHalted: "🔴", rollout.ResultRollbackFailed: "🚨", rollout.ResultBlocked: "⛔",
	rollout.ResultInterrupted: "⏹", rollout.ResultPaused: "⏸", rollout.ResultCanary: "⏸", rollout.ResultHandedOff: "🔁",
}

// StepSummary is the run's markdown table for $GITHUB_STEP_SUMMARY.
func StepSummary(r *rollout.Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## %s drover %s upgrade: %s\n\n", marks[r.Result], r.Strategy, r.Result)
	if r.Result == rollout.ResultHandedOff {
		b.WriteString("drover's own node is next: the run continues on a runner on another node (`drover upgrade --resume`).\n\n")
	}
	fmt.Fprintf(&b, "%s → %s, run `%s`, %s\n\n", r.From, r.To, r.RunID, r.Duration.Round(1e9))
	b.WriteString("| Node | Strategy | Old → New | Duration | Result |\n|---|---|---|---|---|\n")
	for _, n := range r.Nodes {
		d := "-"
		if n.Duration > 0 {
			d = n.Duration.Round(1e9).String()
		}
		fmt.Fprintf(&b, "| %s | %s | %s → %s | %s | %s |\n", n.Name, r.Strategy, n.From, n.To, d, n.Outcome)
	}
	if r.Error != "" {
		fmt.Fprintf(&b, "\n> %s\n", strings.ReplaceAll(r.Error, "\n", "\n> "))
	}
	if len(r.KnownBeforeRun) > 0 {
		b.WriteString("\n<details><summary>Known before the run (the gates judged what is new or worse)</summary>\n\n")
		for _, k := range r.KnownBeforeRun {
			fmt.Fprintf(&b, "- %s\n", strings.ReplaceAll(k, "\n", " "))
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
