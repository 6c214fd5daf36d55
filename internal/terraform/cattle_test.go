package terraform

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prox-ops/drover/internal/assemble"
	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/health"
	"github.com/prox-ops/drover/internal/journal"
	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/talos"
	"github.com/prox-ops/drover/internal/testenv"
	"github.com/prox-ops/drover/internal/version"
)

var env *testenv.Env

func TestMain(m *testing.M) { os.Exit(testenv.Main(m, &env)) }

// TestCattleRunThroughTerraform: the engine upgrades the 5-node fixture
// through a real terraform/tofu binary, each node registering again in the
// real API server at the new version.
func TestCattleRunThroughTerraform(t *testing.T) {
	testenv.Require(t, env)
	f := newFixture(t)
	ctx := context.Background()
	ns := env.Namespace(t, "tf-cattle")
	k := testenv.NewKubelets(env.Client, ns)
	defer k.Close()
	cfg := config.Defaults()
	cfg.Nodes = fixtureNodes
	ta, etcd := talosEtcd(t, cfg)
	members := uint64(8001)
	// A control-plane VM that boots joins etcd as a new member.
	testenv.WatchVMs(t, f.vmDir, k, func(name, _ string) {
		if n, ok := cfg.NodeByName(name); ok && n.IsControlPlane() {
			members++
			ta.SetMember(n.IP, members)
		}
	})
	var names []string
	for _, n := range fixtureNodes {
		names = append(names, n.Name)
	}
	t.Cleanup(func() { env.DeleteNodes(names...) })
	kc := assemble.KubeClient(config.Defaults(), assemble.Adapters{Kube: env.Drover, Clock: clock.Real{}})
	testenv.Eventually(t, 20*time.Second, "the fixture's nodes to register", func() (bool, error) {
		for _, n := range names {
			if id, err := kc.Identity(ctx, n); err != nil || !id.Ready {
				return false, err
			}
		}
		return true, nil
	})
	env.Deployment(t, ns, "web", 3, false)
	env.PDB(t, ns, "web", 2)
	env.WaitReplicas(t, ns, "web", 3)
	env.PDBSettled(t, ns, "web", 1)

	var mu sync.Mutex
	minReady := 3
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if n, err := env.ReadyPods(ctx, ns, "web"); err == nil {
				mu.Lock()
				minReady = min(minReady, n)
				mu.Unlock()
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	r := f.runner(t, f.settings())
	p := plan.Build(plan.Input{Nodes: fixtureNodes, Strategy: version.Cattle, From: v1113, To: v1120, MaxParallelWorkers: 2})
	// The engine as the CLI assembles it: production's drain, polls and
	// etcd guard (etcd through the real Talos client, against the Talos
	// API server of the test, as the control plane's apid would serve
	// it); the configuration shortens only what an operator can.
	cfg.Health.Disable = withoutProbes.Disable
	cfg.Rollout.ControlPlaneSoak, cfg.Rollout.WorkerSoak, cfg.Rollout.HealthInterval = config.D(time.Second), config.D(time.Second), config.D(time.Second)
	cfg.Rollout.ReadyTimeout, cfg.Rollout.MaxParallelWorkers = config.D(time.Minute), 2
	cfg.Talos.EtcdSnapshotDir = t.TempDir()
	eng := assemble.Engine(cfg, assemble.Adapters{Kube: env.Drover, Clock: clock.Real{}, Replacer: r, Etcd: etcd,
		Preflights: []rollout.Preflight{Preflight{Runner: r, At: v1113}}},
		assemble.Run{Journal: &journal.Memory{}, RunID: "tf"})
	rep, err := eng.Run(ctx, p)
	close(stop)
	<-sampled
	if err != nil {
		t.Fatalf("run: %v\nterraform output:\n%s", err, f.out.String())
	}
	for _, n := range fixtureNodes {
		if got := f.vm(t, n.Name); got != "v1.12.0 v1.34.1" {
			t.Errorf("%s VM is %q after the run", n.Name, got)
		}
		if nr := rep.Node(n.Name); nr.Outcome != rollout.OutcomeUpgraded {
			t.Errorf("%s: %s %s", n.Name, nr.Outcome, nr.Reason)
		}
		id, err := kc.Identity(ctx, n.Name)
		if err != nil || id.OSImage != "Talos (v1.12.0)" || !id.Ready {
			t.Errorf("%s in the API after the run: %+v %v", n.Name, id, err)
		}
	}
	if minReady < 2 {
		t.Fatalf("web fell to %d Ready replicas; its budget says 2", minReady)
	}
	if strings.Contains(f.out.String(), canary) {
		t.Fatal("the canary secret leaked")
	}
	t.Logf("5-node cattle run through %s took %s", r.Binary, rep.Duration.Round(100*time.Millisecond))
}

// withoutProbes: the DNS and network probes and the GPU device plugin need
// a kubelet that runs containers, which this test's simulated kubelets do
// not; internal/health tests those checks on their own fixtures.
var withoutProbes = config.Health{Disable: []string{health.CheckDNS, health.CheckNetwork, health.CheckGPU}}

// talosEtcd serves the Talos API of cfg's control-plane nodes (the test's
// server, over mTLS, as their apids would) and returns the production etcd
// adapter over the real Talos client.
func talosEtcd(t *testing.T, cfg config.Config) (*testenv.TalosAPI, talos.EtcdAPI) {
	t.Helper()
	ta := testenv.NewTalosAPI()
	for i, n := range cfg.ControlPlaneNodes() {
		ta.Add(n.IP, n.Name, "v1.11.3", uint64(8001+i))
		if i == 0 {
			ta.SetLeader(uint64(8001 + i))
		}
	}
	path := filepath.Join(t.TempDir(), "talosconfig")
	if err := os.WriteFile(path, ta.Serve(t), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := talos.NewClient(context.Background(), path, talos.Bounds{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return ta, talos.Etcd{API: assemble.TalosAPI(cfg, c, clock.Real{}, nil)}
}
