package journal

import (
	"context"
	"encoding/json"
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
	entries, err := Read(f)
	if err != nil || len(entries) != 2 || entries[1].Status != rollout.StatusFailed || entries[0].Detail != "token ***" {
		t.Fatalf("%+v %v", entries, err)
	}
}

func TestReadRefusesForeignLines(t *testing.T) {
	for _, bad := range []string{"{}\n", "{\"run\":\"r\",\"step\":\"x\",\"status\":\"done\",\"extra\":1}\n", "garbage\n"} {
		if _, err := Read(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("%q: err = %v", bad, err)
		}
	}
}
