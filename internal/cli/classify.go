package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/run"
)

type classifyFlags struct {
	src sourceFlags
	out outputFlag
}

func newClassifyCmd(s Streams) *cobra.Command {
	f := &classifyFlags{}
	cmd := &cobra.Command{
		Use:   "classify",
		Short: "Decide the upgrade strategy for a version change",
		Long: `Decide the upgrade strategy for a version change and say why.

A patch release (1.11.3 -> 1.11.4) is upgraded in place (pets, label
upgrade-pets); a minor release (1.11.x -> 1.12.x) replaces every VM (cattle,
label upgrade-cattle); a major release (1.x -> 2.x) is cattle and needs an
explicit approval, as does any target on the configured approval list. When
Talos and Kubernetes both change, the larger change decides.`,
		Example: `  drover classify --from v1.11.3 --to v1.12.0
  drover classify --config drover.yaml --vars-before old.tf --vars-after new.tf --output json
  drover classify --config drover.yaml --git-range origin/main~1..origin/main`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.out.validate(); err != nil {
				return err
			}
			cfg, err := f.configForClassify(s)
			if err != nil {
				return err
			}
			claim, err := f.src.claim(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if f.src.lab && claim.From.Talos.IsZero() {
				// The lab's nodes start at its starting versions.
				if claim.From, err = f.src.labStart(); err != nil {
					return err
				}
			}
			// Classify judges the change a pull request claims; plan and
			// upgrade check the claim against the nodes.
			d, err := run.Classify(cfg, claim)
			if err != nil {
				return err
			}
			if f.out.json() {
				return writeJSON(s, d)
			}
			fmt.Fprintf(s.Out, "strategy:  %s\nlabel:     %s\napproval:  %s\nrationale: %s\n",
				d.Strategy, orNone(d.Label), map[bool]string{true: "required", false: "not required"}[d.ApprovalRequired], d.Rationale)
			return nil
		},
	}
	f.src.register(cmd.Flags())
	cmd.Flags().StringVar(&f.src.fromTalos, "from", "", "current Talos version (same as --from-talos)")
	cmd.Flags().StringVar(&f.src.toTalos, "to", "", "target Talos version (same as --to-talos)")
	f.out.register(cmd.Flags())
	return cmd
}

// configForClassify: classify needs no inventory, only the version
// settings and the approval list, so it runs without --config too.
func (f *classifyFlags) configForClassify(s Streams) (*config.Config, error) {
	if f.src.configPath == "" && !f.src.lab {
		c := config.Defaults()
		return &c, nil
	}
	return f.src.loadConfig(s)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
