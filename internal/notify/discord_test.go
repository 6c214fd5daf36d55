package notify

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/secrets"
)

// A webhook server in the test, on loopback; the retries wait on a
// virtual clock so the test does not sleep.
func webhook(t *testing.T, answer func(n int32, w http.ResponseWriter)) (*httptest.Server, *atomic.Int32, *[]Message) {
	t.Helper()
	var calls atomic.Int32
	var mu sync.Mutex
	var got []Message
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		var m Message
		if err := json.Unmarshal(body, &m); err != nil {
			t.Errorf("bad payload: %v", err)
		}
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
		answer(n, w)
	}))
	t.Cleanup(srv.Close)
	return srv, &calls, &got
}

func TestRateLimitedThenDeliveredExactlyOnce(t *testing.T) {
	srv, calls, got := webhook(t, func(n int32, w http.ResponseWriter) {
		if n == 1 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write([]byte(`{"message": "You are being rate limited.", "retry_after": 0.05, "global": false}`))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	d := &Discord{URL: srv.URL, Clock: clock.Real{}}
	d.Send("run-start", Message{Embeds: []Embed{{Title: "hello"}}})
	dels := d.Close(5 * time.Second)
	if len(dels) != 1 || !dels[0].Delivered || dels[0].Attempts != 2 {
		t.Fatalf("deliveries %+v", dels)
	}
	if calls.Load() != 2 || len(*got) != 2 {
		t.Fatalf("%d calls; want one refused and one delivered", calls.Load())
	}
}

func TestFailuresNeverFailTheRun(t *testing.T) {
	srv, calls, _ := webhook(t, func(_ int32, w http.ResponseWriter) { w.WriteHeader(http.StatusInternalServerError) })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String() + "/webhook"
	l.Close()
	for _, url := range []string{srv.URL, closed} {
		d := &Discord{URL: url, MaxAttempts: 3, Backoff: time.Millisecond, Clock: clock.Real{}}
		d.Event(rollout.Event{Kind: rollout.EventRunStarted, Message: "x"})
		d.Event(rollout.Event{Kind: rollout.EventRunStarted, Message: "y"})
		dels := d.Close(10 * time.Second)
		// The first message gets every attempt; once the webhook is known
		// to be down, the next gets one.
		if len(dels) != 2 || dels[0].Delivered || dels[0].Attempts != 3 || dels[1].Attempts != 1 || dels[0].Error == "" {
			t.Fatalf("%s: deliveries %+v", url, dels)
		}
	}
	if calls.Load() != 4 {
		t.Fatalf("the failing webhook was called %d times, want 3 + 1", calls.Load())
	}
}

// TestEventNeverWaitsForTheWebhook: the webhook holds every request until
// the test has sent its events: were Event to wait for the delivery, the
// test would never get past it.
func TestEventNeverWaitsForTheWebhook(t *testing.T) {
	release := make(chan struct{})
	srv, calls, _ := webhook(t, func(_ int32, w http.ResponseWriter) {
		<-release
		w.WriteHeader(http.StatusNoContent)
	})
	d := &Discord{URL: srv.URL, MaxAttempts: 1, Backoff: time.Millisecond, Clock: clock.Real{}}
	for i := range 5 {
		d.Event(rollout.Event{Kind: rollout.EventRunStarted, Message: fmt.Sprint(i)})
	}
	close(release)
	if dels := d.Close(10 * time.Second); len(dels) != 5 || calls.Load() != 5 {
		t.Fatalf("%d deliveries, %d calls", len(dels), calls.Load())
	}
}

func TestOversizedMessageIsTruncatedToDiscordLimits(t *testing.T) {
	var fields []Field
	for i := 0; i < 40; i++ {
		fields = append(fields, Field{Name: strings.Repeat("n", 300), Value: strings.Repeat("v", 2000)})
	}
	m := Fit(Message{Embeds: []Embed{{Title: strings.Repeat("t", 400), Description: strings.Repeat("é", 5000), Fields: fields}}})
	e := m.Embeds[0]
	switch {
	case utf8.RuneCountInString(e.Title) > maxTitle, !strings.HasSuffix(e.Title, "…"):
		t.Fatalf("title %d runes", utf8.RuneCountInString(e.Title))
	case utf8.RuneCountInString(e.Description) > maxDescription:
		t.Fatalf("description %d runes", utf8.RuneCountInString(e.Description))
	case len(e.Fields) > maxFields:
		t.Fatalf("%d fields", len(e.Fields))
	case total(m) > maxTotal:
		t.Fatalf("total %d characters", total(m))
	}
	for _, f := range e.Fields {
		if utf8.RuneCountInString(f.Value) > maxFieldValue || utf8.RuneCountInString(f.Name) > maxFieldName {
			t.Fatal("a field is over its limit")
		}
	}
	// And the server takes it.
	srv, _, got := webhook(t, func(_ int32, w http.ResponseWriter) { w.WriteHeader(http.StatusNoContent) })
	d := &Discord{URL: srv.URL, Clock: clock.Real{}}
	d.Send("big", Message{Embeds: []Embed{{Title: strings.Repeat("t", 400), Description: strings.Repeat("x", 9000)}}})
	if dels := d.Close(5 * time.Second); !dels[0].Delivered || total((*got)[0]) > maxTotal {
		t.Fatalf("deliveries %+v", dels)
	}
}

func TestMessagesCoverTheRunAndAreMasked(t *testing.T) {
	const canary = "canary-hook-token-77"
	srv, _, got := webhook(t, func(_ int32, w http.ResponseWriter) { w.WriteHeader(http.StatusNoContent) })
	d := &Discord{URL: srv.URL, Clock: clock.Real{}, Mask: secrets.New(canary).Mask}
	nr := &rollout.NodeReport{Name: "k8s-work-1", Outcome: rollout.OutcomeUpgraded, From: "v1.11.3", To: "v1.12.0", Duration: time.Minute}
	for _, e := range []rollout.Event{
		{Kind: rollout.EventRunStarted, Message: "cattle upgrade, token " + canary},
		{Kind: rollout.EventNodeDone, Node: "k8s-work-1", NodeReport: nr},
		{Kind: rollout.EventRollback, Node: "k8s-work-2", NodeReport: &rollout.NodeReport{FailedChecks: []string{"DNS Resolution"}}, Message: "rolling back"},
		{Kind: rollout.EventRunFinished, Report: &rollout.Report{Result: rollout.ResultRollbackFailed, Error: "rollback failed"}},
		{Kind: rollout.EventStep, Node: "x"},
	} {
		d.Event(e)
	}
	dels := d.Close(5 * time.Second)
	if len(dels) != 4 {
		t.Fatalf("%d deliveries, want run start, node done, rollback, rollback failed", len(dels))
	}
	body, _ := json.Marshal(*got)
	text := string(body)
	for _, want := range []string{"upgrade started", "k8s-work-1 upgraded", "🔴 Rolling back k8s-work-2", "DNS Resolution", "🚨 Rollback failed"} {
		if !strings.Contains(text, want) {
			t.Errorf("messages lack %q", want)
		}
	}
	if strings.Contains(text, canary) {
		t.Fatal("a secret reached Discord")
	}
}

// TestAWebhookThatNeverAnswersNamesEachMessage: at the end of the run,
// every message still waiting is reported by name, not as one "(queue)".
func TestAWebhookThatNeverAnswersNamesEachMessage(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	srv, _, _ := webhook(t, func(_ int32, w http.ResponseWriter) {
		<-release
		w.WriteHeader(http.StatusNoContent)
	})
	d := &Discord{URL: srv.URL, MaxAttempts: 1, Backoff: time.Millisecond, Clock: clock.Real{}}
	d.Send("run-start", Message{Username: "a"})
	d.Send("node-done", Message{Username: "b"})
	d.Send("run-summary", Message{Username: "c"})
	dels := d.Close(200 * time.Millisecond)
	var names []string
	for _, del := range dels {
		if del.Delivered || !strings.Contains(del.Error, "had not answered") {
			t.Errorf("delivery %+v", del)
		}
		names = append(names, del.Event)
	}
	if strings.Join(names, ",") != "run-start,node-done,run-summary" {
		t.Errorf("deliveries name %v", names)
	}
}

// TestEachNodeGetsItsOwnMessage: an upgraded, a rolled-back and a failed
// node each get a message naming the strategy and duration; the rolled
// back one says its rollback completed and how long it took, the failed
// ones give the reason and failing checks; an untouched node gets none.
func TestEachNodeGetsItsOwnMessage(t *testing.T) {
	at := time.Date(2026, 1, 1, 2, 30, 0, 0, time.UTC)
	tests := []struct {
		name  string
		node  rollout.NodeReport
		title string
		want  []string
	}{
		{"upgraded", rollout.NodeReport{Name: "k8s-work-1", Outcome: rollout.OutcomeUpgraded, From: "v1.11.3", To: "v1.12.0", Duration: 5*time.Minute + 26*time.Second},
			"✅ k8s-work-1 upgraded", []string{"cattle", "v1.11.3 → v1.12.0", "5m26s"}},
		{"rolled back", rollout.NodeReport{Name: "k8s-work-2", Outcome: rollout.OutcomeRolledBack, From: "v1.11.3", To: "v1.12.0", Duration: 11 * time.Minute,
			Reason: "health gate failed for node k8s-work-2: DNS Resolution", FailedChecks: []string{"DNS Resolution"},
			Steps: []rollout.StepRecord{{Step: rollout.StepRollback, Status: rollout.StatusDone, Started: at, Finished: at.Add(4*time.Minute + 56*time.Second)}}},
			"↩️ k8s-work-2 rolled back", []string{"cattle", "11m0s", "completed in 4m56s: back on v1.11.3", "DNS Resolution", "health gate failed"}},
		{"failed", rollout.NodeReport{Name: "k8s-work-3", Outcome: rollout.OutcomeFailed, From: "v1.11.3", To: "v1.12.0", Duration: time.Minute,
			Reason: "drain: 1 pod(s) still on the node"},
			"❌ k8s-work-3 failed", []string{"cattle", "drain: 1 pod(s) still on the node"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, _, ok := MessageFor(rollout.Event{Kind: rollout.EventNodeDone, Node: tc.node.Name, NodeReport: &tc.node, Strategy: "cattle"})
			if !ok || m.Embeds[0].Title != tc.title {
				t.Fatalf("%v %+v", ok, m)
			}
			body, _ := json.Marshal(m)
			for _, w := range tc.want {
				if !strings.Contains(string(body), w) {
					t.Errorf("lacks %q: %s", w, body)
				}
			}
		})
	}
	if _, _, ok := MessageFor(rollout.Event{Kind: rollout.EventNodeDone, NodeReport: &rollout.NodeReport{Name: "x", Outcome: rollout.OutcomeUntouched}}); ok {
		t.Error("an untouched node got a message")
	}
}
