package journal

import (
	"context"
	"testing"
	"time"

	"github.com/prox-ops/drover/internal/testenv"
)

// TestDurationsHistory keeps samples in a ConfigMap of the real API
// server: the newest KeepSamples per kind, and medians once there are
// MinSamples.
func TestDurationsHistory(t *testing.T) {
	testenv.Require(t, env)
	ctx := context.Background()
	ns := env.Namespace(t, "durations-test")
	d := Durations{Client: env.Drover, Namespace: ns}
	if s, err := d.Load(ctx); err != nil || len(s) != 0 {
		t.Fatalf("empty history: %v %v", s, err)
	}
	if err := d.Add(ctx, map[string][]time.Duration{"cattle/worker": {5 * time.Minute, 7 * time.Minute}}); err != nil {
		t.Fatal(err)
	}
	s, _ := d.Load(ctx)
	if med, _ := Medians(s); len(med) != 0 {
		t.Fatalf("a median from two samples: %v", med)
	}
	var more []time.Duration
	for i := range KeepSamples + 5 {
		more = append(more, time.Duration(300+i)*time.Second)
	}
	if err := d.Add(ctx, map[string][]time.Duration{"cattle/worker": more, "cattle/templates": {10 * time.Minute, 12 * time.Minute, 11 * time.Minute}}); err != nil {
		t.Fatal(err)
	}
	s, err := d.Load(ctx)
	if err != nil || len(s["cattle/worker"]) != KeepSamples {
		t.Fatalf("kept %d worker samples (%v), want %d", len(s["cattle/worker"]), err, KeepSamples)
	}
	med, n := Medians(s)
	// The newest 20 of 300..324 s are 305..324: the median is 314.5 s.
	if med["cattle/worker"] != 315*time.Second && med["cattle/worker"] != 314*time.Second || n["cattle/worker"] != KeepSamples {
		t.Fatalf("worker median %s over %d", med["cattle/worker"], n["cattle/worker"])
	}
	if med["cattle/templates"] != 11*time.Minute {
		t.Fatalf("templates median %s", med["cattle/templates"])
	}
}
