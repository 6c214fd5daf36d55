package journal

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prox-ops/drover/internal/rollout"
)

func jsonLine(e rollout.Entry) ([]byte, error) {
	b, err := json.Marshal(e)
	return append(b, '\n'), err
}

func TestFileRoundTripAndMasking(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.jsonl")
	j, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	j.Mask = func(s string) string { return strings.ReplaceAll(s, "s3cret", "***") }
	for _, st := range []rollout.Status{rollout.StatusStarted, rollout.StatusFailed} {
		if err := j.Record(context.Background(), rollout.Entry{Time: time.Unix(1, 0), RunID: "r1", Node: "w-1", Step: rollout.StepDrain, Status: st, Detail: "token s3cret"}); err != nil {
			t.Fatal(err)
		}
	}
	_ = j.Close()
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("journal mode %v", fi.Mode())
	}
	f, _ := os.Open(path)
	defer f.Close()
	log, err := Read(f)
	entries := log.Entries
	if err != nil || len(entries) != 2 || entries[1].Status != rollout.StatusFailed || entries[0].Detail != "token ***" {
		t.Fatalf("%+v %v", entries, err)
	}
}

// writeRun journals a run of n entries (and, interleaved, another run's)
// and returns the file's lines.
func writeRun(t *testing.T, path, node string, n int) []string {
	t.Helper()
	j, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	h := &rollout.RunHeader{Cluster: "c", Strategy: "cattle", From: "a", To: "b"}
	for _, run := range []string{"r1", "r2"} {
		if err := j.Record(ctx, rollout.Entry{RunID: run, Step: rollout.StepRun, Status: rollout.StatusStarted, Header: h}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		for _, run := range []string{"r1", "r2"} {
			if err := j.Record(ctx, rollout.Entry{RunID: run, Node: fmt.Sprintf("%s-%d", node, i), Step: rollout.StepDrain, Status: rollout.StatusDone}); err != nil {
				t.Fatal(err)
			}
		}
	}
	_ = j.Close()
	data, _ := os.ReadFile(path)
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

func TestReadRefusesAnEditedCutOrSplicedJournal(t *testing.T) {
	dir := t.TempDir()
	lines := writeRun(t, filepath.Join(dir, "j.jsonl"), "w", 3)
	other := writeRun(t, filepath.Join(dir, "other.jsonl"), "x", 3)
	if len(lines) != 8 {
		t.Fatalf("%d lines", len(lines))
	}
	if log, err := Read(strings.NewReader(strings.Join(lines, "\n") + "\n")); err != nil || len(log.Entries) != 8 {
		t.Fatalf("an intact journal: %v %d", err, len(log.Entries))
	}
	edit := func(i int, from, to string) []string {
		out := append([]string(nil), lines...)
		if !strings.Contains(out[i], from) {
			t.Fatalf("line %d has no %q: %s", i+1, from, out[i])
		}
		out[i] = strings.Replace(out[i], from, to, 1)
		return out
	}
	tests := []struct {
		name  string
		lines []string
		line  string
	}{
		{"the header's target edited", edit(0, `"to":"b"`, `"to":"z"`), "line 3"},
		{"a node's step edited", edit(4, `"drain"`, `"cordon"`), "line 7"},
		{"a line removed", append(append([]string(nil), lines[:2]...), lines[3:]...), "line 4"},
		{"two lines swapped", append(append(append([]string(nil), lines[:2]...), lines[4], lines[3], lines[2]), lines[5:]...), "line 3"},
		{"a line from another journal spliced in", append(append(append([]string(nil), lines[:4]...), other[4]), lines[4:]...), "line 5"},
		{"a line repeated", append(append(append([]string(nil), lines[:5]...), lines[4]), lines[5:]...), "line 6"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(strings.NewReader(strings.Join(tc.lines, "\n") + "\n"))
			if err == nil || !strings.Contains(err.Error(), tc.line) || !strings.Contains(err.Error(), "edited, cut or spliced") {
				t.Fatalf("err = %v, want the chain broken at %s", err, tc.line)
			}
		})
	}
}

func TestATornLastLineIsDroppedWithAWarning(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j.jsonl")
	lines := writeRun(t, path, "w", 2)
	torn := strings.Join(lines, "\n") + "\n" + lines[len(lines)-1][:20]
	log, err := Read(strings.NewReader(torn))
	if err != nil || len(log.Entries) != len(lines) || len(log.Warnings) != 1 || !strings.Contains(log.Warnings[0], "incomplete") {
		t.Fatalf("entries %d, warnings %v, err %v", len(log.Entries), log.Warnings, err)
	}
	// The same bytes in the middle of the journal are refused.
	if _, err := Read(strings.NewReader(torn + "\n" + lines[0] + "\n")); err == nil {
		t.Fatal("a broken line in the middle was accepted")
	}
	// Reopening the file cuts the torn line, so the next entry starts afresh
	// and the run's chain goes on.
	if err := os.WriteFile(path, []byte(torn), 0o600); err != nil {
		t.Fatal(err)
	}
	j, err := OpenFile(path)
	if err != nil || len(j.Warnings) != 1 {
		t.Fatalf("reopen: %v %v", err, j.Warnings)
	}
	if err := j.Record(context.Background(), rollout.Entry{RunID: "r1", Node: "w-9", Step: rollout.StepDrain, Status: rollout.StatusStarted}); err != nil {
		t.Fatal(err)
	}
	_ = j.Close()
	f, _ := os.Open(path)
	defer f.Close()
	log, err = Read(f)
	if err != nil || len(log.Entries) != len(lines)+1 || len(log.Warnings) != 0 {
		t.Fatalf("after the mend: %d entries, %v, %v", len(log.Entries), log.Warnings, err)
	}
}

func TestReadRefusesForeignLines(t *testing.T) {
	for _, bad := range []string{"{}\n", "{\"run\":\"r\",\"step\":\"x\",\"status\":\"done\",\"extra\":1}\n", "garbage\n"} {
		if _, err := Read(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("%q: err = %v", bad, err)
		}
	}
}
