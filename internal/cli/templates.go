package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/terraform"
	"github.com/prox-ops/drover/internal/version"
)

type prepareFlags struct {
	src sourceFlags
	out outputFlag
}

// templatesResult is what drover prepare did, for --output json.
type templatesResult struct {
	Strategy string `json:"strategy"`
	To       string `json:"to"`
	// Result: built, present (already there: nothing was applied) or
	// nothing-to-do.
	Result  string  `json:"result"`
	Seconds float64 `json:"seconds"`
	Reason  string  `json:"reason,omitempty"`
}

func newPrepareCmd(s Streams) *cobra.Command {
	f := &prepareFlags{}
	cmd := &cobra.Command{
		Use:   "prepare",
		Short: "Build the new version's VM templates ahead of a cattle upgrade",
		Long: `Build the templates a cattle (minor or major) upgrade clones its VMs from,
before the upgrade, so the run does not wait for them (about ten minutes on
the reference cluster). It applies terraform.templatesAddress at the target
versions, exactly as the upgrade's template phase does; the upgrade then
finds the templates at the target and its template phase is a no-op plan.
It says whether it built them or found them there already (an empty plan:
nothing was applied); --output json puts that in "result" (built, present
or nothing-to-do).

Templates are additive under terraform.templates: keep (one template per
version): building the next version's changes nothing the cluster runs on,
and the old templates stay for a rollback. Under terraform.templates:
rebuild the templates sit at fixed VM ids and are replaced in place, so
building them ahead would replace the templates a rollback needs before the
upgrade even starts: prepare refuses (exit 2) and says so.

The versions are resolved as for plan (--git-range, --vars-before/--vars-after
or --to-talos, checked against what the nodes run). A patch (pets) upgrade
or a cluster already at the target has nothing to prepare (exit 0).

The kit's pr-plan workflow runs it when the version-bump pull request
carries the upgrade-cattle label. In the lab, --lab-state keeps the built
templates for a later drover upgrade --lab --lab-state.`,
		Example: `  drover prepare --config drover.yaml --git-range "$BASE_SHA..$HEAD_SHA"
  drover prepare --lab --lab-state lab.json --to-talos v1.12.0
  drover upgrade --lab --lab-state lab.json --journal lab.jsonl --to-talos v1.12.0 --yes`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.out.validate(); err != nil {
				return err
			}
			return f.run(cmd.Context(), s)
		},
	}
	f.src.register(cmd.Flags())
	f.out.register(cmd.Flags())
	return cmd
}

// errRebuildTemplates is prepare's refusal under terraform.templates: rebuild.
var errRebuildTemplates = errors.New("terraform.templates: rebuild replaces the templates in place at fixed VM ids; built ahead, the new ones would replace the templates a rollback clones from before the upgrade even starts. " +
	"Keep one template per version (terraform.templates: keep) to build them ahead, or let the upgrade build them")

func (f *prepareFlags) run(ctx context.Context, s Streams) error {
	p, err := prepare(ctx, s, &f.src, prepareOptions{})
	if err != nil {
		return err
	}
	defer p.close()
	res := templatesResult{Strategy: string(p.decision.Strategy), To: p.change.To.String()}
	switch {
	case p.decision.Strategy == version.NoChange:
		res.Result, res.Reason = "nothing-to-do", "every node already runs "+p.change.To.String()
	case p.decision.Strategy == version.Pets:
		res.Result, res.Reason = "nothing-to-do", "a pets upgrade changes the nodes in place and clones no VM"
	case p.cfg.Terraform.Templates == config.TemplatesRebuild:
		return usage(errRebuildTemplates)
	case p.lab == nil && p.cfg.Terraform.TemplatesAddress == "":
		return usage(errors.New("terraform.templatesAddress is not set: drover does not know which Terraform resources are the templates (see examples/prox-ops/drover.yaml)"))
	default:
		if res.Result, res.Seconds, err = f.build(ctx, s, p); err != nil {
			return err
		}
	}
	if f.out.json() {
		return writeJSON(s.Out, res)
	}
	switch res.Result {
	case "nothing-to-do":
		fmt.Fprintf(s.Out, "Nothing to prepare: %s.\n", res.Reason)
	case "present":
		fmt.Fprintf(s.Out, "✓ the Talos %s templates are already there (checked in %s); the upgrade's template phase will be a no-op\n", p.change.To.Talos, human(time.Duration(res.Seconds*float64(time.Second))))
	default:
		fmt.Fprintf(s.Out, "✓ built the Talos %s templates in %s; the upgrade will not wait for them\n", p.change.To.Talos, human(time.Duration(res.Seconds*float64(time.Second))))
	}
	return nil
}

// build builds the templates in the lab (kept with --lab-state) or with
// Terraform; a signal stops Terraform gracefully, releasing its lock.
func (f *prepareFlags) build(ctx context.Context, s Streams, p *prepared) (result string, seconds float64, err error) {
	to := p.change.To
	if p.lab != nil {
		start := p.lab.Clock.Now()
		built, err := p.lab.Hypervisor().BuildTemplates(ctx, to)
		if err != nil {
			return "", 0, err
		}
		took := p.lab.Clock.Now().Sub(start)
		if f.src.labState != "" {
			if err := p.lab.SaveState(f.src.labState); err != nil {
				return "", 0, fmt.Errorf("save the lab state: %w", err)
			}
		}
		return templatesOutcome(built), took.Seconds(), nil
	}
	tf, err := p.terraform(ctx, &f.src, Streams{Err: s.Err, Getenv: s.Getenv})
	if err != nil {
		return "", 0, err
	}
	tf.Watch(ctx, func(_ context.Context, rec terraform.LockRecord) {
		if rec.Status == terraform.LockLeft {
			fmt.Fprintf(s.Err, "drover: Terraform was stopped holding the state lock %s: once no Terraform runs, release it with terraform force-unlock %s in %s\n", rec.LockID, rec.LockID, p.cfg.Terraform.WorkingDir)
		}
	})
	start := time.Now()
	built, err := tf.BuildTemplates(ctx, to)
	if err != nil {
		if ctx.Err() != nil {
			return "", 0, &rollout.InterruptedError{Cause: err}
		}
		return "", 0, fmt.Errorf("build the Talos %s templates: %w", to.Talos, err)
	}
	return templatesOutcome(built), time.Since(start).Seconds(), nil
}

// templatesOutcome is the result word for templates built or found there.
func templatesOutcome(built bool) string {
	if built {
		return "built"
	}
	return "present"
}
