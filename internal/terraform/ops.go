package terraform

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/terraform-exec/tfexec"

	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/version"
)

// EnsureTemplates applies the templates address with the given versions,
// once per run. Under terraform.templates: keep it first plans that apply
// and refuses if it would destroy anything: old templates must stay, so a
// rollback can clone from them. Under rebuild the templates sit at fixed VM
// ids and are replaced in place; the engine re-applies them at the old
// version before a rollback.
func (r *Runner) EnsureTemplates(ctx context.Context, to version.Pair) error {
	_, err := r.BuildTemplates(ctx, to)
	return err
}

// BuildTemplates is EnsureTemplates that also says whether Terraform
// changed anything: false when the plan was empty (the templates were
// there already) and nothing was applied.
func (r *Runner) BuildTemplates(ctx context.Context, to version.Pair) (built bool, err error) {
	rebuild := r.settings.Templates == config.TemplatesRebuild
	addr := r.settings.TemplatesAddress
	if addr == "" {
		return false, nil
	}
	planOpts := []tfexec.PlanOption{tfexec.Target(addr), tfexec.LockTimeout(r.lockTimeout())}
	for _, v := range r.varOpts(to) {
		planOpts = append(planOpts, tfexec.Var(v))
	}
	tmp, err := os.MkdirTemp("", "drover-templates-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(tmp)
	planFile := filepath.Join(tmp, "templates.tfplan")
	var deletes []string
	var changes bool
	err = r.locked(ctx, "plan templates", "templates", func(ctx context.Context) error {
		var err error
		changes, err = r.tf.Plan(ctx, append(planOpts, tfexec.Out(planFile))...)
		return err
	})
	if err == nil && !changes {
		return false, nil
	}
	if err == nil {
		err = r.read(func() error {
			p, err := r.tf.ShowPlanFile(ctx, planFile)
			if err != nil {
				return err
			}
			for _, rc := range p.ResourceChanges {
				if rc.Change != nil && (rc.Change.Actions.Delete() || rc.Change.Actions.Replace()) {
					deletes = append(deletes, rc.Address)
				}
			}
			return nil
		})
	}
	if err == nil && (len(deletes) == 0 || rebuild) {
		err = r.locked(ctx, "apply templates", "templates", func(ctx context.Context) error { return r.tf.Apply(ctx, tfexec.DirOrPlan(planFile)) })
	}
	if le, ok := asLocked(err); ok {
		return false, le
	}
	if err != nil {
		return false, r.wrap("apply "+addr, err)
	}
	if len(deletes) > 0 && !rebuild {
		return false, fmt.Errorf("the templates apply would destroy %s; under terraform.templates: keep drover keeps old templates so a rollback can clone from them: keep one template per version, or set terraform.templates: rebuild (see examples/prox-ops/terraform/README.md)", strings.Join(deletes, ", "))
	}
	return true, nil
}

// Destroy destroys the nodes' VMs in one run, one -target per node, after
// checking that each address holds that node's VM. Nodes whose VM is not
// in the state are already gone.
func (r *Runner) Destroy(ctx context.Context, nodes []plan.Node) error {
	st, err := r.show(ctx)
	if err != nil {
		return err
	}
	var targets []string
	var who []string
	for _, n := range nodes {
		exists, err := r.checkIdentity(st, n.Node)
		if err != nil {
			return err
		}
		if exists {
			targets = append(targets, Address(r.settings, n.Node))
			who = append(who, n.Name)
		}
	}
	if len(targets) == 0 {
		return nil
	}
	opts := []tfexec.DestroyOption{tfexec.LockTimeout(r.lockTimeout()), tfexec.Refresh(false)}
	for _, t := range targets {
		opts = append(opts, tfexec.Target(t))
	}
	for _, v := range r.varOpts(nodes[0].From) {
		opts = append(opts, tfexec.Var(v))
	}
	err = r.locked(ctx, "destroy", strings.Join(who, ","), func(ctx context.Context) error { return r.tf.Destroy(ctx, opts...) })
	if le, ok := asLocked(err); ok {
		return le
	}
	return r.wrap("destroy "+strings.Join(targets, " "), err)
}

// Create applies the nodes' addresses at the given versions in one run,
// then checks with a plan of the same targets that nothing is left to
// change. When the apply fails, the nodes whose VM is in the state
// afterwards are told apart from those whose is not (NodeErrors).
func (r *Runner) Create(ctx context.Context, nodes []plan.Node, at version.Pair) error {
	var targets, who []string
	for _, n := range nodes {
		targets = append(targets, Address(r.settings, n.Node))
		who = append(who, n.Name)
	}
	applyOpts := []tfexec.ApplyOption{tfexec.LockTimeout(r.lockTimeout())}
	planOpts := []tfexec.PlanOption{tfexec.LockTimeout(r.lockTimeout())}
	for _, t := range targets {
		applyOpts = append(applyOpts, tfexec.Target(t))
		planOpts = append(planOpts, tfexec.Target(t))
	}
	for _, v := range r.varOpts(at) {
		applyOpts = append(applyOpts, tfexec.Var(v))
		planOpts = append(planOpts, tfexec.Var(v))
	}
	var changes, applied bool
	err := r.locked(ctx, "apply", strings.Join(who, ","), func(ctx context.Context) error {
		if err := r.tf.Apply(ctx, applyOpts...); err != nil {
			return err
		}
		applied = true
		var err error
		changes, err = r.tf.Plan(ctx, planOpts...)
		return err
	})
	if le, ok := asLocked(err); ok {
		return le
	}
	if err != nil {
		err = r.wrap("apply "+strings.Join(targets, " "), err)
		if !applied && len(nodes) > 1 {
			return r.failedNodes(ctx, nodes, err)
		}
		return err
	}
	if changes {
		return &DriftError{Address: strings.Join(targets, " ")}
	}
	return nil
}

// failedNodes splits a failed batch apply by node: a node whose VM is in
// the state was created; the others carry the apply's error.
func (r *Runner) failedNodes(ctx context.Context, nodes []plan.Node, applyErr error) error {
	st, err := r.show(ctx)
	if err != nil {
		return applyErr
	}
	errs := rollout.NodeErrors{}
	for _, n := range nodes {
		if v, err := r.vmAt(st, Address(r.settings, n.Node)); err != nil || v == nil {
			errs[n.Name] = applyErr
		}
	}
	if len(errs) == 0 {
		return applyErr
	}
	return errs
}

// VMExists says whether the node's VM is in the state.
func (r *Runner) VMExists(ctx context.Context, n plan.Node) (bool, error) {
	st, err := r.show(ctx)
	if err != nil {
		return false, err
	}
	v, err := r.vmAt(st, Address(r.settings, n.Node))
	return v != nil, err
}

// Preflight checks, before any change, that the state is readable and
// not locked by someone else.
type Preflight struct {
	Runner *Runner
	// At are the current versions, for a refresh-free plan.
	At version.Pair
	// Own are the Terraform commands the journal of the run being resumed
	// records: a lock one of them left behind is broken (force-unlock),
	// and no other lock ever is.
	Own []LockRecord
}

var _ rollout.Preflight = Preflight{}

// Name names the preflight.
func (Preflight) Name() string { return "terraform state" }

// Check pulls the state, then runs a refresh-free plan that takes the
// lock: a lock held elsewhere is a *LockedError naming the holder.
func (p Preflight) Check(ctx context.Context, _ plan.Plan) error {
	err := p.check(ctx)
	var le *LockedError
	if !errors.As(err, &le) {
		return err
	}
	rec, own := ownDeadLock(le, p.Own)
	if !own {
		return err
	}
	r := p.Runner
	fmt.Fprintf(r.out, "[terraform] the state lock %s was left by this run's own %s of %s, which did not finish (its journal says so): breaking it\n", le.ID, rec.Op, rec.Started.Format(time.RFC3339))
	if ferr := r.run("", func() error { return r.tf.ForceUnlock(ctx, le.ID) }); ferr != nil {
		return &StateUnavailableError{Err: r.wrap("force-unlock "+le.ID, ferr)}
	}
	rec.Status, rec.LockID = LockBroken, le.ID
	r.note(ctx, rec)
	return p.check(ctx)
}

func (p Preflight) check(ctx context.Context) error {
	r := p.Runner
	err := r.read(func() error {
		_, err := r.tf.StatePull(ctx)
		return err
	})
	if err != nil {
		return &StateUnavailableError{Err: r.wrap("state pull", err)}
	}
	opts := []tfexec.PlanOption{tfexec.Refresh(false), tfexec.Lock(true), tfexec.LockTimeout(r.lockTimeout())}
	for _, v := range r.varOpts(p.At) {
		opts = append(opts, tfexec.Var(v))
	}
	err = r.run("", func() error {
		_, err := r.tf.Plan(ctx, opts...)
		return err
	})
	if le, ok := asLocked(err); ok {
		return le
	}
	if err != nil {
		return &StateUnavailableError{Err: r.wrap("plan -refresh=false", err)}
	}
	return nil
}

// Discovered is what the state says of a node's VM.
type Discovered struct {
	VMID int
	Host string
}

// Discover reads the VM id and Proxmox host of each node from the state.
func (r *Runner) Discover(ctx context.Context, nodes []config.Node) (map[string]Discovered, error) {
	st, err := r.show(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]Discovered{}
	var errs []error
	for _, n := range nodes {
		v, err := r.vmAt(st, Address(r.settings, n))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if v != nil {
			out[n.Name] = Discovered{VMID: v.VMID, Host: v.Host}
		}
	}
	return out, errors.Join(errs...)
}

// FillInventory fills each node's empty Proxmox host and VM id from the
// state, and says where every value came from ("config", "state", or
// "unknown").
func FillInventory(nodes []config.Node, found map[string]Discovered) (filled []config.Node, sources map[string]string) {
	sources = map[string]string{}
	for _, n := range nodes {
		d, ok := found[n.Name]
		hostSrc, vmSrc := "config", "config"
		if n.ProxmoxHost == "" {
			hostSrc = "unknown"
			if ok && d.Host != "" {
				n.ProxmoxHost, hostSrc = d.Host, "state"
			}
		}
		if n.VMID == 0 {
			vmSrc = "unknown"
			if ok && d.VMID != 0 {
				n.VMID, vmSrc = d.VMID, "state"
			}
		}
		sources[n.Name] = "host from " + hostSrc + ", VM id from " + vmSrc
		filled = append(filled, n)
	}
	return filled, sources
}
