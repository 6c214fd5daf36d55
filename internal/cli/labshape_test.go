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
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--lab-nodes", "10"}, "--lab-nodes generates a lab inventory: it needs --lab"},
		{[]string{"--lab", "--lab-hosts", "3"}, "they need --lab-nodes"},
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
