package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/kube"
	"github.com/prox-ops/drover/internal/lab"
	"github.com/prox-ops/drover/internal/observe"
	"github.com/prox-ops/drover/internal/version"
)

// sourceFlags say which cluster and which version change a command is about.
type sourceFlags struct {
	configPath  string
	lab         bool
	labFaults   []string
	fromTalos   string
	toTalos     string
	fromKube    string
	toKube      string
	varsBefore  string
	varsAfter   string
	gitRange    string
	repoDir     string
	kubeconfig  string
	kubeCtx     string
	skipMinor   bool
	faultsNow   bool
	labState    string
	crashAt     string
	labTalos    string
	labKube     string
	talosconfig string
	// labRunner is where the lab runs drover's runner pod.
	labRunner string
	// kubeQPS, kubeBurst and requestTimeout shape the cluster client.
	kubeQPS        float32
	kubeBurst      int
	requestTimeout time.Duration
	// labNodes, labCPs, labHosts, labPods and labWorkers shape a
	// generated lab.
	labNodes, labCPs, labHosts, labPods, labWorkers int
	// flags are the registered flags, to tell "--lab-nodes 0" from unset.
	flags *pflag.FlagSet
}

func (f *sourceFlags) register(fs *pflag.FlagSet) {
	fs.StringVarP(&f.configPath, "config", "c", "", "drover.yaml describing the cluster (see examples/prox-ops/drover.yaml)")
	fs.BoolVar(&f.lab, "lab", false, "use the embedded lab: a simulated prox-ops cluster (15 nodes, Talos v1.11.3, Kubernetes v1.34.1) on a virtual clock; with --config, the lab takes that inventory")
	fs.StringArrayVar(&f.labFaults, "lab-fault", nil, "inject a lab fault, NODE=KIND, repeatable; KIND is one of "+labFaultKinds()+" (docs/lab.md)")
	fs.StringVar(&f.labState, "lab-state", "", "keep the lab cluster in this file between runs (a crashed rehearsal can then be resumed)")
	f.registerLabShape(fs)
	fs.StringVar(&f.labRunner, "lab-runner-node", "", "with --lab, the node drover's runner pod runs on, as the kit's runner would inside the cluster (default: the worker the lab's scheduler picks; \"none\" for a run from outside the cluster)")
	fs.StringVar(&f.crashAt, "lab-crash-at", "", "rehearse a crash: kill drover abruptly right after the journal records NODE:STEP (e.g. k8s-work-2:destroy)")
	fs.BoolVar(&f.faultsNow, "lab-faults-now", false, "make the lab's health faults (dns-down, ceph-warn, flux-failed, gpu-lost, crashloop) show from the start, to rehearse a cluster that is already unhealthy")
	fs.StringVar(&f.fromTalos, "from-talos", "", "the Talos version the cluster runs now, as a cross-check: drover reads what each node runs and stops (exit 4) if this disagrees (default: from --vars-before/--git-range, if given)")
	fs.StringVar(&f.toTalos, "to-talos", "", "target Talos version (default: read from --vars-after/--git-range)")
	fs.StringVar(&f.fromKube, "from-kubernetes", "", "the Kubernetes version the cluster runs now, as a cross-check like --from-talos")
	fs.StringVar(&f.labTalos, "lab-talos", lab.DefaultTalos.String(), "with --lab, the Talos version the lab's nodes start at")
	fs.StringVar(&f.labKube, "lab-kubernetes", lab.DefaultKubernetes.String(), "with --lab, the Kubernetes version the lab's nodes start at")
	fs.StringVar(&f.toKube, "to-kubernetes", "", "target Kubernetes version (default: unchanged)")
	fs.StringVar(&f.varsBefore, "vars-before", "", "the Terraform variables file before the version bump")
	fs.StringVar(&f.varsAfter, "vars-after", "", "the Terraform variables file after the version bump")
	fs.StringVar(&f.gitRange, "git-range", "", "read the variables file (versions.variablesFile) at BASE and HEAD of a git range BASE..HEAD, e.g. the merged PR's base and merge commits")
	fs.StringVar(&f.repoDir, "repo", ".", "git repository for --git-range")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file; without it drover looks, like kubectl, at $KUBECONFIG, then ~/.kube/config, then the in-cluster service account")
	f.registerClient(fs)
	fs.BoolVar(&f.skipMinor, "allow-skip-minor", false, "allow a Talos or Kubernetes upgrade across more than one minor (1.11 -> 1.13); by default each minor is its own run")
	fs.StringVar(&f.kubeCtx, "context", "", "kubeconfig context to use (default: the current context)")
	fs.StringVar(&f.talosconfig, "talosconfig", "", "talosconfig file; without it drover uses, like talosctl, TALOSCONFIG (a path or the file in base64), then ~/.talos/config, then the Talos ServiceAccount mount")
}

// registerClient registers the cluster client's flags, kubectl's names.
func (f *sourceFlags) registerClient(fs *pflag.FlagSet) {
	fs.Float32Var(&f.kubeQPS, "kube-qps", 0, fmt.Sprintf("requests per second to the Kubernetes API (default kubeClient.qps, else %d, as kubectl)", kube.DefaultQPS))
	fs.IntVar(&f.kubeBurst, "kube-burst", 0, fmt.Sprintf("burst of requests to the Kubernetes API (default kubeClient.burst, else %d, as kubectl)", kube.DefaultBurst))
	fs.DurationVar(&f.requestTimeout, "request-timeout", 0, fmt.Sprintf("how long one Kubernetes API request may take before drover gives up on it (default kubeClient.requestTimeout, else %s); watches are not bounded", kube.DefaultRequestTimeout))
}

// checkClient refuses client flags that make no sense.
func (f *sourceFlags) checkClient() error {
	switch {
	case f.kubeQPS < 0:
		return usage(fmt.Errorf("--kube-qps %g: want a positive rate", f.kubeQPS))
	case f.kubeBurst < 0:
		return usage(fmt.Errorf("--kube-burst %d: want a positive burst", f.kubeBurst))
	case f.requestTimeout < 0:
		return usage(fmt.Errorf("--request-timeout %s: want a positive duration", f.requestTimeout))
	case f.kubeQPS > 0 && f.kubeBurst > 0 && float32(f.kubeBurst) < f.kubeQPS:
		return usage(fmt.Errorf("--kube-burst %d is below --kube-qps %g: the burst must hold at least a second of requests", f.kubeBurst, f.kubeQPS))
	}
	return nil
}

// access is the cluster access the flags describe.
func (f *sourceFlags) access(s Streams) kube.Access {
	getenv := s.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	errOut := s.Err
	return kube.Access{Kubeconfig: f.kubeconfig, Context: f.kubeCtx, Getenv: getenv, Home: s.Home, InCluster: s.InCluster,
		QPS: f.kubeQPS, Burst: f.kubeBurst, RequestTimeout: f.requestTimeout,
		Warn: func(w string) {
			if errOut != nil {
				fmt.Fprintf(errOut, "drover: warning: the API server says: %s\n", w)
			}
		}}
}

// accessFor is the cluster access for cfg: the flags win over its
// kubeClient settings.
func (f *sourceFlags) accessFor(s Streams, cfg *config.Config) kube.Access {
	a := f.access(s)
	if cfg == nil {
		return a
	}
	k := cfg.KubeClient
	if a.QPS == 0 {
		a.QPS = k.QPS
	}
	if a.Burst == 0 {
		a.Burst = k.Burst
	}
	if a.RequestTimeout == 0 {
		a.RequestTimeout = k.RequestTimeout.Duration
	}
	return a
}

// loadConfig returns the configuration: --config, or the lab's prox-ops
// inventory with --lab.
func (f *sourceFlags) loadConfig(s Streams) (*config.Config, error) {
	switch {
	case (f.labCPs != 0 || f.labHosts != 0 || f.labWorkers != 0) && f.labNodes == 0:
		return nil, usage(errors.New("--lab-control-planes, --lab-hosts and --lab-parallel-workers shape a generated lab: they need --lab-nodes"))
	case f.labNodes != 0 && !f.lab:
		return nil, usage(errors.New("--lab-nodes generates a lab inventory: it needs --lab"))
	case f.labNodes != 0 && f.configPath != "":
		return nil, usage(errors.New("--lab-nodes generates the inventory: leave out --config, or leave out --lab-nodes to rehearse the configured one"))
	case f.labNodes < 0 || f.labNodes > 5000 || f.labNodes == 0 && f.flags != nil && f.flags.Changed("lab-nodes"):
		return nil, usage(fmt.Errorf("--lab-nodes %d: want 1 to 5000", f.labNodes))
	case f.labNodes > 0 && (f.labCPs < 0 || f.labCPs > f.labNodes || f.labHosts < 0):
		return nil, usage(fmt.Errorf("--lab-control-planes %d, --lab-hosts %d: want 0 (derived) or up to --lab-nodes control-plane nodes, and 0 or more hosts", f.labCPs, f.labHosts))
	case f.labWorkers < 0:
		return nil, usage(fmt.Errorf("--lab-parallel-workers %d: want 1 or more (0 keeps the default, 1)", f.labWorkers))
	case f.labNodes > 0:
		c := lab.GeneratedConfig(f.labNodes, f.labCPs, f.labHosts)
		if f.labWorkers > 0 {
			c.Rollout.MaxParallelWorkers = f.labWorkers
		}
		return &c, nil
	case f.configPath != "":
		cfg, err := config.Load(f.configPath)
		if err != nil {
			return nil, err
		}
		s.learnConfig(cfg)
		if err := cfg.URLsFromEnv(f.configPath, s.getenv); err != nil {
			return nil, err
		}
		return cfg, nil
	case f.lab:
		c := lab.DefaultConfig()
		return &c, nil
	}
	return nil, usage(errors.New("no cluster given: pass --config drover.yaml, or --lab to use the embedded lab"))
}

// claim is what the version flags and the variables file say: where the
// cluster stands (a cross-check, since drover reads that from the nodes)
// and where it should go. A From left zero was not claimed.
func (f *sourceFlags) claim(ctx context.Context, cfg *config.Config) (observe.Claim, error) {
	allowPre := cfg.Versions.AllowPrerelease
	var c observe.Claim
	names := version.VariableNames{Talos: cfg.Versions.TalosVariable, Kubernetes: cfg.Versions.KubernetesVariable}
	switch {
	case (f.varsBefore == "") != (f.varsAfter == ""):
		return c, usage(errors.New("--vars-before and --vars-after go together"))
	case f.varsBefore != "" && f.gitRange != "":
		return c, usage(errors.New("use either --vars-before/--vars-after or --git-range, not both"))
	case f.varsBefore != "":
		ch, err := version.ChangeFromSources(version.NewFileSource(f.varsBefore, os.ReadFile), version.NewFileSource(f.varsAfter, os.ReadFile), names, allowPre)
		if err != nil {
			return c, usage(err)
		}
		c.From, c.To, c.Source = ch.From, ch.To, "--vars-before "+f.varsBefore
	case f.gitRange != "":
		base, head, err := version.ParseRange(f.gitRange)
		if err != nil {
			return c, usage(fmt.Errorf("--git-range: %w", err))
		}
		path := cfg.Versions.VariablesFile
		ch, err := version.ChangeFromSources(
			version.GitSource{Ctx: ctx, Dir: f.repoDir, Rev: base, Path: path},
			version.GitSource{Ctx: ctx, Dir: f.repoDir, Rev: head, Path: path}, names, allowPre)
		if err != nil {
			return c, usage(err)
		}
		c.From, c.To, c.Source = ch.From, ch.To, path+" at "+base
	}
	for _, o := range []struct {
		flag, val string
		dst       *version.Version
	}{
		{"--from-talos", f.fromTalos, &c.From.Talos},
		{"--to-talos", f.toTalos, &c.To.Talos},
		{"--from-kubernetes", f.fromKube, &c.From.Kubernetes},
		{"--to-kubernetes", f.toKube, &c.To.Kubernetes},
	} {
		if o.val == "" {
			continue
		}
		v, err := version.Parse(o.val, allowPre)
		if err != nil {
			return c, usage(fmt.Errorf("%s: %w", o.flag, err))
		}
		*o.dst = v
		if strings.HasPrefix(o.flag, "--from") {
			c.Source = o.flag
		}
	}
	if c.To.Talos.IsZero() && c.To.Kubernetes.IsZero() {
		return c, usage(errors.New("no target version: pass --to-talos (and/or --to-kubernetes), --vars-before/--vars-after or --git-range"))
	}
	return c, nil
}

// clientset reaches the cluster the flags name (kubectl's order).
func (f *sourceFlags) clientset(s Streams) (kubernetes.Interface, *rest.Config, error) {
	if err := f.checkClient(); err != nil {
		return nil, nil, err
	}
	rc, _, err := f.access(s).RESTConfig()
	if err != nil {
		return nil, nil, usage(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, nil, usage(err)
	}
	return cs, rc, nil
}
