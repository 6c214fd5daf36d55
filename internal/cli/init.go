package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/prox-ops/drover/internal/kit"
)

type initFlags struct {
	config        string
	repoURL       string
	output        string
	force         bool
	scaleSet      string
	namespace     string
	droverVersion string
	environment   string
}

func newInitCmd(s Streams) *cobra.Command {
	f := &initFlags{}
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Render the GitOps kit (workflows, Renovate, runner manifests) into your repository",
		Long: `Render drover's GitOps kit with your names: the upgrade-cattle and
upgrade-pets workflows (one drover upgrade per merged version bump), the
reusable health-check workflow, the pr-plan workflow that labels and
comments on version-bump pull requests, the actionlint and Renovate
configuration, and the in-cluster runner manifests under
kubernetes/apps/github-actions (Flux, ARC, External Secrets, RBAC, a Talos
ServiceAccount). Files that exist with other content are left alone unless
--force; init prints what it wrote and the secrets you must create.`,
		Example: `  drover init --config drover.yaml --repo-url https://github.com/prox-ops/infrastructure --output .`,
		Args:    noArgs,
		RunE: func(*cobra.Command, []string) error {
			if f.repoURL == "" || f.output == "" {
				return usage(errors.New("--repo-url and --output are required"))
			}
			src := sourceFlags{configPath: f.config}
			cfg, err := src.loadConfig()
			if err != nil {
				return err
			}
			files, err := kit.Render(kit.Values{
				Cluster: cfg.Cluster.Name, RepoURL: f.repoURL, ScaleSet: f.scaleSet, Namespace: f.namespace,
				VariablesFile: cfg.Versions.VariablesFile, DroverVersion: f.droverVersion, ApprovalEnvironment: f.environment,
			})
			if err != nil {
				return err
			}
			written, err := kit.Write(f.output, files, f.force)
			var ce *kit.ChangedError
			if errors.As(err, &ce) {
				return usage(err)
			}
			if err != nil {
				return err
			}
			for _, w := range written {
				fmt.Fprintf(s.Out, "%-9s %s\n", w.Action, w.Path)
			}
			fmt.Fprintln(s.Out, "\nCreate these before the first upgrade:")
			for _, sec := range kit.Secrets {
				fmt.Fprintln(s.Out, "  - "+sec)
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&f.config, "config", "c", "drover.yaml", "drover.yaml describing the cluster")
	fs.StringVar(&f.repoURL, "repo-url", "", "URL of your infrastructure repository")
	fs.StringVar(&f.output, "output", "", "the repository checkout to write into")
	fs.BoolVar(&f.force, "force", false, "replace files that differ from the kit")
	fs.StringVar(&f.scaleSet, "scale-set", "cattle-upgrade", "the in-cluster runner scale set (runs-on)")
	fs.StringVar(&f.namespace, "namespace", "github-actions", "namespace the runners (and drover's lock and journal) live in")
	fs.StringVar(&f.droverVersion, "drover-version", "latest", "drover version the workflows install")
	fs.StringVar(&f.environment, "approval-environment", "cluster-upgrade-approval", "GitHub Environment whose reviewers approve major upgrades")
	return cmd
}
