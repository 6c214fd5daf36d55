package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prox-ops/drover/internal/lab"
)

// TestClaimsTheNodesContradictTouchNothing: the lab's nodes run v1.11.3;
// a run that claims otherwise stops before any change (exit 4), naming
// what the nodes run, and its lab state shows every node as it was.
func TestClaimsTheNodesContradictTouchNothing(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"an in-place upgrade across two minors", []string{"--from-talos", "v1.13.0", "--to-talos", "v1.13.1"}, "run Talos v1.11.3"},
		{"a claim that the cluster is at the target", []string{"--from-talos", "v1.12.0", "--to-talos", "v1.12.0"}, "run Talos v1.11.3"},
		{"a wrong kubelet", []string{"--from-kubernetes", "v1.33.2", "--to-talos", "v1.12.0"}, "run kubelet v1.34.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			state, jpath := filepath.Join(dir, "s.json"), filepath.Join(dir, "j.jsonl")
			args := append([]string{"upgrade", "--lab", "--yes", "--lab-state", state, "--journal", jpath}, tc.args...)
			r := drover(t, args...)
			if r.code != ExitBlocked || !strings.Contains(r.stderr, tc.want) || !strings.Contains(r.stderr, "k8s-ctrl-1") {
				t.Fatalf("exit %d, want 4 naming the nodes and what they run:\n%s", r.code, r.stderr)
			}
			if _, err := os.Stat(jpath); err == nil {
				t.Error("a journal was written: the run got past its checks")
			}
			if st, _ := lab.LoadState(state); st != nil {
				t.Error("the lab state was saved: something ran")
			}
		})
	}
	// And without a claim the nodes decide: a patch of v1.11.3 is pets.
	r := drover(t, "plan", "--lab", "--to-talos", "v1.11.4", "--output", "json")
	var p planOutput
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil || p.From != "v1.11.3" || p.Strategy != "pets" {
		t.Fatalf("plan without a claim: %+v %v\n%s", p, err, r.stderr)
	}
	if src := p.Batches[0].Nodes[0].VersionSource; src != "Talos API" {
		t.Fatalf("the plan does not say where the version came from: %q", src)
	}
}

// TestAHandEditedJournalIsRefused: a journal whose run header was edited
// by hand (to claim another version) is refused on --resume (exit 2),
// naming the line; so is one with a line cut out.
func TestAHandEditedJournalIsRefused(t *testing.T) {
	dir := t.TempDir()
	jpath := filepath.Join(dir, "j.jsonl")
	args := []string{"upgrade", "--lab", "--journal", jpath, "--to-talos", "v1.12.0", "--yes", "--lab-fault", "k8s-work-1=health-fail"}
	if r := drover(t, args...); r.code != ExitHalted {
		t.Fatalf("first run: exit %d\n%s", r.code, r.stderr)
	}
	data, err := os.ReadFile(jpath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	edits := map[string]string{
		"the header's versions": strings.Replace(string(data), `"from":"Talos v1.11.3`, `"from":"Talos v1.12.0`, 1),
		"a line cut out":        strings.Join(append(append([]string(nil), lines[:5]...), lines[6:]...), "\n") + "\n",
		"a step rewritten":      strings.Replace(string(data), `"step":"rollback","status":"started"`, `"step":"soak","status":"started"`, 1),
	}
	for name, edited := range edits {
		t.Run(name, func(t *testing.T) {
			if edited == string(data) {
				t.Fatal("the edit changed nothing")
			}
			write(t, jpath, edited)
			r := drover(t, append(args, "--resume")...)
			if r.code != ExitUsage || !strings.Contains(r.stderr, "journal line") || !strings.Contains(r.stderr, "edited, cut or spliced") {
				t.Fatalf("exit %d, want 2 naming the line:\n%s", r.code, r.stderr)
			}
		})
	}
}

// TestAConfigMapJournalWithoutANamespace: configmap:NAME is a ConfigMap in
// the lock's namespace, never a local file of that name.
func TestAConfigMapJournalWithoutANamespace(t *testing.T) {
	t.Chdir(t.TempDir())
	if r := drover(t, "upgrade", "--lab", "--to-talos", "v1.11.4", "--yes", "--journal", "configmap:upgrade-journal"); r.code != ExitOK {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat("configmap:upgrade-journal"); err == nil {
		t.Fatal("a local file named configmap:upgrade-journal was written")
	}
}
