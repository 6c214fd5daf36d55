// Package terraform replaces cattle nodes through the operator's own
// Terraform or OpenTofu code, with hashicorp/terraform-exec: a targeted
// destroy and apply of one node's module address, with the version
// variables passed as flags, after checking that the state is readable,
// not locked by someone else, and that the address really holds that
// node's VM.
package terraform

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/terraform-exec/tfexec"
	tfjson "github.com/hashicorp/terraform-json"

	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/secrets"
	"github.com/prox-ops/drover/internal/version"
)

// Runner runs Terraform for drover. It serialises its commands: they share
// one state and its lock.
type Runner struct {
	tf       *tfexec.Terraform
	settings config.Terraform
	vars     version.VariableNames
	// kubeChanges: the Kubernetes variable is passed only when it changes.
	kubeChanges bool
	out         io.Writer
	masker      *secrets.Masker

	// Binary and Version say which Terraform runs, e.g. "tofu", "1.10.10".
	Binary  string
	Version string

	// at are the versions before the change (for read-only plans).
	at version.Pair
	// owner is who Terraform names as the holder of the locks it takes.
	owner string
	// stop and ledger: see Watch.
	stop   context.Context
	ledger Ledger

	mu sync.Mutex
}

var _ rollout.Replacer = (*Runner)(nil)

// Options build a Runner.
type Options struct {
	Settings config.Terraform
	// RepoRoot is where Settings.WorkingDir is relative to.
	RepoRoot string
	Vars     version.VariableNames
	Change   version.Change
	// Out receives Terraform's output, masked, each line prefixed.
	Out    io.Writer
	Masker *secrets.Masker
	// LookPath finds executables (exec.LookPath in production).
	LookPath func(string) (string, error)
}

// FindBinary picks the executable: the configured one, else tofu, else
// terraform on PATH.
func FindBinary(configured string, lookPath func(string) (string, error)) (string, error) {
	if lookPath == nil {
		lookPath = exec.LookPath
	}
	if configured != "" {
		p, err := lookPath(configured)
		if err != nil {
			return "", fmt.Errorf("terraform.binary %q: %w", configured, err)
		}
		return p, nil
	}
	for _, b := range []string{"tofu", "terraform"} {
		if p, err := lookPath(b); err == nil {
			return p, nil
		}
	}
	return "", errors.New("neither tofu nor terraform is on PATH; install one or set terraform.binary")
}

// New finds the binary, asks its version and prepares the working directory.
func New(ctx context.Context, o Options) (*Runner, error) {
	bin, err := FindBinary(o.Settings.Binary, o.LookPath)
	if err != nil {
		return nil, err
	}
	dir := o.Settings.WorkingDir
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(o.RepoRoot, dir)
	}
	tf, err := tfexec.NewTerraform(dir, bin)
	if err != nil {
		return nil, fmt.Errorf("terraform working directory %s: %w", dir, err)
	}
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	r := &Runner{
		tf: tf, settings: o.Settings, vars: o.Vars, out: out, masker: o.Masker,
		kubeChanges: !o.Change.From.Kubernetes.IsZero() && o.Change.From.Kubernetes != o.Change.To.Kubernetes,
		Binary:      filepath.Base(bin), at: o.Change.From, owner: lockOwner(),
	}
	// A stopped command gets SIGINT, then this long to release its lock
	// before it is killed (GitHub sends SIGTERM 7.5s after SIGINT, and
	// drover exits on that second signal).
	if err := tf.SetWaitDelay(gracePeriod); err != nil {
		return nil, err
	}
	v, _, err := tf.Version(ctx, true)
	if err != nil {
		return nil, r.wrap("version", err)
	}
	r.Version = v.String()
	return r, nil
}

// gracePeriod is how long an interrupted Terraform gets to stop.
const gracePeriod = 2 * time.Minute

// Address is the node's module address: its override, or the template
// with {name} replaced.
func Address(settings config.Terraform, n config.Node) string {
	if n.TerraformAddress != "" {
		return n.TerraformAddress
	}
	return strings.ReplaceAll(settings.NodeAddress, "{name}", n.Name)
}

// run serialises a command and streams its output, prefixed with who.
func (r *Runner) run(who string, fn func() error) error { return r.runOut(who, true, fn) }

// read serialises a command whose output is data drover reads (show,
// state pull): only its errors reach the console, not the document.
func (r *Runner) read(fn func() error) error { return r.runOut("", false, fn) }

func (r *Runner) runOut(who string, stdout bool, fn func() error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	prefix := "[terraform] "
	if who != "" {
		prefix = "[terraform " + who + "] "
	}
	w := r.masker.NewWriter(r.out, prefix)
	r.tf.SetStdout(io.Discard)
	if stdout {
		r.tf.SetStdout(w)
	}
	r.tf.SetStderr(w)
	err := fn()
	_ = w.Flush()
	r.tf.SetStdout(io.Discard)
	r.tf.SetStderr(io.Discard)
	return err
}

// Init initialises the working directory with the configured backend. It
// never migrates state: a changed backend is an error for a person.
func (r *Runner) Init(ctx context.Context) error {
	opts := []tfexec.InitOption{tfexec.Upgrade(false), tfexec.ForceCopy(false), tfexec.Reconfigure(false)}
	for _, k := range slices.Sorted(maps.Keys(r.settings.BackendConfig)) {
		opts = append(opts, tfexec.BackendConfig(k+"="+r.settings.BackendConfig[k]))
	}
	return r.run("", func() error {
		if err := r.tf.Init(ctx, opts...); err != nil {
			return &StateUnavailableError{Err: r.wrap("init", err)}
		}
		return nil
	})
}

func (r *Runner) lockTimeout() string {
	if !r.settings.WaitForLock {
		return "0s"
	}
	return r.settings.LockTimeout.Duration.String()
}

// varOpts returns the -var flags for the versions at.
func (r *Runner) varOpts(at version.Pair) []string {
	vars := []string{r.vars.Talos + "=" + at.Talos.String()}
	if r.kubeChanges && !at.Kubernetes.IsZero() {
		vars = append(vars, r.vars.Kubernetes+"="+at.Kubernetes.String())
	}
	return vars
}

// wrap masks an error's text (Terraform's stderr can echo anything) and
// keeps it unwrappable.
func (r *Runner) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return &maskedError{msg: fmt.Sprintf("terraform %s: %s", op, strings.TrimSpace(r.masker.Mask(err.Error()))), err: err}
}

type maskedError struct {
	msg string
	err error
}

func (e *maskedError) Error() string { return e.msg }
func (e *maskedError) Unwrap() error { return e.err }

// StateUnavailableError says the state cannot be read. The run is blocked.
type StateUnavailableError struct{ Err error }

func (e *StateUnavailableError) Error() string { return "remote state unavailable: " + e.Err.Error() }
func (e *StateUnavailableError) Unwrap() error { return e.Err }

// LockedError says someone else holds the state lock.
type LockedError struct {
	ID, Who, Operation, Created, Path string
	Err                               error
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("the Terraform state is locked by %s (operation %s, since %s, lock ID %s); wait for it to finish, or break a stale lock with `terraform force-unlock %s`",
		orUnknown(e.Who), orUnknown(e.Operation), orUnknown(e.Created), orUnknown(e.ID), orUnknown(e.ID))
}

func (e *LockedError) Unwrap() error { return e.Err }

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}

var lockFieldRE = regexp.MustCompile(`(?m)^\s*│?\s*(ID|Path|Operation|Who|Version|Created|Info):\s*(.*?)\s*$`)

// asLocked recognises Terraform's "Error acquiring the state lock".
func asLocked(err error) (*LockedError, bool) {
	if err == nil || !strings.Contains(err.Error(), "state lock") || !strings.Contains(err.Error(), "Lock Info") {
		return nil, false
	}
	le := &LockedError{Err: err}
	for _, m := range lockFieldRE.FindAllStringSubmatch(err.Error(), -1) {
		switch m[1] {
		case "ID":
			le.ID = m[2]
		case "Path":
			le.Path = m[2]
		case "Operation":
			le.Operation = m[2]
		case "Who":
			le.Who = m[2]
		case "Created":
			le.Created = m[2]
		}
	}
	return le, true
}

// IdentityMismatchError says the address does not hold the node's VM.
type IdentityMismatchError struct {
	Node, Address, Field string
	Want, Got            any
}

func (e *IdentityMismatchError) Error() string {
	return fmt.Sprintf("refusing to destroy %s: the VM at %s has %s %v, but the inventory says node %s has %v",
		e.Address, e.Address, e.Field, e.Got, e.Node, e.Want)
}

// DriftError says that after the apply a plan of the node still shows changes.
type DriftError struct{ Address string }

func (e *DriftError) Error() string {
	return fmt.Sprintf("after the apply, `plan -target=%s` still shows changes: the node does not match its code; halting", e.Address)
}

// vm is what the state says of a node's VM.
type vm struct {
	Address string
	VMID    int
	Name    string
	Host    string
}

// vmAt finds the VM resource under a module address in the state.
func (r *Runner) vmAt(st *tfjson.State, addr string) (*vm, error) {
	if st == nil || st.Values == nil {
		return nil, nil
	}
	var found []*vm
	var walk func(m *tfjson.StateModule)
	walk = func(m *tfjson.StateModule) {
		for _, res := range m.Resources {
			if res.Type != r.settings.VMResourceType || res.Mode != tfjson.ManagedResourceMode {
				continue
			}
			if res.Address != addr && !strings.HasPrefix(res.Address, addr+".") && !strings.HasPrefix(res.Address, addr+"[") {
				continue
			}
			found = append(found, vmFromAttrs(res.Address, res.AttributeValues))
		}
		for _, c := range m.ChildModules {
			walk(c)
		}
	}
	walk(st.Values.RootModule)
	switch len(found) {
	case 0:
		return nil, nil
	case 1:
		return found[0], nil
	}
	return nil, fmt.Errorf("%d resources of type %s under %s; want one VM per node", len(found), r.settings.VMResourceType, addr)
}

// vmFromAttrs reads the bpg/proxmox VM's attributes (vm_id, name,
// node_name).
func vmFromAttrs(addr string, src map[string]any) *vm {
	v := &vm{Address: addr}
	switch id := src["vm_id"].(type) {
	case float64:
		v.VMID = int(id)
	case json.Number:
		n, _ := id.Int64()
		v.VMID = int(n)
	case string:
		_, _ = fmt.Sscanf(id, "%d", &v.VMID)
	}
	v.Name, _ = src["name"].(string)
	v.Host, _ = src["node_name"].(string)
	return v
}

func (r *Runner) show(ctx context.Context) (*tfjson.State, error) {
	var st *tfjson.State
	err := r.read(func() (err error) {
		st, err = r.tf.Show(ctx)
		return err
	})
	if err != nil {
		return nil, r.wrap("show", err)
	}
	return st, nil
}

// checkIdentity confirms the VM at the node's address is that node's VM.
// A node with no VM in the state has nothing to destroy.
func (r *Runner) checkIdentity(st *tfjson.State, n config.Node) (exists bool, err error) {
	addr := Address(r.settings, n)
	got, err := r.vmAt(st, addr)
	if err != nil || got == nil {
		return false, err
	}
	if n.VMID != 0 && got.VMID != n.VMID {
		return true, &IdentityMismatchError{Node: n.Name, Address: got.Address, Field: "vm_id", Want: n.VMID, Got: got.VMID}
	}
	if got.Name != "" && got.Name != n.Name {
		return true, &IdentityMismatchError{Node: n.Name, Address: got.Address, Field: "name", Want: n.Name, Got: got.Name}
	}
	if n.ProxmoxHost != "" && got.Host != "" && got.Host != n.ProxmoxHost {
		return true, &IdentityMismatchError{Node: n.Name, Address: got.Address, Field: "node_name", Want: n.ProxmoxHost, Got: got.Host}
	}
	return true, nil
}
