package terraform

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/health"
	"github.com/prox-ops/drover/internal/journal"
	"github.com/prox-ops/drover/internal/kube"
	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/rollout"
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
	testenv.WatchVMs(t, f.vmDir, k, nil)
	var names []string
	for _, n := range fixtureNodes {
		names = append(names, n.Name)
	}
	t.Cleanup(func() { env.DeleteNodes(names...) })
	kc := &kube.Client{Client: env.Drover, Clock: clock.Real{}, EvictRetryDelay: 300 * time.Millisecond, PollInterval: 200 * time.Millisecond}
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
	eng := &rollout.Engine{
		Cluster: kc, Replacer: r, Health: &health.Gate{Client: env.Drover, Clock: clock.Real{}, Settings: withoutProbes},
		Journal: &journal.Memory{}, Clock: clock.Real{}, RunID: "tf",
		Preflights: []rollout.Preflight{Preflight{Runner: r, At: v1113}, kube.DrainPreflightCheck{Client: kc}},
		Policy: rollout.Policy{DrainTimeout: time.Minute, ReadyTimeout: 30 * time.Second, HealthTimeout: 30 * time.Second,
			HealthAttempts: 10, HealthInterval: 500 * time.Millisecond, ControlPlaneSoak: time.Second},
	}
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
