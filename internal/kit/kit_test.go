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
	"slices"
	"strings"
	"testing"

	"github.com/rhysd/actionlint"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/configpatcher"
	"gopkg.in/yaml.v3"

	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/testenv"
)

// exampleValues is what deploy/ is rendered with.
func exampleValues(t *testing.T) Values {
	t.Helper()
	cfg, err := config.Load("../../examples/prox-ops/drover.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return Values{Cluster: cfg.Cluster.Name, RepoURL: "https://github.com/prox-ops/infrastructure", ScaleSet: "cattle-upgrade",
		Namespace: "github-actions", VariablesFile: cfg.Versions.VariablesFile, SnapshotDir: cfg.Talos.EtcdSnapshotDir,
		DroverVersion: "v0.1.0", DroverRepo: DefaultDroverRepo, TofuVersion: DefaultTofuVersion, TalosctlVersion: DefaultTalosctlVersion,
		RunnerImage: DefaultRunnerImage, ApprovalEnvironment: "cluster-upgrade-approval", CephHooks: true}
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
	if linted != 7 {
		t.Fatalf("linted %d workflows, want 7", linted)
	}
}

func TestWorkflowsCarryTheRules(t *testing.T) {
	files, err := Render(exampleValues(t))
	if err != nil {
		t.Fatal(err)
	}
	up := string(files[".github/workflows/drover-upgrade.yml"])
	for _, want := range []string{
		"workflow_call:", "runs-on: cattle-upgrade", "environment: cluster-upgrade-approval",
		`--journal "configmap:${NAMESPACE}/drover-journal"`, "upload-artifact@", "drover-journal.jsonl", "etcd-snapshots/",
		"timeout-minutes:", "TALOSCONFIG: ${{ secrets.TALOSCONFIG }}", "PROXMOX_USERNAME: ${{ secrets.PROXMOX_USERNAME }}",
		"PROXMOX_PASSWORD: ${{ secrets.PROXMOX_PASSWORD }}", "uses: ./.github/workflows/health-check.yml", "uses: ./.github/actions/drover-tools",
		`if [ "${got}" != "${WANT}" ]; then`, "if: always()", `trap 'kill -TERM "${pid}" 2>/dev/null' TERM`, `args+=(--canary "${CANARY}")`,
	} {
		if !strings.Contains(up, want) {
			t.Errorf("drover-upgrade lacks %q", want)
		}
	}
	for _, bad := range []string{"matrix:", "go install", "setup-go", "@v4\n", ":latest"} {
		if strings.Contains(up, bad) {
			t.Errorf("drover-upgrade has %q", bad)
		}
	}
	for _, name := range []string{"upgrade-cattle", "upgrade-pets"} {
		w := string(files[".github/workflows/"+name+".yml"])
		strategy := strings.TrimPrefix(name, "upgrade-")
		for _, want := range []string{
			"types: [closed]", "terraform/variables.tf", "github.event.pull_request.merged == true",
			"contains(github.event.pull_request.labels.*.name, '" + name + "')", "cancel-in-progress: false",
			"group: drover-prox-ops-upgrade", "workflow_dispatch:", "uses: ./.github/workflows/drover-upgrade.yml",
			"strategy: " + strategy, "secrets: inherit",
		} {
			if !strings.Contains(w, want) {
				t.Errorf("%s lacks %q", name, want)
			}
		}
	}
	if h := string(files[".github/workflows/health-check.yml"]); !strings.Contains(h, "workflow_call:") || !strings.Contains(h, "workflow_dispatch:") || !strings.Contains(h, "health_status") || !strings.Contains(h, "node_name") {
		t.Error("health-check is not reusable and runnable by hand")
	}
	// Every third-party action is pinned by a commit SHA (Renovate keeps it).
	usesRE := regexp.MustCompile(`uses:\s*([^\s#]+)`)
	for _, p := range Paths(files) {
		for _, m := range usesRE.FindAllStringSubmatch(string(files[p]), -1) {
			ref := m[1]
			if strings.HasPrefix(ref, "./") {
				continue
			}
			if !regexp.MustCompile(`@[0-9a-f]{40}$`).MatchString(ref) {
				t.Errorf("%s: %s is not pinned by a commit SHA", p, ref)
			}
		}
	}
	// The nine secrets of the PRD are each wired somewhere.
	all := ""
	for _, p := range Paths(files) {
		all += string(files[p])
	}
	for _, sec := range []string{"PROXMOX_USERNAME", "PROXMOX_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "TALOSCONFIG", "DISCORD_WEBHOOK_URL", "GH_APP_ID", "GH_APP_INSTALLATION_ID", "GH_APP_PRIVATE_KEY"} {
		if !strings.Contains(all, "${{ secrets."+sec+" }}") {
			t.Errorf("secret %s is wired nowhere", sec)
		}
	}
	tools := string(files[".github/actions/drover-tools/action.yml"])
	for _, want := range []string{`DROVER_VERSION: "v0.1.0"`, `TOFU_VERSION: "1.10.6"`, `TALOSCTL_VERSION: "v1.13.0"`, "sha256sum --check --strict", "checksums.txt", "tofu_${TOFU_VERSION#v}_SHA256SUMS", "sha256sum.txt", "# renovate: datasource=github-releases depName=opentofu/opentofu"} {
		if !strings.Contains(tools, want) {
			t.Errorf("drover-tools lacks %q", want)
		}
	}
}

// TestHostileValuesAreRefused: a value that could add a job, break out of a
// string, inject an expression or reach a shell as code is refused before
// anything is rendered.
func TestHostileValuesAreRefused(t *testing.T) {
	hostile := []string{"prod\njobs:", `a"b`, "x'y", "${{ github.event.pull_request.head.ref }}", "$(curl evil)", "-rf", "a b", "`id`", ""}
	fields := map[string]func(v *Values, s string){
		"cluster":     func(v *Values, s string) { v.Cluster = s },
		"scale set":   func(v *Values, s string) { v.ScaleSet = s },
		"namespace":   func(v *Values, s string) { v.Namespace = s },
		"repo url":    func(v *Values, s string) { v.RepoURL = "https://github.com/prox-ops/" + s },
		"variables":   func(v *Values, s string) { v.VariablesFile = s },
		"snapshots":   func(v *Values, s string) { v.SnapshotDir = s },
		"drover":      func(v *Values, s string) { v.DroverVersion = s },
		"tofu":        func(v *Values, s string) { v.TofuVersion = s },
		"talosctl":    func(v *Values, s string) { v.TalosctlVersion = s },
		"drover repo": func(v *Values, s string) { v.DroverRepo = s },
		"image":       func(v *Values, s string) { v.RunnerImage = s },
		"environment": func(v *Values, s string) { v.ApprovalEnvironment = s },
	}
	for field, set := range fields {
		for _, h := range hostile {
			v := exampleValues(t)
			set(&v, h)
			_, err := Render(v)
			var ie *InvalidError
			if !errors.As(err, &ie) {
				t.Errorf("%s = %q was rendered", field, h)
			}
		}
	}
	// Relative paths may not climb out of the repository.
	v := exampleValues(t)
	v.VariablesFile = "../etc/passwd"
	if _, err := Render(v); err == nil {
		t.Error("a variables file outside the repository was rendered")
	}
	// Unpinned tools and images are refused.
	v = exampleValues(t)
	v.RunnerImage = "ghcr.io/actions/actions-runner:latest"
	if _, err := Render(v); err == nil {
		t.Error("an unpinned runner image was rendered")
	}
}

// TestValuesReachShellOnlyThroughEnv: no rendered run: script contains a
// value drover rendered or a ${{ }} expression: they go through env:.
func TestValuesReachShellOnlyThroughEnv(t *testing.T) {
	files, err := Render(exampleValues(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range Paths(files) {
		if !strings.HasPrefix(p, ".github/workflows/") && !strings.HasPrefix(p, ".github/actions/") {
			continue
		}
		var doc any
		if err := yaml.Unmarshal(files[p], &doc); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		var walk func(n any)
		walk = func(n any) {
			switch v := n.(type) {
			case map[string]any:
				for k, c := range v {
					if k == "run" {
						script, _ := c.(string)
						for _, bad := range []string{"${{", "prox-ops", "github-actions", "cattle-upgrade", "cluster-upgrade-approval"} {
							if strings.Contains(script, bad) {
								t.Errorf("%s: a run: script contains %q:\n%s", p, bad, script)
							}
						}
					}
					walk(c)
				}
			case []any:
				for _, c := range v {
					walk(c)
				}
			}
		}
		walk(doc)
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
			t.Errorf("deploy/%s differs from the rendering: run drover init --config examples/prox-ops/drover.yaml --repo-url https://github.com/prox-ops/infrastructure --output deploy --force --drover-version v0.1.0", rel)
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
	all := renovatePatterns(t, text)
	if len(all) != 5 {
		t.Fatalf("%d matchStrings with a currentValue, want 5", len(all))
	}
	res, tools := all[:4], all[4]
	// The tools' regex finds each pinned version in the drover-tools action.
	var found []string
	for _, m := range tools.FindAllStringSubmatch(string(files[".github/actions/drover-tools/action.yml"]), -1) {
		found = append(found, m[tools.SubexpIndex("depName")]+"@"+m[tools.SubexpIndex("currentValue")])
	}
	if strings.Join(found, ",") != "prox-ops/drover@v0.1.0,opentofu/opentofu@1.10.6,siderolabs/talos@v1.13.0" {
		t.Errorf("the tools' versions Renovate finds: %v", found)
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
	bin := testenv.RenovateTool.Binary(t)
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

// TestTheTestsRunTheKitsOpenTofu: the Terraform tests build the OpenTofu
// release the kit pins, so they run what the kit's workflows run.
func TestTheTestsRunTheKitsOpenTofu(t *testing.T) {
	if v := testenv.TofuTool.Version; v != "v"+DefaultTofuVersion {
		t.Fatalf("internal/testenv/tools.tsv builds OpenTofu %s, the kit pins %s", v, DefaultTofuVersion)
	}
}

// TestHooksRBACOnlyWhenTheHooksUseIt: the drover-hooks ServiceAccount and
// its Role in rook-ceph are rendered (and listed in the kustomization)
// only when the configuration's hooks run as it: a cluster without Rook
// gets no Role in a namespace it lacks.
func TestHooksRBACOnlyWhenTheHooksUseIt(t *testing.T) {
	const dir = "kubernetes/apps/github-actions/runners/"
	for _, on := range []bool{true, false} {
		v := exampleValues(t)
		v.CephHooks = on
		files, err := Render(v)
		if err != nil {
			t.Fatal(err)
		}
		_, has := files[dir+"hooks-rbac.yaml"]
		listed := strings.Contains(string(files[dir+"kustomization.yaml"]), "./hooks-rbac.yaml")
		if has != on || listed != on {
			t.Errorf("CephHooks=%v: file %v, listed %v", on, has, listed)
		}
	}
}

// TestWorkflowInputDefaultsAgree: no workflow's dispatch inputs default to
// a combination drover refuses: resume defaults to false wherever only or
// canary can be given (drover refuses --resume with --only or --canary).
func TestWorkflowInputDefaultsAgree(t *testing.T) {
	files, err := Render(exampleValues(t))
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, p := range Paths(files) {
		if !strings.HasPrefix(p, ".github/workflows/") {
			continue
		}
		var wf struct {
			On map[string]struct {
				Inputs map[string]struct {
					Default any `yaml:"default"`
				} `yaml:"inputs"`
			} `yaml:"on"`
		}
		if err := yaml.Unmarshal(files[p], &wf); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		for trigger, on := range wf.On {
			in := on.Inputs
			_, only := in["only"]
			_, canary := in["canary"]
			r, resume := in["resume"]
			if !resume || !only && !canary {
				continue
			}
			checked++
			if r.Default != false {
				t.Errorf("%s (%s): resume defaults to %v beside only/canary: a dispatch with either would be refused (exit 2)", p, trigger, r.Default)
			}
		}
	}
	if checked < 2 {
		t.Errorf("only %d workflows with resume beside only/canary checked", checked)
	}
}

// TestTheTalosAccessPatchIsAMachineConfigPatch: the patch drover init
// prints loads, strictly, as a Talos machine-configuration patch (Talos's
// own loader) and enables API access for the runner's namespace with the
// role the kit's ServiceAccount asks for.
func TestTheTalosAccessPatchIsAMachineConfigPatch(t *testing.T) {
	cfg, err := configloader.NewFromBytes([]byte(TalosAccessPatch("github-actions")), configloader.WithAllowPatchDelete())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := configpatcher.LoadPatch([]byte(TalosAccessPatch("github-actions"))); err != nil {
		t.Fatal(err)
	}
	access := cfg.Machine().Features().KubernetesTalosAPIAccess()
	if !access.Enabled() || !slices.Equal(access.AllowedRoles(), []string{"os:admin"}) || !slices.Equal(access.AllowedKubernetesNamespaces(), []string{"github-actions"}) {
		t.Fatalf("enabled %v, roles %v, namespaces %v", access.Enabled(), access.AllowedRoles(), access.AllowedKubernetesNamespaces())
	}
	files, err := Render(exampleValues(t))
	if err != nil {
		t.Fatal(err)
	}
	sa := string(files["kubernetes/apps/github-actions/runners/talos-serviceaccount.yaml"])
	if !strings.Contains(sa, "- os:admin") {
		t.Errorf("the kit's Talos ServiceAccount asks for another role than the patch allows:\n%s", sa)
	}
}
