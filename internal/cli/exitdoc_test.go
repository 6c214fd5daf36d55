package cli

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestTheDocumentedExitCodesAreTheHelps: the exit-code table of
// docs/commands.md is the one --help prints, row for row.
func TestTheDocumentedExitCodesAreTheHelps(t *testing.T) {
	data, err := os.ReadFile("../../docs/commands.md")
	must(t, err)
	row := regexp.MustCompile(`(?m)^\| (\d+) \| (.+) \|$`)
	i := strings.Index(string(data), "| code | meaning |")
	if i < 0 {
		t.Fatal("docs/commands.md has no exit-code table")
	}
	got := map[int]string{}
	for _, m := range row.FindAllStringSubmatch(string(data[i:]), -1) {
		code, _ := strconv.Atoi(m[1])
		if _, dup := got[code]; dup {
			break // the next table
		}
		got[code] = m[2]
	}
	want := ExitCodes()
	if len(got) != len(want) {
		t.Errorf("docs/commands.md lists %d exit codes, --help %d", len(got), len(want))
	}
	for _, e := range want {
		if got[e.Code] != e.Meaning {
			t.Errorf("exit %d: docs/commands.md says %q, --help says %q", e.Code, got[e.Code], e.Meaning)
		}
	}
	help := drover(t, "--help").stdout
	for _, e := range want {
		if !strings.Contains(strings.Join(strings.Fields(help), " "), strings.ReplaceAll(e.Meaning, "`", "")) {
			t.Errorf("--help does not say exit %d means %q", e.Code, e.Meaning)
		}
	}
}

// TestTheREADMEQuickStartIsWhatTheLabPrints: every line the README's quick
// start shows of the lab run (its timeline and its result) is what the
// command it names prints.
func TestTheREADMEQuickStartIsWhatTheLabPrints(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	must(t, err)
	s := string(data)
	start := strings.Index(s, "```\n[+")
	if start < 0 {
		t.Fatal("the README has no quick-start timeline")
	}
	end := strings.Index(s[start+4:], "```")
	// The lines up to the first "..." are checked whole; later ones
	// without their time: the lab's virtual clock meets the parallel
	// soaks and the hand-off in an order that shifts them by a gate
	// interval from run to run.
	var want []string
	later := false
	for _, line := range strings.Split(s[start+4:start+4+end], "\n") {
		switch {
		case line == "...":
			later = true
		case strings.HasPrefix(line, "[+") && later:
			want = append(want, line[len("[+00:00:00] "):])
		case strings.HasPrefix(line, "[+") || strings.HasPrefix(line, "Result:"):
			want = append(want, line)
		}
	}
	if !strings.Contains(s, "go run ./cmd/drover upgrade --lab --to-talos v1.12.0 --yes") || len(want) < 2 {
		t.Fatalf("the quick start's command or its lines are not where the test looks (%d lines)", len(want))
	}
	r := drover(t, "upgrade", "--lab", "--to-talos", "v1.12.0", "--yes")
	if r.code != ExitOK {
		t.Fatalf("exit %d", r.code)
	}
	for _, line := range want {
		if strings.HasPrefix(line, "Result:") {
			// The lab's total varies by one gate interval between runs
			// (the order in which parallel soaks and the continuation
			// meet on the virtual clock): the result and its counters
			// are checked, not the duration.
			head, _, _ := strings.Cut(line, " in ")
			_, tail, _ := strings.Cut(line, "(simulated)")
			if !strings.Contains(r.stdout, head+" in ") || !strings.Contains(r.stdout, "(simulated)"+tail) {
				t.Errorf("the README's result is not the run's:\n%s", line)
			}
			continue
		}
		if !strings.Contains(r.stdout+r.stderr, line) {
			t.Errorf("the README shows a line the run does not print:\n%s", line)
		}
	}
}
