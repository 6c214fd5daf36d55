package runreport

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/prox-ops/drover/internal/mdtext"
	"github.com/prox-ops/drover/internal/rollout"
)

// Markdown writes the report as GitHub-flavoured Markdown with a Mermaid
// Gantt chart. Every value from the cluster, the configuration or the run
// is escaped (mdtext): a carriage return in a check's name must not end
// the Mermaid block and add a heading.
func Markdown(w io.Writer, d Doc) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# drover test-results report: %s upgrade %s\n\n", mdtext.Text(orDash(d.Strategy)), mdtext.Text(string(d.Result)))
	b.WriteString("| | |\n|---|---|\n")
	fmt.Fprintf(&b, "| Run | %s |\n", mdtext.Cell(d.RunID))
	fmt.Fprintf(&b, "| Versions | %s → %s |\n", mdtext.Cell(d.From), mdtext.Cell(d.To))
	fmt.Fprintf(&b, "| Strategy | %s |\n", mdtext.Cell(orDash(d.Strategy)))
	if d.Rationale != "" {
		fmt.Fprintf(&b, "| Why | %s |\n", mdtext.Cell(d.Rationale))
	}
	fmt.Fprintf(&b, "| Result | **%s** |\n", mdtext.Cell(string(d.Result)))
	if !d.Started.IsZero() {
		fmt.Fprintf(&b, "| Started | %s |\n", d.Started.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(&b, "| Duration | %s |\n", short(d.Duration))
	if t := d.Trigger; t != nil {
		fmt.Fprintf(&b, "| Trigger | %s |\n", mdtext.Cell(triggerText(t)))
	}
	if d.Source != "" {
		fmt.Fprintf(&b, "| Read from | %s |\n", mdtext.Cell(d.Source))
	}
	if d.Error != "" {
		b.WriteString("\n" + mdtext.Quote(d.Error))
	}

	b.WriteString("\n## Nodes\n\n| Node | Role | Batch | Old → New | Duration | PRD target | Health | Result |\n|---|---|---|---|---|---|---|---|\n")
	var skipped []string
	for _, n := range d.Nodes {
		if n.Outcome == rollout.OutcomeSkipped {
			skipped = append(skipped, n.Name)
			continue
		}
		dur := "-"
		if n.Duration > 0 {
			dur = short(n.Duration)
		}
		batch := "-"
		if n.Batch > 0 {
			batch = fmt.Sprint(n.Batch)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s → %s | %s | %s | %s | %s |\n", mdtext.Cell(n.Name), mdtext.Cell(orDash(n.Role)), batch, mdtext.Cell(n.From), mdtext.Cell(n.To), dur,
			mdtext.Cell(targetNote(n)), mdtext.Cell(healthVerdict(n)), mdtext.Cell(string(n.Outcome)))
	}
	if len(skipped) > 0 {
		fmt.Fprintf(&b, "\nSkipped (already at the target, or not selected): %s.\n", mdtext.Text(strings.Join(skipped, ", ")))
	}
	if d.TemplatesSeconds > 0 {
		fmt.Fprintf(&b, "\nTemplates: %s (PRD target ≤ %s).\n", short(time.Duration(d.TemplatesSeconds*float64(time.Second))), short(rollout.TemplatesTarget))
	}
	if len(d.MissedTargets) > 0 {
		b.WriteString("\n**Targets missed**\n\n")
		for _, m := range d.MissedTargets {
			fmt.Fprintf(&b, "- %s\n", mdtext.Text(m))
		}
	}

	mermaidTimeline(&b, d)

	if rb := rollbacks(d); len(rb) > 0 {
		b.WriteString("\n## Rollbacks\n\n")
		for _, n := range rb {
			fmt.Fprintf(&b, "- **%s**: %s", mdtext.Text(n.Name), mdtext.Text(string(n.Outcome)))
			if len(n.FailedChecks) > 0 {
				fmt.Fprintf(&b, " (failed checks: %s)", mdtext.Text(strings.Join(n.FailedChecks, ", ")))
			}
			if n.Reason != "" {
				fmt.Fprintf(&b, ": %s", mdtext.Text(n.Reason))
			}
			b.WriteString("\n")
		}
	}
	if len(d.KnownBeforeRun) > 0 {
		b.WriteString("\n## Known before the run\n\n")
		for _, k := range d.KnownBeforeRun {
			fmt.Fprintf(&b, "- %s\n", mdtext.Text(k))
		}
	}
	b.WriteString("\n## Notifications\n\n")
	if ns := notificationSummary(d); len(ns) > 0 {
		for _, n := range ns {
			fmt.Fprintf(&b, "- %s\n", mdtext.Text(n))
		}
	} else {
		b.WriteString("None sent (no webhook configured, or none recorded).\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func triggerText(t *Trigger) string {
	var parts []string
	if t.Actor != "" {
		parts = append(parts, "by "+t.Actor)
	}
	if t.Workflow != "" {
		parts = append(parts, "workflow "+t.Workflow)
	}
	if t.Repository != "" {
		parts = append(parts, t.Repository)
	}
	if t.PR != "" {
		parts = append(parts, "PR #"+t.PR)
	}
	if t.SHA != "" {
		parts = append(parts, "commit "+t.SHA[:min(7, len(t.SHA))])
	}
	if t.RunURL != "" {
		parts = append(parts, t.RunURL)
	}
	return strings.Join(parts, ", ")
}

// mermaidTimeline writes the Gantt chart of the run's steps, if any.
func mermaidTimeline(b *strings.Builder, d Doc) {
	bs := bars(d)
	if len(bs) == 0 {
		return
	}
	b.WriteString("\n## Timeline\n\n```mermaid\ngantt\n")
	fmt.Fprintf(b, "    title drover run %s\n    dateFormat YYYY-MM-DDTHH:mm:ss\n    axisFormat %%H:%%M\n", mdtext.Mermaid(d.RunID))
	node := ""
	for i, x := range bs {
		if x.node != node {
			node = x.node
			fmt.Fprintf(b, "    section %s\n", mdtext.Mermaid(node))
		}
		tag := "done, "
		if x.failed {
			tag = "crit, "
		}
		fmt.Fprintf(b, "    %s :%st%d, %s, %s\n", mdtext.Mermaid(x.step), tag, i, x.start.UTC().Format("2006-01-02T15:04:05"), x.end.UTC().Format("2006-01-02T15:04:05"))
	}
	b.WriteString("```\n\nSteps shorter than a second are left out of the chart.\n")
}
