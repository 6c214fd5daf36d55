package journal

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/testenv"
)

func TestConfigMapJournalOnARealAPIServer(t *testing.T) {
	testenv.Require(t, env)
	ctx := context.Background()
	cm := &ConfigMap{Client: env.Client, Namespace: "drover-journal-test", Name: "drover-journal", Mask: func(s string) string { return strings.ReplaceAll(s, "s3cret", "***") }}
	h := &rollout.RunHeader{Cluster: "c", Strategy: "cattle", From: "a", To: "b"}
	if err := cm.Record(ctx, rollout.Entry{Time: time.Now(), RunID: "r1", Step: rollout.StepRun, Status: rollout.StatusStarted, Header: h}); err != nil {
		t.Fatal(err)
	}
	// Parallel nodes write at once: conflicts are retried, nothing is lost.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := cm.Record(ctx, rollout.Entry{Time: time.Now(), RunID: "r1", Node: "w-" + string(rune('a'+i)), Step: rollout.StepDrain, Status: rollout.StatusStarted, Detail: "s3cret"}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	entries, err := cm.Entries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 9 {
		t.Fatalf("%d entries, want 9", len(entries))
	}
	for _, e := range entries {
		if strings.Contains(e.Detail, "s3cret") {
			t.Fatal("a secret reached the ConfigMap")
		}
	}
	st, err := rollout.ReadResume(entries)
	if err != nil || len(st.Nodes) != 8 || st.Nodes["w-a"].ResumeAt != rollout.StepCordon {
		t.Fatalf("resume state %+v %v", st, err)
	}
}

func TestParseConfigMapRef(t *testing.T) {
	tests := []struct {
		in, ns, name string
		ok, err      bool
	}{
		{"journal.jsonl", "", "", false, false},
		{"configmap", "drover", "drover-journal", true, false},
		{"configmap:ops/upgrade-journal", "ops", "upgrade-journal", true, false},
		{"configmap:upgrade-journal", "drover", "upgrade-journal", true, false},
		{"configmap:", "", "", true, true},
		{"configmap:Bad_Name", "", "", true, true},
		{"configmap:ops/", "", "", true, true},
		{"configmap:/name", "", "", true, true},
	}
	for _, tc := range tests {
		ns, name, ok, err := ParseConfigMapRef(tc.in, "drover")
		if ns != tc.ns || name != tc.name || ok != tc.ok || (err != nil) != tc.err {
			t.Errorf("%q: %s %s %v %v", tc.in, ns, name, ok, err)
		}
	}
}
