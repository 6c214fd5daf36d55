package version

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// ReadVariables returns the values of the named variables in a Terraform
// file. It understands both forms Renovate bumps: a default inside a
// variable block (variable "talos_version" { default = "v1.11.3" }) and a
// tfvars-style top-level assignment (talos_version = "v1.11.3"). A name that
// is not in the file is absent from the result.
func ReadVariables(filename string, src []byte, names ...string) (map[string]string, error) {
	f, diags := hclsyntax.ParseConfig(src, filename, hcl.Pos{Line: 1, Column: 1})
	if diags.HasErrors() {
		return nil, fmt.Errorf("parse %s: %w", filename, diags)
	}
	body, ok := f.Body.(*hclsyntax.Body)
	if !ok {
		return nil, fmt.Errorf("parse %s: not native HCL syntax", filename)
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]string{}
	for name, attr := range body.Attributes {
		if want[name] {
			v, err := stringValue(filename, attr)
			if err != nil {
				return nil, err
			}
			out[name] = v
		}
	}
	for _, b := range body.Blocks {
		if b.Type != "variable" || len(b.Labels) != 1 || !want[b.Labels[0]] {
			continue
		}
		attr, ok := b.Body.Attributes["default"]
		if !ok {
			continue
		}
		v, err := stringValue(filename, attr)
		if err != nil {
			return nil, err
		}
		if _, dup := out[b.Labels[0]]; dup {
			return nil, fmt.Errorf("%s: %s is set twice (as a variable default and an assignment)", filename, b.Labels[0])
		}
		out[b.Labels[0]] = v
	}
	return out, nil
}

func stringValue(filename string, attr *hclsyntax.Attribute) (string, error) {
	v, diags := attr.Expr.Value(nil)
	if diags.HasErrors() {
		return "", fmt.Errorf("%s:%d: %s must be a literal string: %w", filename, attr.SrcRange.Start.Line, attr.Name, diags)
	}
	if v.Type() != cty.String || v.IsNull() {
		return "", fmt.Errorf("%s:%d: %s must be a string, got %s", filename, attr.SrcRange.Start.Line, attr.Name, v.Type().FriendlyName())
	}
	return v.AsString(), nil
}

// Change is the version change a merged pull request made.
type Change struct {
	From, To Pair
}

// VariableNames names the Terraform variables that hold the versions.
type VariableNames struct {
	Talos, Kubernetes string
}

// ChangeFromSources reads the versions before and after from two revisions of
// the variables file. The Talos variable must be in both; the Kubernetes one
// is optional (zero when absent).
func ChangeFromSources(before, after Source, names VariableNames, allowPre bool) (Change, error) {
	var c Change
	for _, side := range []struct {
		src Source
		out *Pair
	}{{before, &c.From}, {after, &c.To}} {
		data, err := side.src.Read()
		if err != nil {
			return Change{}, err
		}
		vars, err := ReadVariables(side.src.Name(), data, names.Talos, names.Kubernetes)
		if err != nil {
			return Change{}, err
		}
		t, ok := vars[names.Talos]
		if !ok {
			return Change{}, fmt.Errorf("%s: no variable %q (set versions.talosVariable)", side.src.Name(), names.Talos)
		}
		if side.out.Talos, err = Parse(t, allowPre); err != nil {
			return Change{}, fmt.Errorf("%s: %s: %w", side.src.Name(), names.Talos, err)
		}
		if k, ok := vars[names.Kubernetes]; ok {
			if side.out.Kubernetes, err = Parse(k, allowPre); err != nil {
				return Change{}, fmt.Errorf("%s: %s: %w", side.src.Name(), names.Kubernetes, err)
			}
		}
	}
	return c, nil
}

// Source is one revision of the variables file.
type Source interface {
	Name() string
	Read() ([]byte, error)
}

// FileSource is a file on disk.
type FileSource struct {
	Path string
	read func(string) ([]byte, error)
}

// NewFileSource reads a file with the given reader (os.ReadFile in production).
func NewFileSource(path string, read func(string) ([]byte, error)) FileSource {
	return FileSource{Path: path, read: read}
}

// Name is the file's path.
func (f FileSource) Name() string { return f.Path }

// Read reads the file.
func (f FileSource) Read() ([]byte, error) { return f.read(f.Path) }

// GitSource is a file at a git revision, read with `git show REV:PATH`.
type GitSource struct {
	Ctx  context.Context
	Dir  string
	Rev  string
	Path string
}

// Name is REV:PATH.
func (g GitSource) Name() string { return g.Rev + ":" + g.Path }

// Read runs git show.
func (g GitSource) Read() ([]byte, error) {
	if err := CheckRev(g.Rev); err != nil {
		return nil, err
	}
	// --end-of-options: whatever the revision is, git reads it as a
	// revision, never as an option (git >= 2.24).
	cmd := exec.CommandContext(g.Ctx, "git", "show", "--end-of-options", g.Rev+":"+g.Path)
	cmd.Dir = g.Dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git show %s:%s: %w: %s", g.Rev, g.Path, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// ParseRange splits a git revision range "BASE..HEAD" and checks both
// revisions with CheckRev: the range often comes from a workflow input.
func ParseRange(r string) (base, head string, err error) {
	base, head, ok := strings.Cut(r, "..")
	if !ok || base == "" || head == "" || strings.HasPrefix(head, ".") {
		return "", "", errors.New("want a revision range BASE..HEAD, such as origin/main~1..origin/main")
	}
	if err := CheckRev(base); err != nil {
		return "", "", err
	}
	if err := CheckRev(head); err != nil {
		return "", "", err
	}
	return base, head, nil
}

// CheckRev accepts what a revision in a range is in practice (a commit
// SHA, a branch or tag name, HEAD, with ~N and ^N suffixes) and refuses
// the rest: a leading '-' (git would read an option), whitespace and
// control characters, ':' (it would change which file is read), '..',
// and anything git check-ref-format refuses ('\\', '?', '*', '[', "@{").
func CheckRev(rev string) error {
	bad := func(why string) error {
		return fmt.Errorf("revision %q: %s", rev, why)
	}
	switch {
	case rev == "":
		return bad("empty")
	case len(rev) > 256:
		return bad("longer than 256 characters")
	case strings.HasPrefix(rev, "-"):
		return bad("starts with '-' (git would read it as an option)")
	case strings.Contains(rev, ".."):
		return bad("contains '..'")
	case strings.Contains(rev, "@{"):
		return bad("contains '@{'")
	case strings.HasSuffix(rev, ".") || strings.HasSuffix(rev, "/") || strings.HasPrefix(rev, "/"):
		return bad("starts with '/' or ends with '.' or '/'")
	}
	for _, r := range rev {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			strings.ContainsRune("._/~^-+@", r)
		if !ok {
			return bad(fmt.Sprintf("character %q is not allowed (letters, digits and . _ / ~ ^ - + @)", r))
		}
	}
	return nil
}
