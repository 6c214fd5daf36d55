package kit

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rhysd/actionlint"

	"github.com/prox-ops/drover/internal/config"
)

// exampleValues is what deploy/ is rendered with.
func exampleValues(t *testing.T) Values {
	t.Helper()
	cfg, err := config.Load("../../examples/prox-ops/drover.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return Values{Cluster: cfg.Cluster.Name, RepoURL: "https://github.com/prox-ops/infrastructure", ScaleSet: "cattle-upgrade",
		Namespace: "github-actions", VariablesFile: cfg.Versions.VariablesFile, DroverVersion: "latest", ApprovalEnvironment: "cluster-upgrade-approval"}
}

// TestWorkflowsPassActionlint lints every rendered workflow with actionlint
// (as a library, no rule ignored).
func TestWorkflowsPassActionlint(t *testing.T) {
	files, err := Render(exampleValues(t))
	if err != nil {
		t.Fatal(err)
	}
	// The kit's own actionlint.yaml declares the runner scale set's label.
	cfgFile := filepath.Join(t.TempDir(), "actionlint.yaml")
	if err := os.WriteFile(cfgFile, files[".github/actionlint.yaml"], 0o600); err != nil {
		t.Fatal(err)
	}
	linted := 0
	for _, p := range Paths(files) {
		if !strings.HasPrefix(p, ".github/workflows/") {
			continue
		}
		l, err := actionlint.NewLinter(io.Discard, &actionlint.LinterOptions{ConfigFile: cfgFile})
		if err != nil {
			t.Fatal(err)
		}
		errs, err := l.Lint("<stdin>", files[p], nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range errs {
			t.Errorf("%s:%d:%d: %s [%s]", p, e.Line, e.Column, e.Message, e.Kind)
		}
		linted++
	}
	if linted != 4 {
		t.Fatalf("linted %d workflows, want 4", linted)
	}
}

func TestWorkflowsCarryTheRules(t *testing.T) {
	files, err := Render(exampleValues(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"upgrade-cattle", "upgrade-pets"} {
		w := string(files[".github/workflows/"+name+".yml"])
		for _, want := range []string{
			"types: [closed]", "terraform/variables.tf", "github.event.pull_request.merged == true",
			"contains(github.event.pull_request.labels.*.name, '" + name + "')",
			"runs-on: cattle-upgrade", "cancel-in-progress: false", "environment: cluster-upgrade-approval",
			"--journal configmap:github-actions/drover-journal", "upload-artifact", "timeout-minutes:", "workflow_dispatch:",
			"TALOSCONFIG: ${{ secrets.TALOSCONFIG }}",
		} {
			if !strings.Contains(w, want) {
				t.Errorf("%s lacks %q", name, want)
			}
		}
		if strings.Contains(w, "matrix:") {
			t.Errorf("%s uses a matrix: one drover upgrade runs the whole cluster", name)
		}
	}
	if h := string(files[".github/workflows/health-check.yml"]); !strings.Contains(h, "workflow_call:") || !strings.Contains(h, "health_status") || !strings.Contains(h, "node_name") {
		t.Error("health-check is not the reusable workflow")
	}
}

// TestDeployIsTheExampleRendering: deploy/ is byte for byte what drover
// init renders for the example, with no stray file, so the two never drift.
func TestDeployIsTheExampleRendering(t *testing.T) {
	files, err := Render(exampleValues(t))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	err = filepath.WalkDir("../../deploy", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel("../../deploy", path)
		rel = filepath.ToSlash(rel)
		seen[rel] = true
		want, ok := files[rel]
		if !ok {
			t.Errorf("deploy/%s is not part of the kit", rel)
			return nil
		}
		got, _ := os.ReadFile(path)
		if string(got) != string(want) {
			t.Errorf("deploy/%s differs from the rendering: run drover init --config examples/prox-ops/drover.yaml --repo-url https://github.com/prox-ops/infrastructure --output deploy --force", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for p := range files {
		if !seen[p] {
			t.Errorf("deploy/%s is missing", p)
		}
	}
}

func TestWriteRefusesChangedFiles(t *testing.T) {
	dir := t.TempDir()
	files, _ := Render(exampleValues(t))
	if _, err := Write(dir, files, false); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, ".github/workflows/pr-plan.yml")
	if err := os.WriteFile(target, []byte("# mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Write(dir, files, false)
	var ce *ChangedError
	if !errors.As(err, &ce) || len(ce.Paths) != 1 {
		t.Fatalf("err = %v", err)
	}
	if got, _ := os.ReadFile(target); string(got) != "# mine\n" {
		t.Fatal("a changed file was overwritten without --force")
	}
	w, err := Write(dir, files, true)
	if err != nil {
		t.Fatal(err)
	}
	actions := map[string]string{}
	for _, x := range w {
		actions[x.Path] = x.Action
	}
	if actions[".github/workflows/pr-plan.yml"] != "updated" || actions[".github/workflows/health-check.yml"] != "unchanged" {
		t.Fatalf("%v", actions)
	}
}

// TestRenovateRegexesExtractTheVersions runs the customManagers' regexes
// (RE2, as Go runs them) on variables files in both forms Renovate bumps.
func TestRenovateRegexesExtractTheVersions(t *testing.T) {
	files, err := Render(exampleValues(t))
	if err != nil {
		t.Fatal(err)
	}
	text := string(files[".github/renovate.json5"])
	for _, want := range []string{`customType: "regex"`, "managerFilePatterns", "separateMinorPatch: true", "automerge: false", `groupName: "Talos Linux"`, `groupName: "Kubernetes"`, `"upgrade-pets"`, `"upgrade-cattle"`} {
		if !strings.Contains(text, want) {
			t.Errorf("renovate.json5 lacks %s", want)
		}
	}
	if !strings.Contains(text, `managerFilePatterns: ["/(^|/)terraform/variables\\.tf$/"]`) {
		t.Errorf("the file pattern does not quote the path")
	}
	if strings.Contains(text, "fileMatch") {
		t.Error("renovate.json5 uses the deprecated fileMatch")
	}
	res := renovatePatterns(t, text)
	if len(res) != 4 {
		t.Fatalf("%d matchStrings, want 4", len(res))
	}
	fixtures := []struct {
		name, src string
		want      []string
	}{
		{"variable blocks", `variable "talos_version" {
  description = "Talos"
  type        = string
  default     = "v1.11.3"
}
variable "kubernetes_version" {
  type    = string
  default = "1.12.0"
}
`, []string{"v1.11.3", "1.12.0"}},
		{"tfvars assignments", "talos_version = \"2.0.0\"\nkubernetes_version = \"v1.34.1\"\n", []string{"2.0.0", "v1.34.1"}},
		{"pre-releases are ignored", "talos_version = \"v1.12.0-beta.1\"\nvariable \"kubernetes_version\" {\n  default = \"1.35.0-rc.0\"\n}\n", nil},
	}
	for _, f := range fixtures {
		var got []string
		for _, re := range res {
			for _, m := range re.FindAllStringSubmatch(f.src, -1) {
				got = append(got, m[re.SubexpIndex("currentValue")])
			}
		}
		if strings.Join(got, ",") != strings.Join(f.want, ",") {
			t.Errorf("%s: extracted %v, want %v", f.name, got, f.want)
		}
	}
}

// renovatePatterns pulls the matchStrings out of the JSON5 text and
// compiles them as RE2.
func renovatePatterns(t *testing.T, text string) []*regexp.Regexp {
	t.Helper()
	var out []*regexp.Regexp
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, `"`) || !strings.Contains(line, "currentValue") {
			continue
		}
		var s string
		if err := json.Unmarshal([]byte(strings.TrimSuffix(line, ",")), &s); err != nil {
			t.Fatalf("matchString %s: %v", line, err)
		}
		re, err := regexp.Compile(s)
		if err != nil {
			t.Fatalf("matchString %q is not RE2: %v", s, err)
		}
		out = append(out, re)
	}
	return out
}

// TestRenovateConfigValidator runs renovate-config-validator --strict (the
// pinned npm package renovate, which make test installs) on the rendered
// configuration.
func TestRenovateConfigValidator(t *testing.T) {
	bin := os.Getenv("DROVER_RENOVATE_VALIDATOR")
	if bin == "" {
		if os.Getenv("DROVER_TESTENV_REQUIRED") != "" {
			t.Fatal("DROVER_RENOVATE_VALIDATOR is not set: make test installs it with hack/renovate-validator.sh")
		}
		t.Skip("renovate-config-validator not installed (hack/renovate-validator.sh; make test does it)")
	}
	files, err := Render(exampleValues(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, ".github"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".github/renovate.json5"), files[".github/renovate.json5"], 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--strict", ".github/renovate.json5")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "validated successfully") {
		t.Fatalf("renovate-config-validator: %v\n%s", err, out)
	}
}
