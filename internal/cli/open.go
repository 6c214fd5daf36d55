package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"

	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/run"
	"github.com/prox-ops/drover/internal/talos"
)

// targetFlags are --only and --canary: which nodes a plan or run takes.
type targetFlags struct {
	only   []string
	canary int
}

func (f *targetFlags) register(fs *pflag.FlagSet) {
	fs.Var((*nodeList)(&f.only), "only", "upgrade only these nodes (NODE[,NODE...]), under the same rules: control plane first and one at a time, host-aware batches, gates, rollback; the others are skipped")
	fs.IntVar(&f.canary, "canary", 0, "upgrade N canary workers first (the first N of rollout.canary, else of the plan), then pause: exit 5, the journal says paused, --resume does the rest")
}

// nodeList is --only's value: node names, comma-separated or repeated.
// An empty name (--only ”, a stray comma) is refused, never read as
// "every node".
type nodeList []string

func (l *nodeList) Set(v string) error {
	for _, n := range strings.Split(v, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			if strings.TrimSpace(v) == "" {
				return errors.New("names no node: give at least one node name")
			}
			return fmt.Errorf("has an empty node name in %q (a stray comma?)", v)
		}
		*l = append(*l, n)
	}
	return nil
}

func (l *nodeList) String() string { return strings.Join(*l, ",") }

func (l *nodeList) Type() string { return "nodes" }

// open opens where the command runs: the lab, or the cluster the flags
// name. log is told what the lab's simulated infrastructure does; tfOut
// receives Terraform's output.
func (f *sourceFlags) open(ctx context.Context, s Streams, cfg *config.Config, log func(node, msg string), tfOut io.Writer) (run.Site, error) {
	faults, err := f.faults()
	if err != nil {
		return nil, err
	}
	if err := f.checkClient(); err != nil {
		return nil, err
	}
	if !f.lab {
		return run.OpenCluster(ctx, cfg, run.ClusterSpec{
			Access: f.accessFor(s, cfg), Talos: talos.ConfigSource{Flag: f.talosconfig, Getenv: s.Getenv, Home: s.Home},
			RepoDir: f.repoDir, TerraformOut: tfOut, TalosLog: func(msg string) {
				if log != nil {
					log("", msg)
					return
				}
				fmt.Fprintf(s.Err, "drover: %s\n", msg)
			},
		})
	}
	start, err := f.labStart()
	if err != nil {
		return nil, err
	}
	return run.OpenLab(cfg, run.LabSpec{Start: start, Faults: faults, FaultsNow: f.faultsNow, StatePath: f.labState, CrashAt: f.crashAt,
		Crash: s.Crash, PodsPerNode: f.podsPerNode(), Log: log, RunnerNode: f.labRunner})
}

// planFor loads the configuration, reads the claim, opens the site and
// plans. The caller closes the Planned.
func (f *sourceFlags) planFor(ctx context.Context, s Streams, o planOptions) (*run.Planned, error) {
	if _, err := f.faults(); err != nil {
		return nil, err
	}
	cfg, err := f.loadConfig(s)
	if err != nil {
		return nil, err
	}
	s.addSecrets(cfg.Secrets.Env)
	claim, err := f.claim(ctx, cfg)
	if err != nil {
		return nil, err
	}
	tfOut := o.tfOut
	if tfOut == nil {
		tfOut = s.Err
	}
	site, err := f.open(ctx, s, cfg, o.log, tfOut)
	if err != nil {
		return nil, err
	}
	p, err := run.Plan(ctx, site, run.Inputs{Config: cfg, ConfigPath: f.configPath, Claim: claim, Only: o.target.only, Canary: o.target.canary,
		AllowSkipMinor: f.skipMinor, Resume: o.resume, LockNamespace: o.lockNamespace}, s.env())
	if err != nil {
		site.Close()
		return nil, err
	}
	return p, nil
}

// planOptions shape planFor for the command at hand.
type planOptions struct {
	target targetFlags
	// resume, when set, continues the run of a journal.
	resume        *run.ResumeInputs
	lockNamespace string
	// log is told what the lab's simulated infrastructure does.
	log func(node, msg string)
	// tfOut receives Terraform's output (default: stderr).
	tfOut io.Writer
}
