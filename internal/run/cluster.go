package run

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/client"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/prox-ops/drover/internal/assemble"
	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/health"
	"github.com/prox-ops/drover/internal/kube"
	"github.com/prox-ops/drover/internal/objstore"
	"github.com/prox-ops/drover/internal/observe"
	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/talos"
	"github.com/prox-ops/drover/internal/terraform"
	"github.com/prox-ops/drover/internal/version"
)

// ClusterSpec says how to reach a real cluster.
type ClusterSpec struct {
	// Access is the Kubernetes access, resolved like kubectl's.
	Access kube.Access
	// Talos finds the talosconfig, like talosctl.
	Talos talos.ConfigSource
	// RepoDir is where terraform.workingDir is relative to.
	RepoDir string
	// TerraformOut receives Terraform's output, masked and prefixed.
	TerraformOut io.Writer
	// TalosLog is told when a Talos API endpoint does not answer.
	TalosLog func(msg string)
}

// clusterSite is a real cluster: client-go, the Talos API, Terraform.
type clusterSite struct {
	spec   ClusterSpec
	cfg    *config.Config
	source string
	kube   kubernetes.Interface
	rest   *rest.Config
	// talos is the Talos API client, when a talosconfig was found.
	talos     *client.Client
	talosConf talos.Resolved
	reader    *observe.Reader
	// api is the Talos API adapter, when a talosconfig was found.
	api *talos.API
	// tf is the Terraform runner, started once when first needed.
	tf *terraform.Runner
}

// OpenCluster reaches the cluster the spec names. Without any access (and
// none asked for explicitly) the site has no client: a plan is then made
// from the claimed versions alone.
func OpenCluster(ctx context.Context, cfg *config.Config, spec ClusterSpec) (Site, error) {
	s := &clusterSite{spec: spec, cfg: cfg}
	rc, from, err := spec.Access.RESTConfig()
	switch {
	case errors.Is(err, kube.ErrNoCluster) && spec.Access.Kubeconfig == "" && spec.Access.Context == "":
		s.source = "none (no cluster access: every node is assumed at the claimed version)"
		return s, nil
	case err != nil:
		return nil, Usage(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, Usage(err)
	}
	s.kube, s.rest, s.source = cs, rc, from
	s.reader = &observe.Reader{Client: cs}
	tc, err := spec.Talos.Resolve()
	if err != nil {
		// An upgrade stops later, before any change, for want of it.
		s.source += " (Node objects; no talosconfig, so the Talos API was not asked)"
		return s, nil
	}
	s.talosConf = tc
	if s.talos, err = talos.NewClient(ctx, tc.Path, talos.Bounds{Log: spec.TalosLog}); err != nil {
		tc.Cleanup()
		return nil, Usage(fmt.Errorf("talosconfig from %s: %w", tc.Source, err))
	}
	s.api = assemble.TalosAPI(*cfg, s.talos, clock.Real{}, nil)
	s.reader.Talos = s.api
	return s, nil
}

func (s *clusterSite) Source() string { return s.source }

// Endpoint is the API server's address, named when it cannot be read.
func (s *clusterSite) Endpoint() string {
	if s.rest == nil {
		return ""
	}
	return s.rest.Host
}

func (s *clusterSite) Client() kubernetes.Interface { return s.kube }
func (s *clusterSite) Clock() clock.Clock           { return clock.Real{} }
func (s *clusterSite) Versions() *observe.Reader    { return s.reader }
func (s *clusterSite) Stats() *LabStats             { return nil }

// Images reads each node's image through the Talos API.
func (s *clusterSite) Images() rollout.ImageReader {
	if s.api == nil {
		return nil
	}
	return s.api
}

// Self finds drover's node from NODE_NAME, else from its own pod.
func (s *clusterSite) Self(ctx context.Context, env Env) (Self, error) {
	return findSelf(ctx, s.kube, env.Getenv)
}
func (s *clusterSite) Finished(Env) []string { return nil }

func (s *clusterSite) Defaults() Defaults {
	return Defaults{Journal: "drover-journal.jsonl", Report: "drover-report.json"}
}

func (s *clusterSite) Journal(j rollout.Journal, _ *Planned) rollout.Journal { return j }

func (s *clusterSite) EventsClient() kubernetes.Interface { return s.ownClient() }
func (s *clusterSite) LockClient() kubernetes.Interface   { return s.ownClient() }

// ownClient is a client with a rate limiter of its own, on the same
// access and rates as the run's.
func (s *clusterSite) ownClient() kubernetes.Interface {
	if s.rest == nil {
		return nil
	}
	kc, err := kubernetes.NewForConfig(rest.CopyConfig(s.rest))
	if err != nil {
		return nil
	}
	return kc
}

func (s *clusterSite) Close() {
	if s.talos != nil {
		_ = s.talos.Close()
	}
	if s.talosConf.Cleanup != nil {
		s.talosConf.Cleanup()
	}
}

// CompleteInventory fills the Proxmox hosts and VM ids the configuration
// leaves empty from the Terraform state.
func (s *clusterSite) CompleteInventory(ctx context.Context, cfg *config.Config, change version.Change, env Env) (map[string]string, error) {
	missing := false
	for _, n := range cfg.Nodes {
		if n.ProxmoxHost == "" || n.VMID == 0 {
			missing = true
		}
	}
	if !missing {
		return nil, nil
	}
	r, err := s.terraform(ctx, change, env)
	if err != nil {
		return nil, err
	}
	found, err := r.Discover(ctx, cfg.Nodes)
	if err != nil {
		return nil, fmt.Errorf("inventory discovery: %w", err)
	}
	var sources map[string]string
	cfg.Nodes, sources = terraform.FillInventory(cfg.Nodes, found)
	return sources, nil
}

// terraform starts (once) the Terraform runner in the configuration's
// working directory, relative to the repository.
func (s *clusterSite) terraform(ctx context.Context, change version.Change, env Env) (*terraform.Runner, error) {
	if s.tf != nil {
		return s.tf, nil
	}
	cfg := s.cfg
	r, err := terraform.New(ctx, terraform.Options{
		Settings: cfg.Terraform, RepoRoot: s.spec.RepoDir,
		Vars:   version.VariableNames{Talos: cfg.Versions.TalosVariable, Kubernetes: cfg.Versions.KubernetesVariable},
		Change: change, Out: s.spec.TerraformOut, Masker: env.masker(cfg.Secrets.Env),
	})
	if err != nil {
		return nil, Usage(err)
	}
	if err := r.Init(ctx); err != nil {
		return nil, &rollout.BlockedError{Reason: "terraform init", Err: err}
	}
	s.tf = r
	return r, nil
}

// TerraformRunner is the Terraform runner, when the inventory was
// completed from its state (for plan's output).
func (s *clusterSite) TerraformRunner() *terraform.Runner { return s.tf }

// BuildTemplates applies the templates at the target with Terraform; a
// signal stops Terraform gracefully, releasing its lock.
func (s *clusterSite) BuildTemplates(ctx context.Context, p *Planned) (bool, error) {
	if s.cfg.Terraform.TemplatesAddress == "" {
		return false, Usage(errors.New("terraform.templatesAddress is not set: drover does not know which Terraform resources are the templates (see examples/prox-ops/drover.yaml)"))
	}
	tf, err := s.terraform(ctx, p.Change, p.env)
	if err != nil {
		return false, err
	}
	tf.Watch(ctx, func(_ context.Context, rec terraform.LockRecord) {
		if rec.Status == terraform.LockLeft {
			p.env.warn("Terraform was stopped holding the state lock %s: once no Terraform runs, release it with terraform force-unlock %s in %s", rec.LockID, rec.LockID, s.cfg.Terraform.WorkingDir)
		}
	})
	built, err := tf.BuildTemplates(ctx, p.Change.To)
	if err != nil {
		if ctx.Err() != nil {
			return false, &rollout.InterruptedError{Cause: err}
		}
		return false, fmt.Errorf("build the Talos %s templates: %w", p.Change.To.Talos, err)
	}
	return built, nil
}

// Adapters are a real cluster's side of the engine: client-go for
// Kubernetes, the Talos API for pets, versions and etcd, Terraform for
// cattle, talosctl for the Kubernetes phase of a pets run, and the health
// gate reading through informers started once for the run.
//
// ctx is the run's: it is done on SIGINT/SIGTERM or when the run lock is
// lost, and a running Terraform command is then interrupted (it stops
// gracefully and releases the state lock). Each Terraform command that
// takes the lock is written to the run's journal.
func (s *clusterSite) Adapters(ctx context.Context, u *Upgrade) (assemble.Adapters, func(), error) {
	none := func() {}
	if s.kube == nil {
		return assemble.Adapters{}, none, Usage(fmt.Errorf("%w; an upgrade needs the cluster (rehearse with --lab)", kube.ErrNoCluster))
	}
	if s.talos == nil {
		return assemble.Adapters{}, none, Usage(talos.ErrNoTalosconfig)
	}
	cfg, p, env := s.cfg, u.planned, u.planned.env
	log := u.log
	log("", "talosconfig from "+s.talosConf.Source)
	dyn, err := dynamic.NewForConfig(s.rest)
	if err != nil {
		return assemble.Adapters{}, none, Usage(err)
	}
	api := assemble.TalosAPI(*cfg, s.talos, clock.Real{}, log)
	alerts, err := AlertSource(cfg)
	if err != nil {
		return assemble.Adapters{}, none, err
	}
	a := assemble.Adapters{
		Kube: s.kube, Dynamic: dyn, Clock: clock.Real{}, Etcd: talos.Etcd{API: api}, Talos: api,
		Upgrader: api, Network: api, Images: api, Namespace: env.getenv("POD_NAMESPACE"), Alerts: alerts, Log: log,
		Preflights: []rollout.Preflight{talos.ImageCheck{Talos: cfg.Talos, Registry: talos.RemoteRegistry{}, Puller: api, Log: log}},
	}
	if am, ok := alerts.(*health.Alertmanager); ok && len(cfg.Health.Alertmanager.Silences) > 0 {
		a.Silences = &health.Silences{AM: am, Matchers: cfg.Health.Alertmanager.Silences, RunID: u.runID, For: cfg.Health.Alertmanager.SilenceFor.Duration, Clock: clock.Real{}}
		log("", "each node's alerts are silenced in Alertmanager while it changes (health.alertmanager.silences)")
	}
	if up := cfg.Talos.EtcdSnapshotUpload; up.URL != "" {
		uploader, err := objstore.New(up, env.getenv)
		if err != nil {
			return a, none, Usage(err)
		}
		a.SnapshotUpload = uploader
		a.Preflights = append(a.Preflights, snapshotBucket{uploader})
		log("", "etcd snapshots are uploaded to "+up.URL)
	}
	switch {
	case p.Plan.Strategy == version.Cattle:
		tf, err := s.terraform(ctx, p.Change, env)
		if err != nil {
			return a, none, err
		}
		log("", fmt.Sprintf("cattle through %s %s in %s", tf.Binary, tf.Version, cfg.Terraform.WorkingDir))
		tf.Watch(ctx, func(c context.Context, rec terraform.LockRecord) {
			if err := u.journal.Record(c, rec.Entry(u.runID, time.Now().UTC())); err != nil {
				log("", "journal: "+err.Error())
			}
		})
		a.Replacer = tf
		pf := terraform.Preflight{Runner: tf, At: p.Change.From}
		if p.Resume != nil {
			pf.Own = terraform.LockRecords(p.Resume.Terraform)
		}
		a.Preflights = append(a.Preflights, pf)
	case p.Plan.KubernetesPhase:
		cps := cfg.ControlPlaneNodes()
		if len(cps) == 0 {
			return a, none, errors.New("no control-plane node for talosctl upgrade-k8s")
		}
		k8s := &talos.UpgradeK8s{Talosconfig: s.talosConf.Path, Node: cps[0].IP, Out: env.masker(cfg.Secrets.Env).NewWriter(u.progress, "[talosctl] ")}
		a.Kubernetes = k8s
		a.Preflights = append(a.Preflights, k8s)
	}
	// The gate reads through informers started once for the run. They
	// outlive a stop signal (a rollback still needs its gate) and stop when
	// the run ends.
	cctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	cache := health.NewCache(s.kube)
	if err := cache.Start(cctx, time.Minute); err != nil {
		stop()
		return a, none, fmt.Errorf("start the health gate's cache: %w", err)
	}
	a.Reader = cache
	return a, stop, nil
}

// Gate is the health gate over the cluster; its probe pods go to
// $POD_NAMESPACE (else health.probeNamespace).
func (s *clusterSite) Gate(env Env) (*health.Gate, error) {
	if s.kube == nil {
		return nil, Usage(kube.ErrNoCluster)
	}
	dyn, err := dynamic.NewForConfig(s.rest)
	if err != nil {
		return nil, Usage(err)
	}
	alerts, err := AlertSource(s.cfg)
	if err != nil {
		return nil, err
	}
	return assemble.Health(*s.cfg, assemble.Adapters{Kube: s.kube, Dynamic: dyn, Clock: clock.Real{}, Namespace: env.getenv("POD_NAMESPACE"), Alerts: alerts}), nil
}

// snapshotBucket is the preflight of talos.etcdSnapshotUpload: the bucket
// is there and the credentials reach it, before anything changes.
type snapshotBucket struct{ u *objstore.Uploader }

func (snapshotBucket) Name() string { return "etcd snapshot bucket" }

func (b snapshotBucket) Check(ctx context.Context, _ plan.Plan) error { return b.u.Check(ctx) }

// AlertSource is the Alertmanager of health.alertmanager.url, or nil.
func AlertSource(cfg *config.Config) (health.AlertSource, error) {
	if cfg.Health.Alertmanager.URL == "" {
		return nil, nil
	}
	am, err := health.NewAlertmanager(cfg.Health.Alertmanager.URL, nil)
	if err != nil {
		return nil, Usage(err)
	}
	return am, nil
}
