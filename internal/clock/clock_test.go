package clock

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestVirtualSleepAdvancesWithoutWallTime(t *testing.T) {
	v := NewVirtual(epoch)
	start := time.Now()
	if err := v.Sleep(context.Background(), 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	if got := v.Now().Sub(epoch); got != 2*time.Hour {
		t.Fatalf("virtual elapsed = %s, want 2h", got)
	}
	if wall := time.Since(start); wall > time.Second {
		t.Fatalf("a virtual 2h sleep took %s of wall time", wall)
	}
}

func TestVirtualAfterFuncFiresInDeadlineOrder(t *testing.T) {
	v := NewVirtual(epoch)
	var order []string
	v.AfterFunc(30*time.Second, func() { order = append(order, "b@30s") })
	v.AfterFunc(10*time.Second, func() {
		order = append(order, "a@10s")
		v.AfterFunc(5*time.Second, func() { order = append(order, "c@15s") })
	})
	cancel := v.AfterFunc(20*time.Second, func() { order = append(order, "cancelled") })
	cancel()
	if err := v.Sleep(context.Background(), time.Minute); err != nil {
		t.Fatal(err)
	}
	want := []string{"a@10s", "c@15s", "b@30s"}
	if len(order) != len(want) {
		t.Fatalf("fired %v, want %v", order, want)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("fired %v, want %v", order, want)
		}
	}
}

func TestVirtualParallelWorkersShareTime(t *testing.T) {
	v := NewVirtual(epoch)
	var mu sync.Mutex
	finished := map[string]time.Duration{}
	work := func(name string, d time.Duration) func() {
		return func() {
			_ = v.Sleep(context.Background(), d)
			_ = v.Sleep(context.Background(), d)
			mu.Lock()
			finished[name] = v.Now().Sub(epoch)
			mu.Unlock()
		}
	}
	Parallel(v, work("a", time.Minute), work("b", 3*time.Minute), work("c", 2*time.Minute))
	if got := v.Now().Sub(epoch); got != 6*time.Minute {
		t.Fatalf("after parallel work the clock reads +%s, want +6m (the longest worker)", got)
	}
	want := map[string]time.Duration{"a": 2 * time.Minute, "b": 6 * time.Minute, "c": 4 * time.Minute}
	for k, w := range want {
		if finished[k] != w {
			t.Errorf("worker %s finished at +%s, want +%s", k, finished[k], w)
		}
	}
}

func TestVirtualSleepHonoursCancel(t *testing.T) {
	v := NewVirtual(epoch)
	ctx, cancel := context.WithCancel(context.Background())
	v.AfterFunc(time.Minute, cancel)
	err := v.Sleep(ctx, time.Hour)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if got := v.Now().Sub(epoch); got != time.Minute {
		t.Fatalf("cancelled at +%s, want +1m", got)
	}
	// The clock still works after a cancelled sleep.
	if err := v.Sleep(context.Background(), time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestPoll(t *testing.T) {
	tests := []struct {
		name      string
		readyAt   time.Duration
		timeout   time.Duration
		wantErr   bool
		wantAtMin time.Duration
	}{
		{name: "condition already true returns at once", readyAt: 0, timeout: time.Minute, wantAtMin: 0},
		{name: "condition true later is seen on the next poll", readyAt: 25 * time.Second, timeout: time.Minute, wantAtMin: 30 * time.Second},
		{name: "condition never true times out at the deadline", readyAt: time.Hour, timeout: time.Minute, wantErr: true, wantAtMin: time.Minute},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := NewVirtual(epoch)
			err := Poll(context.Background(), v, "the thing", 10*time.Second, tc.timeout, func(context.Context) (bool, string, error) {
				return v.Now().Sub(epoch) >= tc.readyAt, "not yet", nil
			})
			var te *TimeoutError
			if tc.wantErr != errors.As(err, &te) {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if te != nil && te.Last != "not yet" {
				t.Errorf("timeout error lost the last reason: %v", te)
			}
			if got := v.Now().Sub(epoch); got != tc.wantAtMin {
				t.Fatalf("returned at +%s, want +%s", got, tc.wantAtMin)
			}
		})
	}
}

func TestEvery(t *testing.T) {
	v := NewVirtual(epoch)
	var at []time.Duration
	stop := Every(v, 10*time.Second, func() { at = append(at, v.Now().Sub(epoch)) })
	if err := v.Sleep(context.Background(), 35*time.Second); err != nil {
		t.Fatal(err)
	}
	stop()
	if err := v.Sleep(context.Background(), time.Minute); err != nil {
		t.Fatal(err)
	}
	if len(at) != 3 || at[0] != 10*time.Second || at[2] != 30*time.Second {
		t.Fatalf("ticks at %v, want 10s, 20s, 30s and none after stop", at)
	}
	if v.Pending() != 0 {
		t.Fatalf("%d timers left after stop", v.Pending())
	}
}

// TestGoRunsInTheBackgroundOnTheVirtualClock: a goroutine started with Go
// sleeps on the virtual clock while its caller works and sleeps too; time
// advances only when both wait, and wait returns once it is done.
func TestGoRunsInTheBackgroundOnTheVirtualClock(t *testing.T) {
	start := time.Unix(0, 0)
	v := NewVirtual(start)
	var at time.Time
	wait := Go(v, func() {
		_ = v.Sleep(context.Background(), 5*time.Minute)
		at = v.Now()
	})
	if err := v.Sleep(context.Background(), 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if got := v.Now().Sub(start); got != 2*time.Minute {
		t.Fatalf("the caller woke at +%s", got)
	}
	wait()
	if got := at.Sub(start); got != 5*time.Minute {
		t.Fatalf("the background work ended at +%s, want +5m", got)
	}
	if got := v.Now().Sub(start); got != 5*time.Minute {
		t.Fatalf("after the wait the clock says +%s", got)
	}
	// Waiting for work that is done already returns at once.
	wait()
	done := Go(v, func() {})
	done()
	if err := v.Sleep(context.Background(), time.Second); err != nil || v.Now().Sub(start) != 5*time.Minute+time.Second {
		t.Fatalf("the clock is stuck or skewed: +%s %v", v.Now().Sub(start), err)
	}
}
