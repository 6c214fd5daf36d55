package run

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/siderolabs/talos/pkg/machinery/client"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"

	"github.com/prox-ops/drover/internal/assemble"
	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/observe"
	"github.com/prox-ops/drover/internal/terraform"
	"github.com/prox-ops/drover/internal/testenv"
	"github.com/prox-ops/drover/internal/version"
)

// TestTheLabAndARealClusterRunTheSameEngine: for one configuration and one
// plan, the engine an upgrade runs over the lab and the one it runs over a
// real cluster are assembled by the same code with the same settings
// (policy, preflights, drain, guard, health, the run's options); only the
// adapters differ, and the real cluster's own preflight (the Terraform
// state) is the only extra check.
//
// The real cluster's side is the production site with its clients built
// for a cluster that is never dialled: a fake clientset (no kube-apiserver
// is needed to assemble), the real Talos client over the in-test Talos API,
// and a Terraform runner that is never run.
func TestTheLabAndARealClusterRunTheSameEngine(t *testing.T) {
	ctx := context.Background()
	cfg, err := config.Load("../../examples/prox-ops/drover.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ls, err := OpenLab(cfg, LabSpec{})
	if err != nil {
		t.Fatal(err)
	}
	defer ls.Close()
	planned, err := Plan(ctx, ls, Inputs{Config: cfg, Claim: observe.Claim{To: version.Pair{Talos: version.MustParse("v1.12.0")}}}, Env{})
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Yes: true, SkipDrainPreflight: true, ForceWindow: true}
	lu := NewUpgrade(planned, opts)
	labEngine, release, err := lu.engine(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer release()

	talosconfig := filepath.Join(t.TempDir(), "talosconfig")
	if err := os.WriteFile(talosconfig, testenv.NewTalosAPI().Serve(t), 0o600); err != nil {
		t.Fatal(err)
	}
	tc, err := client.New(ctx, client.WithConfigFromFile(talosconfig))
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	cs := &clusterSite{cfg: cfg, kube: fake.NewClientset(), rest: &rest.Config{Host: "https://127.0.0.1:1"}, talos: tc, tf: &terraform.Runner{}}
	real := *planned
	real.Site = cs
	ru := NewUpgrade(&real, opts)
	ru.runID = lu.runID
	realEngine, release, err := ru.engine(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer release()

	got, want := assemble.Describe(realEngine), assemble.Describe(labEngine)
	if !slices.Equal(got.Preflights, append(slices.Clone(want.Preflights), terraform.Preflight{}.Name())) {
		t.Fatalf("preflights: real %v, lab %v: the real cluster adds only the Terraform state's", got.Preflights, want.Preflights)
	}
	got.Preflights = want.Preflights
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("the engines differ:\nreal %+v\nlab  %+v", got, want)
	}
	if want.Policy.DrainAttempts != cfg.Rollout.DrainAttempts || want.Guard.Timeout != cfg.Rollout.ReadyTimeout.Duration || len(want.Guard.ControlPlane) != 3 {
		t.Fatalf("the settings do not come from the configuration: %+v", want)
	}
	if !slices.Equal(want.Skipped, []string{"drain preflight"}) || want.Window || want.Header.To != "Talos v1.12.0, Kubernetes v1.34.1" {
		t.Fatalf("the run's options did not reach the engine: %+v", want)
	}
}
