package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// docPages are the README and every page under docs/, by name.
func docPages(t *testing.T) map[string]string {
	t.Helper()
	names, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	runbooks, _ := filepath.Glob("../../docs/runbooks/*.md")
	out := map[string]string{}
	for _, n := range append(append(names, runbooks...), "../../README.md") {
		data, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimPrefix(n, "../../")] = string(data)
	}
	return out
}

// docCommand is one drover command line shown in a code block.
type docCommand struct {
	page, line string
	args       []string
	// exit is the exit code its comment names ("# exit 5 ..."), or -1.
	exit int
}

// docCommands finds every drover command in the pages' code blocks:
// lines that start with `drover ` or `go run ./cmd/drover `.
func docCommands(t *testing.T) []docCommand {
	t.Helper()
	exitRE := regexp.MustCompile(`\bexit (\d+)\b`)
	var out []docCommand
	for page, text := range docPages(t) {
		in := false
		for _, raw := range strings.Split(text, "\n") {
			line := strings.TrimSpace(raw)
			if strings.HasPrefix(line, "```") {
				in = !in
				continue
			}
			line = strings.TrimPrefix(line, "$ ")
			var rest string
			switch {
			case !in:
				continue
			case strings.HasPrefix(line, "go run ./cmd/drover "):
				rest = strings.TrimPrefix(line, "go run ./cmd/drover ")
			case strings.HasPrefix(line, "drover ") && !strings.HasPrefix(line, "drover: "):
				rest = strings.TrimPrefix(line, "drover ")
			default:
				continue
			}
			c := docCommand{page: page, line: line, exit: -1}
			if i := strings.Index(rest, " #"); i >= 0 {
				if m := exitRE.FindStringSubmatch(rest[i:]); m != nil {
					c.exit, _ = strconv.Atoi(m[1])
				}
				rest = rest[:i]
			}
			if i := strings.Index(rest, " > "); i >= 0 {
				rest = rest[:i] // a shell redirection
			}
			c.args = shellFields(rest)
			out = append(out, c)
		}
	}
	return out
}

// shellFields splits a command line as a shell would for the simple
// quoting the docs use ("..." and '...').
func shellFields(s string) []string {
	var out []string
	var cur strings.Builder
	quote, any := rune(0), false
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '"' || r == '\'':
			quote, any = r, true
		case r == ' ' || r == '\t':
			if cur.Len() > 0 || any {
				out = append(out, cur.String())
			}
			cur.Reset()
			any = false
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 || any {
		out = append(out, cur.String())
	}
	return out
}

// TestEveryDocumentedCommandWorks: every drover command the README and
// docs/ show parses against the real flag set; those on the lab run (with
// their files in a temporary directory), and end as their comment says
// (`# exit 5`) or, without one, with no usage error. Commands that need a
// cluster, a crash (--lab-crash-at, and the resume after it: the crash
// matrix plays them) or a thousand-node lab only parse.
func TestEveryDocumentedCommandWorks(t *testing.T) {
	cmds := docCommands(t)
	if len(cmds) < 15 {
		t.Fatalf("only %d commands found in the docs", len(cmds))
	}
	var buf bytes.Buffer
	root := NewRoot(testStreams(t, &buf, &buf))
	for _, c := range cmds {
		t.Run(c.page+": "+c.line, func(t *testing.T) {
			cmd, rest, err := root.Find(c.args)
			if err != nil || cmd == root {
				t.Fatalf("no such command: %v", err)
			}
			cmd.Flags().VisitAll(func(f *pflag.Flag) { _ = f.Value.Set(f.DefValue); f.Changed = false })
			if err := cmd.ParseFlags(rest); err != nil {
				t.Fatalf("does not parse: %v", err)
			}
			if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
				t.Fatalf("arguments: %v", err)
			}
			line := " " + strings.Join(c.args, " ") + " "
			if !strings.Contains(line, " --lab ") || strings.Contains(line, "--lab-crash-at") || strings.Contains(line, "--lab-nodes") ||
				strings.Contains(line, " --resume ") {
				return
			}
			dir := t.TempDir()
			args := append([]string(nil), c.args...)
			for i := 1; i < len(args); i++ {
				if f := args[i-1]; (f == "--lab-state" || f == "--journal" || f == "--report") && !filepath.IsAbs(args[i]) {
					args[i] = filepath.Join(dir, args[i])
				}
			}
			r := drover(t, args...)
			switch {
			case c.exit >= 0 && r.code != c.exit:
				t.Fatalf("exit %d, the docs say %d\n%s", r.code, c.exit, lastLines(r.stderr, 10))
			case c.exit < 0 && r.code == ExitUsage:
				t.Fatalf("a usage error (exit 2)\n%s", lastLines(r.stderr, 10))
			}
		})
	}
}

// foreignFlags are flags the docs show of other tools.
var foreignFlags = map[string]string{
	"--recover-from": "talosctl bootstrap", "--bucket": "aws s3api", "--prefix": "aws s3api", "--key": "aws s3api",
	"--version-id": "aws s3api", "--query": "aws s3api", "--endpoint-url": "aws", "--metric-annotations-allowlist": "kube-state-metrics",
	"--for": "kubectl wait", "--image": "talosctl upgrade", "--patch": "talosctl patch machineconfig",
}

// TestEveryDocumentedFlagExists: every --flag the README and docs/ name
// is a flag of some drover command (or of a tool the docs name, listed in
// foreignFlags).
func TestEveryDocumentedFlagExists(t *testing.T) {
	var buf bytes.Buffer
	known := map[string]bool{"--help": true}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, fs := range []*pflag.FlagSet{c.Flags(), c.PersistentFlags(), c.InheritedFlags()} {
			fs.VisitAll(func(f *pflag.Flag) { known["--"+f.Name] = true })
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(NewRoot(testStreams(t, &buf, &buf)))
	flagRE := regexp.MustCompile(`(?:^|[\s\x60(])(--[a-z][a-z0-9-]*)`)
	seen := 0
	for page, text := range docPages(t) {
		for _, m := range flagRE.FindAllStringSubmatch(text, -1) {
			seen++
			if !known[m[1]] && foreignFlags[m[1]] == "" {
				t.Errorf("%s names %s, which no drover command has", page, m[1])
			}
		}
	}
	for f, tool := range foreignFlags {
		if known[f] {
			t.Errorf("%s is listed as %s's, but drover has it too: take it off foreignFlags", f, tool)
		}
	}
	if seen < 50 {
		t.Errorf("only %d flags found in the docs", seen)
	}
}

// TestEveryOutputSampleIsWhatDroverPrints: every plain code block of the
// README and docs/ says what it is in the comment above it: the output of
// a drover command (`<!-- output of: ARGS -->`: the command runs on the
// lab and prints each line shown, times and runs of spaces aside; a line
// "..." stands for lines left out, "..." in a line for what varies from
// run to run), or why it is not checked.
func TestEveryOutputSampleIsWhatDroverPrints(t *testing.T) {
	stamp := regexp.MustCompile(`\[\+\d\d:\d\d:\d\d\]`)
	norm := func(s string) string { return strings.Join(strings.Fields(stamp.ReplaceAllString(s, "[+]")), " ") }
	checked := 0
	for page, text := range docPages(t) {
		lines := strings.Split(text, "\n")
		for i := 0; i < len(lines); i++ {
			if strings.TrimSpace(lines[i]) != "```" {
				if strings.HasPrefix(strings.TrimSpace(lines[i]), "```") { // a block with a language: skip it whole
					for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
					}
				}
				continue
			}
			start := i
			var sample []string
			for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
				sample = append(sample, strings.TrimSpace(lines[i]))
			}
			note := ""
			for j := start - 1; j >= 0; j-- {
				if s := strings.TrimSpace(lines[j]); s != "" {
					note = s
					break
				}
			}
			args, ok := strings.CutPrefix(note, "<!-- output of: ")
			if !ok {
				if !strings.HasPrefix(note, "<!-- not checked") && !strings.HasPrefix(note, "<!-- not output") {
					t.Errorf("%s:%d: a code block without a note: say whose output it is (<!-- output of: ARGS -->) or why it is not checked", page, start+1)
				}
				continue
			}
			checked++
			r := drover(t, shellFields(strings.TrimSuffix(args, " -->"))...)
			var out []string
			for _, l := range strings.Split(r.stdout+"\n"+r.stderr, "\n") {
				out = append(out, norm(l))
			}
			for _, want := range sample {
				if want == "..." || want == "" {
					continue
				}
				parts := strings.Split(norm(want), "...")
				if !slices.ContainsFunc(out, func(l string) bool { return inOrder(l, parts) }) {
					t.Errorf("%s:%d: drover %s does not print:\n%s", page, start+1, args, want)
				}
			}
		}
	}
	if checked < 5 {
		t.Errorf("only %d samples checked", checked)
	}
}

// TestTheArchitectureListsEveryPackage: docs/architecture.md names every
// package under internal/.
func TestTheArchitectureListsEveryPackage(t *testing.T) {
	page, err := os.ReadFile("../../docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	dirs, err := os.ReadDir("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if d.IsDir() && !strings.Contains(string(page), "internal/"+d.Name()+"/") {
			t.Errorf("docs/architecture.md does not name internal/%s/", d.Name())
		}
	}
}

// inOrder says the parts appear in line, in order.
func inOrder(line string, parts []string) bool {
	for _, p := range parts {
		i := strings.Index(line, p)
		if i < 0 {
			return false
		}
		line = line[i+len(p):]
	}
	return true
}

// TestTheReportSampleIsWhatDroverRenders: the report sample of
// docs/report.md is what drover report renders for the lab run it names,
// line for line (the run's ID and the report's path aside).
func TestTheReportSampleIsWhatDroverRenders(t *testing.T) {
	page, err := os.ReadFile("../../docs/report.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(page)
	i, j := strings.Index(s, "<!-- BEGIN report sample"), strings.Index(s, "<!-- END report sample -->")
	if i < 0 || j < i {
		t.Fatal("docs/report.md has no report sample between its markers")
	}
	sample := s[strings.Index(s[i:], "\n")+i+1 : j]
	rep := filepath.Join(t.TempDir(), "r.json")
	if r := drover(t, "upgrade", "--lab", "--to-talos", "v1.12.0", "--only", "k8s-ctrl-1,k8s-work-1,k8s-work-2", "--lab-fault", "k8s-work-2=health-fail", "--report", rep, "--yes"); r.code != ExitHalted {
		t.Fatalf("the lab run: exit %d", r.code)
	}
	r := drover(t, "report", "--report", rep)
	if r.code != ExitOK {
		t.Fatalf("drover report: exit %d\n%s", r.code, r.stderr)
	}
	runID := regexp.MustCompile(`\d{8}T\d{6}Z-[0-9a-f]{8}`)
	norm := func(l string) string {
		l = runID.ReplaceAllString(l, "RUN")
		l = strings.ReplaceAll(l, rep, "r.json")
		return strings.TrimLeft(l, "# ")
	}
	got := map[string]bool{}
	for _, l := range strings.Split(r.stdout, "\n") {
		got[norm(l)] = true
	}
	for _, l := range strings.Split(sample, "\n") {
		if strings.TrimSpace(l) != "" && !got[norm(l)] {
			t.Errorf("the sample shows a line drover report does not render:\n%s", l)
		}
	}
}
