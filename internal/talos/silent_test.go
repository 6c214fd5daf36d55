package talos

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/testenv"
	"github.com/prox-ops/drover/internal/version"
)

// endpoints serves f behind n endpoints and connects the production
// client, its calls bounded by call.
func endpoints(t *testing.T, f *testenv.TalosAPI, n int, call time.Duration) (*API, []*testenv.Endpoint, *logBuf) {
	t.Helper()
	cfg, eps := f.ServeEndpoints(t, n)
	path := filepath.Join(t.TempDir(), "talosconfig")
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &logBuf{}
	c, err := NewClient(context.Background(), path, Bounds{Call: call, Log: func(msg string) { logs.log("", msg) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &API{Client: c, Clock: clock.Real{}, Talos: talosCfg, RebootTimeout: 3 * time.Second, PollInterval: 100 * time.Millisecond, Log: logs.log}, eps, logs
}

// TestSilentEndpoints: a Talos API endpoint that accepts connections and
// never answers, or goes silent in the middle of a wait, holds no call past
// its bound: each call ends within its timeout, the calls that change
// nothing go on to the next endpoint of the talosconfig (which answers),
// the log names the endpoint that went silent, and a wait on silent
// endpoints ends within its timeout plus 10 s.
func TestSilentEndpoints(t *testing.T) {
	f := testenv.NewTalosAPI()
	f.Add(cps[0].IP, cps[0].Name, "v1.13.0", 1)
	t.Run("a silent endpoint: the next one answers", func(t *testing.T) {
		a, eps, logs := endpoints(t, f, 2, 2*time.Second)
		for range 4 { // both endpoints connected
			if _, err := a.NodeVersion(context.Background(), cps[0]); err != nil {
				t.Fatal(err)
			}
		}
		eps[0].Silence()
		// Round robin: some calls go to the silent endpoint first.
		for i := range 4 {
			start := time.Now()
			v, err := a.NodeVersion(context.Background(), cps[0])
			if err != nil || v.String() != "v1.13.0" {
				t.Fatalf("call %d: %v %v", i, v, err)
			}
			if took := time.Since(start); took > 2*time.Second+10*time.Second {
				t.Fatalf("call %d took %s", i, took)
			}
		}
		if !strings.Contains(logs.String(), "the Talos API endpoint "+eps[0].Addr+" did not answer /machine.MachineService/Version") {
			t.Fatalf("the log does not name the silent endpoint:\n%s", logs)
		}
	})
	t.Run("every endpoint goes silent in the middle of a wait", func(t *testing.T) {
		a, eps, _ := endpoints(t, f, 2, 10*time.Second)
		go func() {
			time.Sleep(500 * time.Millisecond)
			for _, e := range eps {
				e.Silence()
			}
		}()
		start := time.Now()
		err := a.waitVersion(context.Background(), cps[0], version.MustParse("v1.13.1"))
		took := time.Since(start)
		var te *clock.TimeoutError
		if !errors.As(err, &te) || took > a.RebootTimeout+10*time.Second {
			t.Fatalf("the wait ended after %s with %v: want its 3s timeout (plus at most 10s)", took, err)
		}
	})
	t.Run("a stopped endpoint: the others answer", func(t *testing.T) {
		a, eps, _ := endpoints(t, f, 3, 2*time.Second)
		if _, err := a.NodeVersion(context.Background(), cps[0]); err != nil {
			t.Fatal(err)
		}
		eps[1].Stop()
		for i := range 6 {
			if _, err := a.NodeVersion(context.Background(), cps[0]); err != nil {
				t.Fatalf("call %d after an endpoint stopped: %v", i, err)
			}
		}
	})
}
