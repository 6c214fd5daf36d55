package cli

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestTheREADMEExitCodesAreTheHelps: the README's exit-code table is the
// one --help prints, row for row.
func TestTheREADMEExitCodesAreTheHelps(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	must(t, err)
	row := regexp.MustCompile(`(?m)^\| (\d+) \| (.+) \|$`)
	i := strings.Index(string(data), "| code | meaning |")
	if i < 0 {
		t.Fatal("the README has no exit-code table")
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
		t.Errorf("the README lists %d exit codes, --help %d", len(got), len(want))
	}
	for _, e := range want {
		if got[e.Code] != e.Meaning {
			t.Errorf("exit %d: README says %q, --help says %q", e.Code, got[e.Code], e.Meaning)
		}
	}
	help := drover(t, "--help").stdout
	for _, e := range want {
		if !strings.Contains(strings.Join(strings.Fields(help), " "), strings.ReplaceAll(e.Meaning, "`", "")) {
			t.Errorf("--help does not say exit %d means %q", e.Code, e.Meaning)
		}
	}
}
