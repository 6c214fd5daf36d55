package cli

import (
	"encoding/xml"
	"path/filepath"
	"strings"
	"testing"
)

// TestReportOfALabRun renders a halted lab run (a worker rolled back) from
// its report and from its journal, in Markdown and HTML.
func TestReportOfALabRun(t *testing.T) {
	dir := t.TempDir()
	rep, j := filepath.Join(dir, "r.json"), filepath.Join(dir, "j.jsonl")
	r := drover(t, "upgrade", "--lab", "--to-talos", "v1.12.0", "--yes", "--lab-fault", "k8s-work-3=health-fail", "--report", rep, "--journal", j, "--output", "json")
	if r.code != ExitHalted {
		t.Fatalf("exit %d", r.code)
	}
	md := drover(t, "report", "--report", rep)
	if md.code != ExitOK {
		t.Fatalf("report: exit %d\n%s", md.code, md.stderr)
	}
	for _, want := range []string{
		"# drover test-results report: cattle upgrade halted",
		"| Versions | Talos v1.11.3, Kubernetes v1.34.1 → Talos v1.12.0, Kubernetes v1.34.1 |",
		"| k8s-work-1 | worker | 4 | v1.11.3 → v1.12.0 | 10m29s | met (≤ 6m) | 7/7 passed (2 attempts) | upgraded |",
		"failed: Pod Health (3 attempts) | rolled-back |",
		"```mermaid\ngantt\n", "    section k8s-work-3\n", ":crit, ", "## Rollbacks", "- **k8s-work-3**: rolled-back (failed checks: Pod Health)",
		"Templates: 10m (PRD target ≤ 15m).", "## Notifications",
	} {
		if !strings.Contains(md.stdout, want) {
			t.Errorf("the Markdown lacks %q", want)
		}
	}
	if strings.Contains(md.stdout, "section k8s-work-4") {
		t.Error("an untouched node is on the chart")
	}

	fromJournal := drover(t, "report", "--journal", j)
	if fromJournal.code != ExitOK || !strings.Contains(fromJournal.stdout, "| k8s-work-1 | - | - | v1.11.3 → v1.12.0 | 10m29s | met (≤ 6m) | - | upgraded |") ||
		!strings.Contains(fromJournal.stdout, "| k8s-work-3 | - | - | v1.11.3 → v1.12.0 | 10m55s | - | - | rolled-back |") ||
		!strings.Contains(fromJournal.stdout, "| Result | **halted** |") {
		t.Fatalf("from the journal: exit %d\n%s", fromJournal.code, fromJournal.stdout)
	}

	h := drover(t, "report", "--report", rep, "--format", "html")
	if h.code != ExitOK || !strings.HasPrefix(h.stdout, "<!DOCTYPE html>") {
		t.Fatalf("html: exit %d", h.code)
	}
	// The chart is well-formed SVG with a bar per step of each touched node.
	start, end := strings.Index(h.stdout, "<svg"), strings.Index(h.stdout, "</svg>")
	if start < 0 || end < 0 {
		t.Fatal("no SVG chart")
	}
	var svg struct {
		Rects []struct {
			Fill  string `xml:"fill,attr"`
			Title string `xml:"title"`
		} `xml:"rect"`
	}
	if err := xml.Unmarshal([]byte(h.stdout[start:end+len("</svg>")]), &svg); err != nil {
		t.Fatalf("the SVG is not well-formed: %v", err)
	}
	red := 0
	for _, r := range svg.Rects {
		if r.Fill == "#e15759" {
			red++
			if !strings.HasPrefix(r.Title, "k8s-work-3 ") {
				t.Errorf("a red bar not of k8s-work-3: %s", r.Title)
			}
		}
	}
	if len(svg.Rects) < 6*4 || red == 0 {
		t.Fatalf("%d bars, %d red", len(svg.Rects), red)
	}
}

func TestReportUsage(t *testing.T) {
	for _, args := range [][]string{
		{"report"},
		{"report", "--report", "a.json", "--journal", "j.jsonl"},
		{"report", "--report", "a.json", "--format", "pdf"},
		{"report", "--report", filepath.Join(t.TempDir(), "missing.json")},
	} {
		if r := drover(t, args...); r.code != ExitUsage {
			t.Errorf("%v: exit %d, want 2", args, r.code)
		}
	}
}
