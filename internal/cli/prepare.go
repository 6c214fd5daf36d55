package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/prox-ops/drover/internal/run"
)

type prepareFlags struct {
	src sourceFlags
	out outputFlag
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

func (f *prepareFlags) run(ctx context.Context, s Streams) error {
	p, err := f.src.planFor(ctx, s, planOptions{})
	if err != nil {
		return err
	}
	defer p.Close()
	res, err := run.BuildTemplates(ctx, p)
	if err != nil {
		return err
	}
	if f.out.json() {
		return writeJSON(s, res)
	}
	took := human(time.Duration(res.Seconds * float64(time.Second)))
	switch res.Result {
	case run.NothingToDo:
		fmt.Fprintf(s.Out, "Nothing to prepare: %s.\n", res.Reason)
	case run.TemplatesPresent:
		fmt.Fprintf(s.Out, "✓ the Talos %s templates are already there (checked in %s); the upgrade's template phase will be a no-op\n", p.Change.To.Talos, took)
	default:
		fmt.Fprintf(s.Out, "✓ built the Talos %s templates in %s; the upgrade will not wait for them\n", p.Change.To.Talos, took)
	}
	return nil
}
