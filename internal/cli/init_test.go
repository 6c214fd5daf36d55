package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const exampleConfig = "../../examples/prox-ops/drover.yaml"

func initArgs(out string, extra ...string) []string {
	return append([]string{"init", "--config", exampleConfig, "--repo-url", "https://github.com/prox-ops/infrastructure",
		"--output", out, "--drover-version", "v0.1.0"}, extra...)
}

// TestInitWritesTheKitAndKeepsEdits: a first init creates the kit, a
// second finds it unchanged, an edited file is refused without --force.
func TestInitWritesTheKitAndKeepsEdits(t *testing.T) {
	out := t.TempDir()
	if r := drover(t, initArgs(out)...); r.code != 0 || !strings.Contains(r.stdout, "created   .github/workflows/drover-upgrade.yml") {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := drover(t, initArgs(out)...); r.code != 0 || strings.Contains(r.stdout, "created") {
		t.Fatalf("a second init: exit %d\n%s", r.code, r.stdout)
	}
	wf := filepath.Join(out, ".github", "workflows", "drover-upgrade.yml")
	must(t, os.WriteFile(wf, []byte("# mine\n"), 0o644))
	if r := drover(t, initArgs(out)...); r.code != 2 || !strings.Contains(r.stderr, "pass --force") {
		t.Fatalf("an edited file: exit %d\n%s", r.code, r.stderr)
	}
	if b, _ := os.ReadFile(wf); string(b) != "# mine\n" {
		t.Errorf("the edit was overwritten")
	}
}

// TestInitNeverWritesOutsideItsOutput: a symbolic link inside --output
// that leads elsewhere (or nowhere) is refused with exit 2 and nothing is
// written, --force or not.
func TestInitNeverWritesOutsideItsOutput(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, out, elsewhere string)
		force bool
	}{
		{"a dangling link where a workflow goes", func(t *testing.T, out, elsewhere string) {
			must(t, os.MkdirAll(filepath.Join(out, ".github", "workflows"), 0o755))
			must(t, os.Symlink(filepath.Join(elsewhere, "created-here.yml"), filepath.Join(out, ".github", "workflows", "drover-upgrade.yml")))
		}, false},
		{"a directory link leading out", func(t *testing.T, out, elsewhere string) {
			must(t, os.Symlink(elsewhere, filepath.Join(out, ".github")))
		}, false},
		{"--force over a link to a file elsewhere", func(t *testing.T, out, elsewhere string) {
			must(t, os.WriteFile(filepath.Join(elsewhere, "precious"), []byte("keep me\n"), 0o644))
			must(t, os.MkdirAll(filepath.Join(out, ".github", "workflows"), 0o755))
			must(t, os.Symlink(filepath.Join(elsewhere, "precious"), filepath.Join(out, ".github", "workflows", "drover-upgrade.yml")))
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, elsewhere := t.TempDir(), t.TempDir()
			tc.setup(t, out, elsewhere)
			before := tree(t, out)
			args := initArgs(out)
			if tc.force {
				args = append(args, "--force")
			}
			r := drover(t, args...)
			if r.code != 2 || !strings.Contains(r.stderr, "refusing to write") {
				t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			if got := tree(t, out); got != before {
				t.Errorf("the output changed:\n%s\nwas\n%s", got, before)
			}
			ents, _ := os.ReadDir(elsewhere)
			for _, e := range ents {
				if b, _ := os.ReadFile(filepath.Join(elsewhere, e.Name())); e.Name() != "precious" || string(b) != "keep me\n" {
					t.Errorf("init wrote %s outside its output", e.Name())
				}
			}
		})
	}
}

// TestInitIntoAnUnwritableDirectory: exit 2 before anything is written.
func TestInitIntoAnUnwritableDirectory(t *testing.T) {
	notADir := filepath.Join(t.TempDir(), "file")
	must(t, os.WriteFile(notADir, nil, 0o644))
	if r := drover(t, initArgs(notADir)...); r.code != 2 || !strings.Contains(r.stderr, "cannot write into") {
		t.Fatalf("--output is a file: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if os.Geteuid() == 0 {
		t.Skip("a read-only directory: root writes into any directory, so this case needs a non-root user")
	}
	out := t.TempDir()
	must(t, os.Chmod(out, 0o500))
	t.Cleanup(func() { _ = os.Chmod(out, 0o700) })
	if r := drover(t, initArgs(out)...); r.code != 2 || !strings.Contains(r.stderr, "cannot write into") {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// tree lists the files and links under dir.
func tree(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	must(t, filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		b.WriteString(rel + " " + fi.Mode().String() + "\n")
		return nil
	}))
	return b.String()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
