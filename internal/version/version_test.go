package version

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in       string
		allowPre bool
		want     string
		wantErr  string
	}{
		{in: "v1.11.3", want: "v1.11.3"},
		{in: "1.11.3", want: "v1.11.3"},
		{in: " v1.34.1 ", want: "v1.34.1"},
		{in: "v2.0.0", want: "v2.0.0"},
		{in: "v1.12.0-beta.1", wantErr: "pre-release"},
		{in: "v1.12.0-beta.1", allowPre: true, want: "v1.12.0-beta.1"},
		{in: "v1.12", wantErr: "MAJOR.MINOR.PATCH"},
		{in: "v1.x.0", wantErr: "not a version number"},
		{in: "v01.1.0", wantErr: "not a version number"},
		{in: "", wantErr: "empty"},
		{in: "v1.2.3+build", wantErr: "build metadata"},
		{in: "v1.2.3-", allowPre: true, wantErr: "empty pre-release"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			v, err := Parse(tc.in, tc.allowPre)
			if tc.wantErr != "" {
				var pe *ParseError
				if !errors.As(err, &pe) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want a ParseError with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || v.String() != tc.want {
				t.Fatalf("Parse(%q) = %s, %v; want %s", tc.in, v, err, tc.want)
			}
		})
	}
}

func TestCompareAndDelta(t *testing.T) {
	tests := []struct {
		from, to string
		want     Delta
	}{
		{"v1.11.3", "v1.11.3", DeltaNone},
		{"v1.11.3", "v1.11.4", DeltaPatch},
		{"v1.11.3", "v1.12.0", DeltaMinor},
		{"v1.11.3", "v1.13.1", DeltaMinor},
		{"v1.11.3", "v2.0.0", DeltaMajor},
		{"v1.12.0", "v1.11.9", DeltaDowngrade},
		{"v1.12.0-rc.1", "v1.12.0", DeltaPatch},
		{"v1.12.0", "v1.12.0-rc.1", DeltaDowngrade},
		{"v1.9.0", "v1.10.0", DeltaMinor},
	}
	for _, tc := range tests {
		if got := DeltaOf(MustParse(tc.from), MustParse(tc.to)); got != tc.want {
			t.Errorf("DeltaOf(%s, %s) = %s, want %s", tc.from, tc.to, got, tc.want)
		}
	}
}

func TestDecide(t *testing.T) {
	p := func(talos, kube string) Pair {
		out := Pair{Talos: MustParse(talos)}
		if kube != "" {
			out.Kubernetes = MustParse(kube)
		}
		return out
	}
	tests := []struct {
		name         string
		from, to     Pair
		approvals    []string
		wantStrategy Strategy
		wantLabel    string
		wantApproval bool
		wantInWhy    string
	}{
		{"talos patch is pets", p("v1.11.3", "v1.34.1"), p("v1.11.4", "v1.34.1"), nil, Pets, "upgrade-pets", false, "patch release"},
		{"talos minor is cattle", p("v1.11.3", "v1.34.1"), p("v1.12.0", "v1.34.1"), nil, Cattle, "upgrade-cattle", false, "minor release"},
		{"talos major is cattle with approval", p("v1.11.3", ""), p("v2.0.0", ""), nil, Cattle, "upgrade-cattle", true, "major release"},
		{"kubernetes minor outweighs talos patch", p("v1.11.3", "v1.34.1"), p("v1.11.4", "v1.35.0"), nil, Cattle, "upgrade-cattle", false, "Kubernetes v1.34.1 -> v1.35.0"},
		{"kubernetes patch alone is pets", p("v1.11.3", "v1.34.1"), p("v1.11.3", "v1.34.2"), nil, Pets, "upgrade-pets", false, "Kubernetes"},
		{"approval list forces approval", p("v1.11.3", "v1.34.1"), p("v1.11.4", "v1.34.1"), []string{"v1.11.4"}, Pets, "upgrade-pets", true, "approval list"},
		{"approval list for another version does nothing", p("v1.11.3", "v1.34.1"), p("v1.11.4", "v1.34.1"), []string{"v1.12.0"}, Pets, "upgrade-pets", false, "patch"},
		{"nothing changes", p("v1.11.3", "v1.34.1"), p("v1.11.3", "v1.34.1"), nil, NoChange, "", false, "Nothing to do"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var list []Version
			for _, a := range tc.approvals {
				list = append(list, MustParse(a))
			}
			d, err := Decide(tc.from, tc.to, list)
			if err != nil {
				t.Fatal(err)
			}
			if d.Strategy != tc.wantStrategy || d.Label != tc.wantLabel || d.ApprovalRequired != tc.wantApproval {
				t.Fatalf("got %+v", d)
			}
			if !strings.Contains(d.Rationale, tc.wantInWhy) {
				t.Errorf("rationale %q lacks %q", d.Rationale, tc.wantInWhy)
			}
			if strings.Count(strings.TrimSuffix(d.Rationale, "."), ". ") > 0 || !strings.HasSuffix(d.Rationale, ".") {
				t.Errorf("rationale is not one sentence: %q", d.Rationale)
			}
		})
	}
}

func TestDecideRefusesDowngrade(t *testing.T) {
	_, err := Decide(Pair{Talos: MustParse("v1.12.0")}, Pair{Talos: MustParse("v1.11.9")}, nil)
	var de *DowngradeError
	if !errors.As(err, &de) {
		t.Fatalf("err = %v, want DowngradeError", err)
	}
}

const variablesTF = `variable "talos_version" {
  description = "Talos version of the node templates"
  type        = string
  default     = "v1.11.3"
}

variable "kubernetes_version" {
  type    = string
  default = "1.34.1"
}

variable "unrelated" {
  default = 3
}
`

const tfvars = `talos_version      = "v1.12.0"
kubernetes_version = "v1.34.1"
proxmox_endpoint   = "https://10.20.0.1:8006"
`

func TestReadVariables(t *testing.T) {
	tests := []struct {
		name, src string
		want      map[string]string
	}{
		{"variable blocks", variablesTF, map[string]string{"talos_version": "v1.11.3", "kubernetes_version": "1.34.1"}},
		{"tfvars assignments", tfvars, map[string]string{"talos_version": "v1.12.0", "kubernetes_version": "v1.34.1"}},
		{"missing variable is absent", `variable "talos_version" { default = "v1.11.3" }`, map[string]string{"talos_version": "v1.11.3"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadVariables("variables.tf", []byte(tc.src), "talos_version", "kubernetes_version")
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

func TestReadVariablesErrors(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"syntax error", `variable "talos_version" {`, "parse variables.tf"},
		{"non-literal", "talos_version = var.other\n", "literal string"},
		{"not a string", "talos_version = 3\n", "must be a string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadVariables("variables.tf", []byte(tc.src), "talos_version")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestChangeFromFiles(t *testing.T) {
	dir := t.TempDir()
	before := filepath.Join(dir, "before.tf")
	after := filepath.Join(dir, "after.tf")
	must(t, os.WriteFile(before, []byte(variablesTF), 0o600))
	must(t, os.WriteFile(after, []byte(strings.Replace(variablesTF, "v1.11.3", "v1.12.0", 1)), 0o600))
	c, err := ChangeFromSources(NewFileSource(before, os.ReadFile), NewFileSource(after, os.ReadFile), VariableNames{"talos_version", "kubernetes_version"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if c.From.String() != "Talos v1.11.3, Kubernetes v1.34.1" || c.To.String() != "Talos v1.12.0, Kubernetes v1.34.1" {
		t.Fatalf("change = %s -> %s", c.From, c.To)
	}
}

func TestChangeFromGitRange(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		if os.Getenv("DROVER_TESTENV_REQUIRED") != "" {
			t.Fatal("git is not installed, and make test requires every tier")
		}
		t.Skip("git is not installed: the git revision range source cannot be tested")
	}
	dir := t.TempDir()
	git := func(args ...string) {
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "commit.gpgsign=false"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git("init", "-q")
	must(t, os.MkdirAll(filepath.Join(dir, "terraform"), 0o755))
	path := filepath.Join(dir, "terraform", "variables.tf")
	must(t, os.WriteFile(path, []byte(variablesTF), 0o600))
	git("add", ".")
	git("commit", "-qm", "base")
	must(t, os.WriteFile(path, []byte(strings.Replace(variablesTF, `"1.34.1"`, `"1.35.0"`, 1)), 0o600))
	git("commit", "-qam", "chore(deps): update kubernetes to v1.35.0")

	base, head, err := ParseRange("HEAD~1..HEAD")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ChangeFromSources(GitSource{Ctx: t.Context(), Dir: dir, Rev: base, Path: "terraform/variables.tf"},
		GitSource{Ctx: t.Context(), Dir: dir, Rev: head, Path: "terraform/variables.tf"}, VariableNames{"talos_version", "kubernetes_version"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if c.From.Kubernetes.String() != "v1.34.1" || c.To.Kubernetes.String() != "v1.35.0" || c.To.Talos.String() != "v1.11.3" {
		t.Fatalf("change = %s -> %s", c.From, c.To)
	}
	_, err = ChangeFromSources(GitSource{Ctx: t.Context(), Dir: dir, Rev: "nope", Path: "terraform/variables.tf"}, GitSource{Ctx: t.Context(), Dir: dir, Rev: head, Path: "x"}, VariableNames{"talos_version", "kubernetes_version"}, false)
	if err == nil || !strings.Contains(err.Error(), "git show nope:terraform/variables.tf") {
		t.Fatalf("err = %v", err)
	}
}

func TestParseRange(t *testing.T) {
	for _, good := range []string{"HEAD~1..HEAD", "origin/main~1..origin/main", "v1.2.3..v1.3.0", "0123abc..HEAD^2", "release-1.x..feature/a+b"} {
		if _, _, err := ParseRange(good); err != nil {
			t.Errorf("ParseRange(%q): %v", good, err)
		}
	}
	hostile := []string{
		"main", "..main", "main..", "a...b",
		"--output=pwned..HEAD", "HEAD..--output=pwned", "-p..HEAD",
		"HEAD~1..HEAD\nrun: curl evil", "HEAD~1..HEAD\"", "HEAD..'x'",
		"${{ github.event.pull_request.title }}..HEAD", "$(touch pwned)..HEAD", "`id`..HEAD",
		"HEAD..HEAD:other/file", "HEAD@{1}..HEAD", "a b..HEAD", "HEAD..refs/*",
	}
	for _, bad := range hostile {
		if _, _, err := ParseRange(bad); err == nil {
			t.Errorf("ParseRange(%q) accepted", bad)
		}
	}
}

// TestGitSourceNeverReadsAnOption hands GitSource a revision that is an
// option: it is refused before git runs and no file is written. (Behind
// the check, git show gets --end-of-options as a second guard.)
func TestGitSourceNeverReadsAnOption(t *testing.T) {
	dir := t.TempDir()
	out, err := exec.Command("git", "-C", dir, "init", "-q").CombinedOutput()
	if err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	_, err = GitSource{Ctx: t.Context(), Dir: dir, Rev: "--output=pwned", Path: "x"}.Read()
	if err == nil || !strings.Contains(err.Error(), "option") {
		t.Fatalf("err = %v", err)
	}
	if _, statErr := os.Stat(filepath.Join(dir, "pwned")); !os.IsNotExist(statErr) {
		t.Fatalf("git wrote a file: %v", statErr)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
