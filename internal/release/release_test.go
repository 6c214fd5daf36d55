package release

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/rhysd/actionlint"
	"golang.org/x/mod/modfile"

	"github.com/prox-ops/drover/internal/testenv"
)

const root = "../.."

// TestWorkflowsPassActionlint lints this repository's own workflows.
func TestWorkflowsPassActionlint(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(root, ".github/workflows/*.yml"))
	if err != nil || len(files) < 2 {
		t.Fatalf("workflows %v: %v", files, err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		l, err := actionlint.NewLinter(io.Discard, &actionlint.LinterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		errs, err := l.Lint(f, data, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range errs {
			t.Errorf("%s:%d:%d: %s [%s]", f, e.Line, e.Column, e.Message, e.Kind)
		}
		for i, line := range strings.Split(string(data), "\n") {
			if _, ref, ok := strings.Cut(line, "uses: "); ok && !strings.HasPrefix(ref, "./") {
				at := strings.Index(ref, "@")
				if at < 0 || len(strings.Fields(ref[at+1:])[0]) != 40 {
					t.Errorf("%s:%d: %s is not pinned by commit SHA", f, i+1, strings.TrimSpace(ref))
				}
			}
		}
	}
}

// TestGoreleaserCheck validates .goreleaser.yaml with goreleaser itself.
func TestGoreleaserCheck(t *testing.T) {
	bin := testenv.GoreleaserTool.Binary(t)
	cmd := exec.CommandContext(t.Context(), bin, "check", "--config", ".goreleaser.yaml")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("goreleaser check: %v\n%s", err, out)
	}
}

// TestSnapshotRelease runs the whole release but the publishing, on a
// copy of this working tree: both binaries, their archives, an SBOM each
// and checksums.txt, named as the kit's drover-tools action downloads them.
func TestSnapshotRelease(t *testing.T) {
	gr := testenv.GoreleaserTool.Binary(t)
	cdx := testenv.CycloneDXTool.Binary(t)
	src := copyWorkingTree(t)
	cmd := exec.CommandContext(t.Context(), gr, "release", "--snapshot", "--clean", "--skip=publish")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(cdx)+string(os.PathListSeparator)+os.Getenv("PATH"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("goreleaser release --snapshot: %v\n%s", err, out)
	}
	dist := filepath.Join(src, "dist")
	var meta struct {
		Version string `json:"version"`
	}
	readJSON(t, filepath.Join(dist, "metadata.json"), &meta)
	if !strings.HasSuffix(meta.Version, "-snapshot") {
		t.Fatalf("snapshot version %q", meta.Version)
	}

	// checksums.txt lists exactly the archives and SBOMs, and they match.
	sums := readSums(t, filepath.Join(dist, "checksums.txt"))
	var want []string
	for _, arch := range []string{"amd64", "arm64"} {
		// The names drover-tools builds: drover_${DROVER_VERSION#v}_linux_${arch}.tar.gz
		want = append(want, fmt.Sprintf("drover_%s_linux_%s.tar.gz", meta.Version, arch), fmt.Sprintf("drover_%s_linux_%s.cdx.json", meta.Version, arch))
	}
	sort.Strings(want)
	var got []string
	for name, sum := range sums {
		got = append(got, name)
		if h := sha256File(t, filepath.Join(dist, name)); h != sum {
			t.Errorf("%s: checksum %s, file %s", name, sum, h)
		}
	}
	sort.Strings(got)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("checksums.txt lists %v, want %v", got, want)
	}
	action, err := os.ReadFile(filepath.Join(root, "internal/kit/templates/.github/actions/drover-tools/action.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, contract := range []string{`d="drover_${DROVER_VERSION#v}_linux_${arch}.tar.gz"`, "/checksums.txt", `tar -xzf "${d}" -C "${bin}" drover`} {
		if !strings.Contains(string(action), contract) {
			t.Errorf("drover-tools no longer downloads %s", contract)
		}
	}

	// Each archive holds the binary at its root; the host's one runs and
	// reports the release's version.
	for _, arch := range []string{"amd64", "arm64"} {
		archive := filepath.Join(dist, fmt.Sprintf("drover_%s_linux_%s.tar.gz", meta.Version, arch))
		bin := extract(t, archive, "drover")
		if arch == runtime.GOARCH && runtime.GOOS == "linux" {
			out, err := exec.CommandContext(t.Context(), bin, "version").CombinedOutput()
			if err != nil || !strings.HasPrefix(string(out), "drover "+meta.Version+" (commit ") {
				t.Errorf("drover version: %v %q", err, out)
			}
		}
	}

	// Each SBOM is CycloneDX and names drover's modules at go.mod's versions.
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	mf, err := modfile.Parse("go.mod", gomod, nil)
	if err != nil {
		t.Fatal(err)
	}
	required := map[string]string{}
	for _, r := range mf.Require {
		required[r.Mod.Path] = r.Mod.Version
	}
	for _, arch := range []string{"amd64", "arm64"} {
		var bom struct {
			BOMFormat string `json:"bomFormat"`
			Metadata  struct {
				Component struct{ Name, Version string } `json:"component"`
			} `json:"metadata"`
			Components []struct{ Name, Version string } `json:"components"`
		}
		readJSON(t, filepath.Join(dist, fmt.Sprintf("drover_%s_linux_%s.cdx.json", meta.Version, arch)), &bom)
		if bom.BOMFormat != "CycloneDX" || bom.Metadata.Component.Name != mf.Module.Mod.Path {
			t.Errorf("%s SBOM: format %q, component %q", arch, bom.BOMFormat, bom.Metadata.Component.Name)
		}
		found := 0
		for _, c := range bom.Components {
			if v, ok := required[c.Name]; ok {
				found++
				if v != c.Version {
					t.Errorf("%s SBOM: %s %s, go.mod requires %s", arch, c.Name, c.Version, v)
				}
			}
		}
		if found < 10 || !containsComponent(bom.Components, "k8s.io/client-go") {
			t.Errorf("%s SBOM names %d of go.mod's modules", arch, found)
		}
	}
}

func containsComponent(cs []struct{ Name, Version string }, name string) bool {
	for _, c := range cs {
		if c.Name == name {
			return true
		}
	}
	return false
}

// copyWorkingTree copies the tracked and untracked (not ignored) files into
// a new git repository with one commit, as goreleaser needs.
func copyWorkingTree(t *testing.T) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "git", "-C", root, "ls-files", "-co", "--exclude-standard", "-z").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	dst := t.TempDir()
	for _, f := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		info, err := os.Lstat(filepath.Join(root, f))
		if err != nil || !info.Mode().IsRegular() {
			continue // deleted in the working tree, or not a file
		}
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, f), data, info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"init", "-q"}, {"add", "-A"}, {"-c", "user.name=drover-test", "-c", "user.email=test@drover.invalid", "commit", "-qm", "snapshot"}} {
		cmd := exec.CommandContext(t.Context(), "git", args...)
		cmd.Dir = dst
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	return dst
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func readSums(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sums := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok || len(sum) != 64 {
			t.Fatalf("%s: line %q", path, sc.Text())
		}
		sums[name] = sum
	}
	return sums
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// extract writes the archive's member name (at its root) to a temporary
// file and checks it is an executable.
func extract(t *testing.T, archive, name string) string {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			t.Fatalf("%s has no %s at its root", archive, name)
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name != name {
			continue
		}
		if h.FileInfo().Mode().Perm()&0o111 == 0 {
			t.Errorf("%s: %s is not executable (%v)", archive, name, h.FileInfo().Mode())
		}
		out := filepath.Join(t.TempDir(), name)
		w, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY, 0o755)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(w, tr); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return out
	}
}
