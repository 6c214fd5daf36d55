package cli

import (
	"strings"
	"testing"
)

// TestAGeneratedLab: --lab-nodes generates the inventory a plan shows;
// shapes that make no sense are refused with the flag named (exit 2).
func TestAGeneratedLab(t *testing.T) {
	r := drover(t, "plan", "--lab", "--lab-nodes", "40", "--lab-control-planes", "3", "--lab-hosts", "8", "--to-talos", "v1.12.0")
	if r.code != ExitOK || !strings.Contains(r.stdout, "cp-3") || !strings.Contains(r.stdout, "worker-37") || strings.Contains(r.stdout, "worker-38") {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// Four workers at once: 37 workers over 10 hosts go in 10 batches
	// after the 3 control-plane ones.
	r = drover(t, "plan", "--lab", "--lab-nodes", "40", "--lab-hosts", "10", "--lab-parallel-workers", "4", "--to-talos", "v1.12.0")
	if r.code != ExitOK || !strings.Contains(r.stdout, "40 nodes in 13 batches") {
		t.Fatalf("--lab-parallel-workers 4: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--lab-nodes", "10"}, "--lab-nodes generates a lab inventory: it needs --lab"},
		{[]string{"--lab", "--lab-hosts", "3"}, "they need --lab-nodes"},
		{[]string{"--lab", "--lab-parallel-workers", "4"}, "they need --lab-nodes"},
		{[]string{"--lab", "--lab-nodes", "40", "--lab-parallel-workers", "-1"}, "--lab-parallel-workers -1: want 1 or more"},
		{[]string{"--lab", "--lab-nodes", "0", "--lab-control-planes", "2"}, "they need --lab-nodes"},
		{[]string{"--lab", "--lab-nodes", "-1"}, "--lab-nodes -1: want 1 to 5000"},
		{[]string{"--lab", "--lab-nodes", "4", "--lab-control-planes", "5"}, "want 0 (derived) or up to --lab-nodes"},
		{[]string{"--lab", "--lab-nodes", "4", "--config", "drover.yaml"}, "leave out --config"},
	} {
		r := drover(t, append([]string{"plan", "--to-talos", "v1.12.0"}, tc.args...)...)
		if r.code != ExitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, want 2 and %q\n%s", tc.args, r.code, tc.want, r.stderr)
		}
	}
}

// TestHealthOnAGeneratedLab: drover health takes the same lab shape, so
// a gate can be rehearsed on a large cluster.
func TestHealthOnAGeneratedLab(t *testing.T) {
	r := drover(t, "health", "--lab", "--lab-nodes", "40", "--node", "worker-37")
	if r.code != ExitOK || !strings.Contains(r.stdout, "Node worker-37: 7/7 health checks passed") {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = drover(t, "health", "--lab", "--lab-nodes", "40", "--lab-fault", "worker-3=crashloop", "--node", "worker-3")
	if r.code != ExitHalted || !strings.Contains(r.stdout, "(failed: Pod Health)") {
		t.Fatalf("a crash-looping pod on worker-3: exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = drover(t, "health", "--lab", "--lab-nodes", "40", "--node", "worker-38")
	if r.code != ExitUsage || !strings.Contains(r.stderr, "--node worker-38 is not in the inventory") {
		t.Fatalf("a node outside the generated inventory: exit %d, want 2\n%s", r.code, r.stderr)
	}
}
