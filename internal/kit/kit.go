// Package kit is the GitOps kit drover ships: the GitHub Actions workflows
// (and, as it grows, the Renovate configuration and the in-cluster runner
// manifests), as templates embedded in the binary. `drover init` renders
// them with the operator's names; deploy/ in this repository is the
// rendering for the prox-ops example, kept identical by a test.
package kit

import (
	"bytes"
	"embed"
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

// Values are the operator's names the kit is rendered with.
type Values struct {
	Cluster       string
	RepoURL       string
	ScaleSet      string
	Namespace     string
	VariablesFile string
	DroverVersion string
	// ApprovalEnvironment is the GitHub Environment whose required
	// reviewers approve major upgrades.
	ApprovalEnvironment string
}

// Render renders every template; the map is path -> content.
func Render(v Values) (map[string][]byte, error) {
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

// ChangedError: files differ from the kit and --force was not given.
type ChangedError struct{ Paths []string }

func (e *ChangedError) Error() string {
	return fmt.Sprintf("refusing to overwrite %d changed file(s) (pass --force to replace them): %s", len(e.Paths), strings.Join(e.Paths, ", "))
}

// Write writes the files under dir. A file that exists with other content
// is only replaced with force; nothing is written if any is refused.
func Write(dir string, files map[string][]byte, force bool) ([]Written, error) {
	var refused []string
	var plan []Written
	for _, p := range Paths(files) {
		target := filepath.Join(dir, filepath.FromSlash(p))
		old, err := os.ReadFile(target)
		switch {
		case os.IsNotExist(err):
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
	for _, w := range plan {
		if w.Action == "unchanged" {
			continue
		}
		target := filepath.Join(dir, filepath.FromSlash(w.Path))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(target, files[w.Path], 0o644); err != nil {
			return nil, err
		}
	}
	return plan, nil
}

// Secrets are what the operator must create for the kit to work.
var Secrets = []string{
	"GitHub secret TALOSCONFIG: the talosconfig, base64 (base64 -w0 talosconfig)",
	"GitHub secret TF_VAR_PROXMOX_PASSWORD: the Proxmox API password or token secret for Terraform",
	"GitHub secrets AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: the Terraform state bucket's keys",
	"GitHub secret DISCORD_WEBHOOK_URL: the Discord webhook for notifications (optional)",
	"GitHub Environment with required reviewers, for major upgrades and approval-list versions",
}
