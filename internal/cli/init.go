package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/kit"
)

type initFlags struct {
	config          string
	repoURL         string
	output          string
	force           bool
	scaleSet        string
	namespace       string
	droverVersion   string
	droverRepo      string
	tofuVersion     string
	talosctlVersion string
	runnerImage     string
	environment     string
}

func newInitCmd(s Streams) *cobra.Command {
	f := &initFlags{}
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Render the GitOps kit (workflows, Renovate, runner manifests) into your repository",
		Long: `Render drover's GitOps kit with your names: the upgrade-cattle and
upgrade-pets workflows (one drover upgrade per merged version bump, through
the reusable drover-upgrade workflow), the health-check workflow (called
after each upgrade, or run by hand), the pr-plan workflow that labels and
comments on version-bump pull requests, test-secrets and test-runner, the
drover-tools action that installs drover, OpenTofu and talosctl from their
releases with their SHA-256 sums checked, the actionlint and Renovate
configuration, and the in-cluster runner manifests under
kubernetes/apps/<namespace> (Flux, ARC, External Secrets, RBAC, a Talos
ServiceAccount).

Every value is checked before anything is written (exit 2 otherwise): names
are DNS labels, the repository an https URL, versions releases; values
reach the workflows' shell only through env:. Files that exist with other
content are left alone unless --force; init prints what it wrote and the
secrets you must create.`,
		Example: `  drover init --config drover.yaml --repo-url https://github.com/prox-ops/infrastructure --output .`,
		Args:    noArgs,
		RunE: func(*cobra.Command, []string) error {
			if f.repoURL == "" || f.output == "" {
				return usage(errors.New("--repo-url and --output are required"))
			}
			src := sourceFlags{configPath: f.config}
			cfg, err := src.loadConfig(s)
			if err != nil {
				return err
			}
			if f.droverVersion == "" {
				if !strings.HasPrefix(Version, "v") {
					return usage(fmt.Errorf("this drover is a development build (%s): pass --drover-version vX.Y.Z, the release the workflows install", Version))
				}
				f.droverVersion = Version
			}
			files, err := kit.Render(kit.Values{
				Cluster: cfg.Cluster.Name, RepoURL: f.repoURL, ScaleSet: f.scaleSet, Namespace: f.namespace,
				VariablesFile: cfg.Versions.VariablesFile, SnapshotDir: cfg.Talos.EtcdSnapshotDir,
				DroverVersion: f.droverVersion, DroverRepo: f.droverRepo, TofuVersion: f.tofuVersion, TalosctlVersion: f.talosctlVersion,
				RunnerImage: f.runnerImage, ApprovalEnvironment: f.environment,
				CephHooks: usesHooksAccount(cfg.Hooks),
			})
			var ie *kit.InvalidError
			if errors.As(err, &ie) {
				return usage(err)
			}
			if err != nil {
				return err
			}
			written, err := kit.Write(f.output, files, f.force)
			var ce *kit.ChangedError
			var ue *kit.UnsafePathError
			var we *kit.UnwritableError
			if errors.As(err, &ce) || errors.As(err, &ue) || errors.As(err, &we) {
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
			fmt.Fprintln(s.Out, "  - Talos API access for the runner pod (its talos.dev ServiceAccount), on every control-plane node:\n"+
				"    talosctl -n <control-plane IPs> patch machineconfig --patch @talos-api-access.yaml, with:")
			for _, l := range strings.Split(strings.TrimRight(kit.TalosAccessPatch(f.namespace), "\n"), "\n") {
				fmt.Fprintln(s.Out, "      "+l)
			}
			fmt.Fprintln(s.Out, "    (or set the TALOSCONFIG secret: it wins over the ServiceAccount's talosconfig)")
			if len(cfg.Talos.EtcdSnapshotRecipients) == 0 {
				fmt.Fprintln(s.Out, "  - an age key pair for the etcd snapshots (age-keygen -o etcd-snapshots.key; keep it out of the repository):\n"+
					"    its public key (age1...) in talos.etcdSnapshotRecipients of "+f.config+". Until then the workflows keep no\n"+
					"    etcd snapshot: one holds every Secret of the cluster, and only encrypted ones are uploaded")
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
	fs.StringVar(&f.droverVersion, "drover-version", "", "the drover release the workflows install (default: this drover's version, when it is a release)")
	fs.StringVar(&f.droverRepo, "drover-repo", kit.DefaultDroverRepo, "the GitHub repository drover's releases are downloaded from")
	fs.StringVar(&f.tofuVersion, "tofu-version", kit.DefaultTofuVersion, "the OpenTofu release the workflows install")
	fs.StringVar(&f.talosctlVersion, "talosctl-version", kit.DefaultTalosctlVersion, "the talosctl release the workflows install")
	fs.StringVar(&f.runnerImage, "runner-image", kit.DefaultRunnerImage, "the runner scale set's image, pinned to a release")
	fs.StringVar(&f.environment, "approval-environment", "cluster-upgrade-approval", "GitHub Environment whose reviewers approve major upgrades")
	return cmd
}

// usesHooksAccount says a configured hook runs as the kit's drover-hooks
// ServiceAccount: the kit then ships it with its RBAC.
func usesHooksAccount(h config.Hooks) bool {
	for _, hk := range h.Points() {
		if hk.ServiceAccountName == kit.HooksServiceAccount {
			return true
		}
	}
	return false
}
