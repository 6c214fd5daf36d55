// Package kit is the GitOps kit drover ships: the GitHub Actions workflows
// (and, as it grows, the Renovate configuration and the in-cluster runner
// manifests), as templates embedded in the binary. `drover init` renders
// them with the operator's names; deploy/ in this repository is the
// rendering for the prox-ops example, kept identical by a test.
package kit

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"
)

//go:embed all:templates
var templates embed.FS

// Values are the operator's names the kit is rendered with. Every one is
// validated (Validate) before it is rendered: they end up in YAML, in
// runs-on and in env: values, so none may carry a newline, a quote, a
// ${{ }} expression or a leading dash.
type Values struct {
	Cluster       string
	RepoURL       string
	ScaleSet      string
	Namespace     string
	VariablesFile string
	// SnapshotDir is where drover writes etcd snapshots (talos.etcdSnapshotDir).
	SnapshotDir string
	// DroverVersion, TofuVersion and TalosctlVersion are the pinned
	// releases the workflows install (Renovate bumps them).
	DroverVersion   string
	TofuVersion     string
	TalosctlVersion string
	// DroverRepo is the GitHub repository drover's releases come from.
	DroverRepo string
	// RunnerImage is the runner scale set's image, pinned to a release.
	RunnerImage string
	// ApprovalEnvironment is the GitHub Environment whose required
	// reviewers approve major upgrades.
	ApprovalEnvironment string
	// CephHooks: the configuration's hooks run as the kit's drover-hooks
	// ServiceAccount (HooksServiceAccount), which may exec into the Rook
	// toolbox (ceph osd set noout) and nothing else.
	CephHooks bool
}

// TalosAccessPatch is the machine-configuration patch that lets the
// runner's Talos ServiceAccount (talos.dev/v1alpha1, role os:admin) reach
// the Talos API from namespace: Talos then mints its talosconfig into the
// secret the runner mounts. Apply it to every control-plane node
// (talosctl patch machineconfig --patch @talos-api-access.yaml).
func TalosAccessPatch(namespace string) string {
	return `machine:
  features:
    kubernetesTalosAPIAccess:
      enabled: true
      allowedRoles: [os:admin]
      allowedKubernetesNamespaces: [` + namespace + `]
`
}

// HooksServiceAccount is the kit's ServiceAccount for hooks that run
// ceph commands in the Rook toolbox.
const HooksServiceAccount = "drover-hooks"

// The versions the kit pins unless told otherwise.
const (
	DefaultTofuVersion     = "1.10.6"
	DefaultTalosctlVersion = "v1.13.0"
	DefaultRunnerImage     = "ghcr.io/actions/actions-runner:2.328.0"
	DefaultDroverRepo      = "prox-ops/drover"
)

var (
	dnsLabel    = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	semverRE    = regexp.MustCompile(`^v?\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`)
	repoRE      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._][A-Za-z0-9._-]{0,99}$`)
	pathRE      = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._/-]*$`)
	envNameRE   = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$`)
	imageRE     = regexp.MustCompile(`^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+:\d+\.\d+\.\d+$`)
	githubURLRE = regexp.MustCompile(`^https://[A-Za-z0-9.-]+/[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._][A-Za-z0-9._-]{0,99}$`)
)

// InvalidError is a value the kit refuses to render. The CLI exits 2.
type InvalidError struct{ Problems []string }

func (e *InvalidError) Error() string {
	return "refusing to render the kit: " + strings.Join(e.Problems, "; ")
}

// Validate checks every value against what it may be, so nothing rendered
// can add a job, break out of a string or reach a shell as code.
func (v Values) Validate() error {
	var probs []string
	check := func(field, value string, ok bool, want string) {
		if !ok {
			probs = append(probs, fmt.Sprintf("%s %q: want %s", field, value, want))
		}
	}
	check("the cluster name (cluster.name)", v.Cluster, dnsLabel.MatchString(v.Cluster), "a DNS label (lowercase letters, digits and '-')")
	check("--repo-url", v.RepoURL, githubURLRE.MatchString(v.RepoURL), "https://HOST/OWNER/REPOSITORY")
	check("--scale-set", v.ScaleSet, dnsLabel.MatchString(v.ScaleSet), "a DNS label (the runner scale set's name)")
	check("--namespace", v.Namespace, dnsLabel.MatchString(v.Namespace), "a DNS label")
	check("versions.variablesFile", v.VariablesFile, pathRE.MatchString(v.VariablesFile) && !strings.Contains(v.VariablesFile, ".."), "a relative path of letters, digits, '.', '_', '-' and '/'")
	check("talos.etcdSnapshotDir", v.SnapshotDir, pathRE.MatchString(v.SnapshotDir) && !strings.Contains(v.SnapshotDir, ".."), "a relative path of letters, digits, '.', '_', '-' and '/'")
	check("--drover-version", v.DroverVersion, semverRE.MatchString(v.DroverVersion) && strings.HasPrefix(v.DroverVersion, "v"), "a release such as v0.4.0")
	check("--tofu-version", v.TofuVersion, semverRE.MatchString(v.TofuVersion), "an OpenTofu release such as 1.10.6")
	check("--talosctl-version", v.TalosctlVersion, semverRE.MatchString(v.TalosctlVersion) && strings.HasPrefix(v.TalosctlVersion, "v"), "a Talos release such as v1.13.0")
	check("--drover-repo", v.DroverRepo, repoRE.MatchString(v.DroverRepo), "OWNER/REPOSITORY")
	check("--runner-image", v.RunnerImage, imageRE.MatchString(v.RunnerImage), "an image pinned to a release, such as "+DefaultRunnerImage)
	check("--approval-environment", v.ApprovalEnvironment, envNameRE.MatchString(v.ApprovalEnvironment), "a GitHub Environment name (letters, digits, '_', '.', '-')")
	if len(probs) > 0 {
		return &InvalidError{Problems: probs}
	}
	return nil
}

// Render validates the values and renders every template; the map is
// path -> content.
func Render(v Values) (map[string][]byte, error) {
	if err := v.Validate(); err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	err := fs.WalkDir(templates, "templates", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		src, err := templates.ReadFile(path)
		if err != nil {
			return err
		}
		// [[ ]] delimiters: GitHub's own ${{ }} expressions pass through.
		funcs := template.FuncMap{
			// pattern quotes a path as a regular expression inside a JSON string.
			"pattern": func(p string) string { return strings.ReplaceAll(regexp.QuoteMeta(p), `\`, `\\`) },
		}
		t, err := template.New(path).Delims("[[", "]]").Funcs(funcs).Option("missingkey=error").Parse(string(src))
		if err != nil {
			return fmt.Errorf("kit template %s: %w", path, err)
		}
		var b bytes.Buffer
		if err := t.Execute(&b, v); err != nil {
			return fmt.Errorf("kit template %s: %w", path, err)
		}
		if len(bytes.TrimSpace(b.Bytes())) == 0 {
			return nil // a file the values leave out
		}
		out[strings.TrimPrefix(path, "templates/")] = b.Bytes()
		return nil
	})
	return out, err
}

// Paths lists rendered paths in order.
func Paths(files map[string][]byte) []string {
	var ps []string
	for p := range files {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	return ps
}

// Written is what Write did with one file.
type Written struct {
	Path   string
	Action string // created, updated, unchanged
}

// ChangedError says files differ from the kit and --force was not given.
type ChangedError struct{ Paths []string }

func (e *ChangedError) Error() string {
	return fmt.Sprintf("refusing to overwrite %d changed file(s) (pass --force to replace them): %s", len(e.Paths), strings.Join(e.Paths, ", "))
}

// UnsafePathError says a path inside the output directory is a symbolic
// link that leads out of it (or nowhere), or a file that is a link:
// writing through it would change files elsewhere.
type UnsafePathError struct{ Path, Why string }

func (e *UnsafePathError) Error() string {
	return fmt.Sprintf("refusing to write %s: %s (remove the link, or choose another --output)", e.Path, e.Why)
}

// UnwritableError says the output directory cannot be written.
type UnwritableError struct {
	Dir string
	Err error
}

func (e *UnwritableError) Error() string {
	return fmt.Sprintf("cannot write into %s: %v", e.Dir, e.Err)
}

func (e *UnwritableError) Unwrap() error { return e.Err }

// Write writes the files under dir. A file that exists with other content
// is only replaced with force; nothing is written if any is refused, if a
// symbolic link inside dir leads out of it, or if dir cannot be written.
// Files are written through os.Root: never outside dir, never through a
// link.
func Write(dir string, files map[string][]byte, force bool) ([]Written, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, &UnwritableError{Dir: dir, Err: err}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, &UnwritableError{Dir: dir, Err: err}
	}
	defer root.Close()
	var refused []string
	var plan []Written
	for _, p := range Paths(files) {
		if err := safePath(dir, root, p); err != nil {
			return nil, err
		}
		old, err := root.ReadFile(filepath.FromSlash(p))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			plan = append(plan, Written{Path: p, Action: "created"})
		case err != nil:
			return nil, err
		case bytes.Equal(old, files[p]):
			plan = append(plan, Written{Path: p, Action: "unchanged"})
		case force:
			plan = append(plan, Written{Path: p, Action: "updated"})
		default:
			refused = append(refused, p)
		}
	}
	if len(refused) > 0 {
		return nil, &ChangedError{Paths: refused}
	}
	if err := writable(root); err != nil {
		return nil, &UnwritableError{Dir: dir, Err: err}
	}
	for _, w := range plan {
		if w.Action == "unchanged" {
			continue
		}
		target := filepath.FromSlash(w.Path)
		if err := root.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return nil, err
		}
		if err := writeFile(root, target, files[w.Path]); err != nil {
			return nil, err
		}
	}
	return plan, nil
}

// safePath refuses a file that is a symbolic link, and a directory on its
// way that is a link leading out of dir or nowhere.
func safePath(dir string, root *os.Root, p string) error {
	parts := strings.Split(p, "/")
	for i := range parts {
		rel := filepath.FromSlash(strings.Join(parts[:i+1], "/"))
		fi, err := root.Lstat(rel)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			if strings.Contains(err.Error(), "escapes") {
				return &UnsafePathError{Path: filepath.Join(dir, rel), Why: "it leads out of the output directory"}
			}
			return err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			continue
		}
		if i == len(parts)-1 {
			return &UnsafePathError{Path: filepath.Join(dir, rel), Why: "it is a symbolic link, which drover never writes through"}
		}
		if _, err := root.Stat(rel); err != nil {
			return &UnsafePathError{Path: filepath.Join(dir, rel), Why: "it is a symbolic link that leads out of the output directory or nowhere"}
		}
	}
	return nil
}

// writable proves dir takes a file before anything is written.
func writable(root *os.Root) error {
	f, err := root.OpenFile(".drover-init-probe", os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_ = f.Close()
	return root.Remove(".drover-init-probe")
}

// writeFile replaces a file without following a link in its place.
func writeFile(root *os.Root, name string, data []byte) error {
	if fi, err := root.Lstat(name); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return &UnsafePathError{Path: name, Why: "it became a symbolic link"}
	}
	return root.WriteFile(name, data, 0o644)
}

// Secrets are what the operator must create for the kit to work: the nine
// GitHub secrets of the PRD (Story 1.2), checked by test-secrets.yml.
var Secrets = []string{
	"GitHub secrets PROXMOX_USERNAME and PROXMOX_PASSWORD: the Proxmox API token user (user@realm!token) and its secret, for Terraform's provider",
	"GitHub secrets AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: the Terraform state bucket's keys",
	"GitHub secret TALOSCONFIG: the talosconfig, base64 (base64 -w0 talosconfig)",
	"GitHub secret DISCORD_WEBHOOK_URL: the Discord webhook for notifications",
	"GitHub secrets GH_APP_ID, GH_APP_INSTALLATION_ID and GH_APP_PRIVATE_KEY: the GitHub App that labels and comments (GitHub refuses secret names starting with GITHUB_)",
	"GitHub Environment with required reviewers, for major upgrades and approval-list versions",
	"then run the test-secrets and test-runner workflows by hand",
}
