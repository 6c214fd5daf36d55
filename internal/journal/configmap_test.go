package journal

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/prox-ops/drover/internal/kube"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/testenv"
)

func TestConfigMapJournalOnARealAPIServer(t *testing.T) {
	testenv.Require(t, env)
	ctx := context.Background()
	cm := &ConfigMap{Client: env.Drover, Namespace: "drover-journal-test", Name: "drover-journal", Mask: func(s string) string { return strings.ReplaceAll(s, "s3cret", "***") }}
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

// fastClient is the production client at the rate an operator would set
// with --kube-qps/--kube-burst: the long-run tests write thousands of
// entries, which at kubectl's 50 QPS take minutes.
func fastClient(t *testing.T) kubernetes.Interface {
	t.Helper()
	rc, _, err := (kube.Access{Kubeconfig: env.Kubeconfig, QPS: 2000, Burst: 2000}).RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	return kubernetes.NewForConfigOrDie(rc)
}

// entry is a realistic journal entry of run at step i.
func entry(run string, i int) rollout.Entry {
	e := rollout.Entry{Time: time.Unix(1_800_000_000, 0).Add(time.Duration(i) * time.Second), RunID: run,
		Node: fmt.Sprintf("k8s-work-%d", i%12+1), Step: rollout.StepDrain, Status: rollout.StatusDone,
		Detail: fmt.Sprintf("evicted %d pods (apps/plex-%d, media/jellyfin-%d); waited 41s for their grace", i%7, i, i)}
	if i == 0 {
		e.Step, e.Status, e.Node = rollout.StepRun, rollout.StatusStarted, ""
		e.Header = &rollout.RunHeader{Cluster: "prox-ops", Strategy: "cattle", From: "v1.11.3", To: "v1.12.0"}
	}
	return e
}

func record(t *testing.T, j rollout.Journal, run string, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := j.Record(context.Background(), entry(run, i)); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
}

// chunks are the journal's chunk ConfigMaps.
func chunks(t *testing.T, ns, name string) []corev1.ConfigMap {
	t.Helper()
	l, err := env.Client.CoreV1().ConfigMaps(ns).List(context.Background(), metav1.ListOptions{LabelSelector: LabelJournal + "=" + name})
	if err != nil {
		t.Fatal(err)
	}
	return l.Items
}

// TestALongRunIsKeptWholeAtAFlatCost: a run of 10,000 entries is written
// in chunks no bigger than ChunkBytes, each entry sending at most
// MaxEntryBytes, and reads back whole (its header and chain included).
func TestALongRunIsKeptWholeAtAFlatCost(t *testing.T) {
	testenv.Require(t, env)
	ns := env.Namespace(t, "journal-long")
	cm := &ConfigMap{Client: fastClient(t), Namespace: ns, Name: "drover-journal"}
	const n = 10_000
	record(t, cm, "long", 0, n)
	if per := cm.Sent / n; per > MaxEntryBytes || per == 0 {
		t.Errorf("%d bytes sent per entry, want at most %d", per, MaxEntryBytes)
	}
	// What etcd keeps per entry is bounded by a chunk, not by the run.
	if per := cm.Stored / n; per > ChunkBytes || per == 0 {
		t.Errorf("%d bytes of revisions per entry, want at most %d", per, ChunkBytes)
	}
	for _, c := range chunks(t, ns, "drover-journal") {
		size := 0
		for _, v := range c.Data {
			size += len(v) + 1
		}
		if size > ChunkBytes {
			t.Errorf("chunk %s holds %d bytes, over %d", c.Name, size, ChunkBytes)
		}
	}
	entries, err := (&ConfigMap{Client: env.Drover, Namespace: ns, Name: "drover-journal"}).Entries(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != n || entries[0].Header == nil || entries[n-1].Detail != entry("long", n-1).Detail {
		t.Fatalf("%d entries back, want %d with the header first", len(entries), n)
	}
}

// TestTwoWritersRaceOnOneChunk: two processes (two journals) record the
// same run at once; the loser of each race rereads the chunk and retries,
// and nothing is lost or out of chain.
func TestTwoWritersRaceOnOneChunk(t *testing.T) {
	testenv.Require(t, env)
	ns := env.Namespace(t, "journal-race")
	first := &ConfigMap{Client: env.Drover, Namespace: ns, Name: "j"}
	record(t, first, "race", 0, 1)
	second := &ConfigMap{Client: env.Drover, Namespace: ns, Name: "j"}
	var wg sync.WaitGroup
	for w, j := range []*ConfigMap{first, second} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				if err := j.Record(context.Background(), entry("race", 1+w*100+i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	entries, err := first.Entries(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		seen[e.Detail] = true
	}
	if len(entries) != 201 || len(seen) != 201 {
		t.Fatalf("%d entries (%d distinct), want 201", len(entries), len(seen))
	}
}

// TestACrashBetweenChunksThenAResume: the process dies right after a
// chunk filled; a new one (a new runner pod) starts the next chunk and the
// run reads back whole, resumable.
func TestACrashBetweenChunksThenAResume(t *testing.T) {
	testenv.Require(t, env)
	ns := env.Namespace(t, "journal-crash")
	first := &ConfigMap{Client: env.Drover, Namespace: ns, Name: "j"}
	// Fill the first chunk to the entry that ends it.
	n := 0
	for ; ; n++ {
		record(t, first, "crash", n, n+1)
		w := first.runs["crash"]
		next, err := json.Marshal(entry("crash", n+1))
		if err != nil {
			t.Fatal(err)
		}
		// The chain adds its two hashes to the next line.
		if w.keys >= chunkEntries || w.bytes+len(next)+100 > ChunkBytes {
			n++
			break
		}
	}
	if got := len(chunks(t, ns, "j")); got != 1 {
		t.Fatalf("%d chunks after one full chunk", got)
	}
	again := &ConfigMap{Client: env.Drover, Namespace: ns, Name: "j"}
	record(t, again, "crash", n, n+3)
	if got := len(chunks(t, ns, "j")); got != 2 {
		t.Fatalf("%d chunks after the resume, want 2", got)
	}
	entries, err := again.Entries(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != n+3 {
		t.Fatalf("%d entries, want %d", len(entries), n+3)
	}
	if _, err := rollout.ReadResume(rollout.LastRun(entries)); err != nil {
		t.Fatal(err)
	}
}

// TestOldRunsArePrunedWholeTheRunningOneNever: with keepRuns 2, a third
// run deletes the first run's chunks, all of them; the running run,
// however long, is never cut.
func TestOldRunsArePrunedWholeTheRunningOneNever(t *testing.T) {
	testenv.Require(t, env)
	ns := env.Namespace(t, "journal-prune")
	j := &ConfigMap{Client: env.Drover, Namespace: ns, Name: "j", KeepRuns: 2}
	record(t, j, "run-1", 0, 2*chunkEntries) // two chunks
	record(t, j, "run-2", 0, 3)
	record(t, j, "run-3", 0, 3*chunkEntries)
	entries, err := j.Entries(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	runs := map[string]int{}
	for _, e := range entries {
		runs[e.RunID]++
	}
	if runs["run-1"] != 0 || runs["run-2"] != 3 || runs["run-3"] != 3*chunkEntries {
		t.Fatalf("runs kept: %v", runs)
	}
}

// TestTheOldFormatIsReadAndContinued: a journal ConfigMap written by an
// older drover (every run in one key) is read back; its unfinished run
// is continued in chunks, and the chain spans both.
func TestTheOldFormatIsReadAndContinued(t *testing.T) {
	testenv.Require(t, env)
	ns := env.Namespace(t, "journal-legacy")
	var old bytes.Buffer
	ch := newChain()
	for _, run := range []string{"old-1", "old-2"} {
		for i := range 4 {
			e := entry(run, i)
			line, err := encode(&e, ch, nil)
			if err != nil {
				t.Fatal(err)
			}
			ch.add(run, line)
			old.Write(append(line, '\n'))
		}
	}
	if _, err := env.Client.CoreV1().ConfigMaps(ns).Create(context.Background(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "drover-journal"}, Data: map[string]string{ConfigMapKey: old.String()}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	j := &ConfigMap{Client: env.Drover, Namespace: ns, Name: "drover-journal"}
	record(t, j, "old-2", 4, 6) // the resumed run goes on
	record(t, j, "new", 0, 2)
	entries, err := j.Entries(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.RunID)
	}
	want := "old-1 old-1 old-1 old-1 old-2 old-2 old-2 old-2 old-2 old-2 new new"
	if strings.Join(got, " ") != want {
		t.Fatalf("runs read back: %s\nwant %s", strings.Join(got, " "), want)
	}
}

// TestALongDetailIsCutToTheEntryBound: an entry whose detail is larger
// than MaxEntryBytes is cut, said so, and sent within the bound.
func TestALongDetailIsCutToTheEntryBound(t *testing.T) {
	testenv.Require(t, env)
	ns := env.Namespace(t, "journal-cut")
	j := &ConfigMap{Client: env.Drover, Namespace: ns, Name: "j"}
	record(t, j, "cut", 0, 2)
	before := j.Sent
	e := entry("cut", 2)
	e.Detail = strings.Repeat(`pod "a" still terminating; `, 2000)
	if err := j.Record(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if sent := j.Sent - before; sent > MaxEntryBytes {
		t.Fatalf("one entry sent %d bytes", sent)
	}
	entries, err := j.Entries(context.Background())
	if err != nil || len(entries) != 3 || !strings.Contains(entries[2].Detail, "[cut:") {
		t.Fatalf("%v %d", err, len(entries))
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
		{"configmap:" + strings.Repeat("a", 240), "", "", true, true},
	}
	for _, tc := range tests {
		ns, name, ok, err := ParseConfigMapRef(tc.in, "drover")
		if ns != tc.ns || name != tc.name || ok != tc.ok || (err != nil) != tc.err {
			t.Errorf("%q: %s %s %v %v", tc.in, ns, name, ok, err)
		}
	}
}
