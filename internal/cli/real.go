package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/client-go/dynamic"

	"github.com/prox-ops/drover/internal/assemble"
	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/kube"
	"github.com/prox-ops/drover/internal/objstore"
	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/talos"
	"github.com/prox-ops/drover/internal/terraform"
	"github.com/prox-ops/drover/internal/version"
)

// realAdapters are a real cluster's side of the engine: client-go for
// Kubernetes, the Talos API for pets, versions and etcd, Terraform for
// cattle, and talosctl for the Kubernetes phase of a pets run.
//
// ctx is the run's: it is done on SIGINT/SIGTERM or when the run lock is
// lost, and a running Terraform command is then interrupted (it stops
// gracefully and releases the state lock). j is the run's journal, where
// each Terraform command that takes the lock is written down.
func (u *upgrade) realAdapters(ctx context.Context, j rollout.Journal) (assemble.Adapters, error) {
	p, s := u.p, u.s
	if p.kube == nil {
		return assemble.Adapters{}, usage(fmt.Errorf("%w; an upgrade needs the cluster (rehearse with --lab)", kube.ErrNoCluster))
	}
	if p.talos == nil {
		return assemble.Adapters{}, usage(talos.ErrNoTalosconfig)
	}
	cfg := p.cfg
	log := u.con.labLog
	log("", "talosconfig from "+p.talosConf.Source)
	dyn, err := dynamic.NewForConfig(p.rest)
	if err != nil {
		return assemble.Adapters{}, usage(err)
	}
	api := assemble.TalosAPI(*cfg, p.talos, clock.Real{}, log)
	alerts, err := alertSource(cfg)
	if err != nil {
		return assemble.Adapters{}, err
	}
	a := assemble.Adapters{
		Kube: p.kube, Dynamic: dyn, Clock: clock.Real{}, Etcd: talos.Etcd{API: api}, Talos: api,
		Upgrader: api, Network: api, Namespace: s.getenv("POD_NAMESPACE"), Alerts: alerts, Log: log,
	}
	if up := cfg.Talos.EtcdSnapshotUpload; up.URL != "" {
		uploader, err := objstore.New(up, s.getenv)
		if err != nil {
			return a, usage(err)
		}
		a.SnapshotUpload = uploader
		a.Preflights = append(a.Preflights, snapshotBucket{uploader})
		log("", "etcd snapshots are uploaded to "+up.URL)
	}
	switch {
	case p.plan.Strategy == version.Cattle:
		tf, err := p.terraform(ctx, &u.f.src, Streams{Err: u.progress, Getenv: s.Getenv})
		if err != nil {
			return a, err
		}
		log("", fmt.Sprintf("cattle through %s %s in %s", tf.Binary, tf.Version, cfg.Terraform.WorkingDir))
		tf.Watch(ctx, func(c context.Context, rec terraform.LockRecord) {
			if err := j.Record(c, rec.Entry(u.runID, time.Now().UTC())); err != nil {
				log("", "journal: "+err.Error())
			}
		})
		a.Replacer = tf
		pf := terraform.Preflight{Runner: tf, At: p.change.From}
		if p.resume != nil {
			pf.Own = terraform.LockRecords(p.resume.Terraform)
		}
		a.Preflights = append(a.Preflights, pf)
	case p.plan.KubernetesPhase:
		cps := cfg.ControlPlaneNodes()
		if len(cps) == 0 {
			return a, errors.New("no control-plane node for talosctl upgrade-k8s")
		}
		k8s := &talos.UpgradeK8s{Talosconfig: p.talosConf.Path, Node: cps[0].IP, Out: masker(cfg, s).NewWriter(u.progress, "[talosctl] ")}
		a.Kubernetes = k8s
		a.Preflights = append(a.Preflights, k8s)
	}
	return a, nil
}

// snapshotBucket is the preflight of talos.etcdSnapshotUpload: the bucket
// is there and the credentials reach it, before anything changes.
type snapshotBucket struct{ u *objstore.Uploader }

func (snapshotBucket) Name() string { return "etcd snapshot bucket" }

func (b snapshotBucket) Check(ctx context.Context, _ plan.Plan) error { return b.u.Check(ctx) }

// assembleEngine assembles the engine for the prepared run.
func assembleEngine(p *prepared, a assemble.Adapters) *rollout.Engine {
	return assemble.Engine(*p.cfg, a)
}
