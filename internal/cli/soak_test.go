package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestASoakCatchesANodeThatDegradesLater: late-degrade passes its gate and
// begins restarting a pod two minutes after it came back; its soak, going
// on in the background while the next worker is changed, catches it: the
// next worker finishes up to its gate, the degraded node is rolled back,
// the run halts (exit 1).
func TestASoakCatchesANodeThatDegradesLater(t *testing.T) {
	r := drover(t, "upgrade", "--lab", "--to-talos", "v1.12.0", "--yes", "--output", "json", "--lab-fault", "k8s-work-2=late-degrade")
	if r.code != ExitHalted {
		t.Fatalf("exit %d, want 1\n%s", r.code, lastLines(r.stderr, 10))
	}
	rep := decodeReport(t, r)
	out := map[string]string{}
	for _, n := range rep.Nodes {
		out[n.Name] = n.Outcome
	}
	if out["k8s-work-2"] != "rolled-back" || out["k8s-work-3"] != "upgraded" || out["k8s-work-4"] != "untouched" {
		t.Fatalf("outcomes %v: want k8s-work-2 rolled back after k8s-work-3 reached its gate", out)
	}
	if !strings.Contains(r.stderr, "k8s-work-2     ✅ Node k8s-work-2") || !strings.Contains(r.stderr, "degraded during its soak") {
		t.Fatalf("the node did not pass its gate, then fail its soak:\n%s", lastLines(r.stderr, 30))
	}
}

// TestTheETAIsTheLabsDuration: for the shipped example and the quick
// start, the plan's ETA (every step, gate passes and intervals, soaks as
// they overlap, the hand-off) is within 5% of the lab's simulated run,
// and the run is within the PRD's two hours (NFR1).
func TestTheETAIsTheLabsDuration(t *testing.T) {
	for _, args := range [][]string{nil, {"--config", "../../examples/prox-ops/drover.yaml"}} {
		for _, to := range []string{"v1.12.0", "v1.11.4"} {
			p := drover(t, append([]string{"plan", "--lab", "--to-talos", to, "--output", "json"}, args...)...)
			var plan struct {
				ETASeconds float64 `json:"etaSeconds"`
			}
			if err := json.Unmarshal([]byte(p.stdout), &plan); err != nil {
				t.Fatal(err)
			}
			r := drover(t, append([]string{"upgrade", "--lab", "--to-talos", to, "--yes", "--output", "json"}, args...)...)
			rep := decodeReport(t, r)
			if r.code != ExitOK {
				t.Fatalf("%v %s: exit %d", args, to, r.code)
			}
			eta, took := plan.ETASeconds, rep.SimulatedDurationSeconds
			if d := (eta - took) / took; d > 0.05 || d < -0.05 {
				t.Errorf("%v %s: ETA %s, the lab took %s (%.1f%%)", args, to, time.Duration(eta)*time.Second, time.Duration(took)*time.Second, 100*d)
			}
			if took > (2 * time.Hour).Seconds() {
				t.Errorf("%v %s: the run took %s, over NFR1's two hours", args, to, time.Duration(took)*time.Second)
			}
		}
	}
}
