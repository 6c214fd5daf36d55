package journal

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/testenv"
)

// The run lock is tested on a real API server (testenv).

var env *testenv.Env

func TestMain(m *testing.M) { os.Exit(testenv.Main(m, &env)) }

func lock(name string, ttl time.Duration) *LeaseLock {
	return &LeaseLock{Client: env.Drover, Clock: clock.Real{}, Namespace: "drover", Name: name, TTL: ttl}
}

func TestSecondRunIsRefusedAndNamesTheHolder(t *testing.T) {
	testenv.Require(t, env)
	ctx := context.Background()
	a := Holder{Runner: "runner-a", RunID: "run-1", Started: time.Now()}
	release, err := lock("concurrent", time.Minute).Acquire(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	_, err = lock("concurrent", time.Minute).Acquire(ctx, Holder{Runner: "runner-b", RunID: "run-2", Started: time.Now()})
	var le *LockedError
	if !errors.As(err, &le) || le.Holder != a.String() || !strings.Contains(err.Error(), "runner=runner-a run=run-1") {
		t.Fatalf("err = %v", err)
	}
	release()
	release() // twice is fine
	rb, err := lock("concurrent", time.Minute).Acquire(ctx, Holder{Runner: "runner-b", RunID: "run-2"})
	if err != nil {
		t.Fatalf("after the release: %v", err)
	}
	rb()
}

func TestStaleLockExpires(t *testing.T) {
	testenv.Require(t, env)
	ctx := context.Background()
	// A holder that died: it renewed last a minute ago, for 30 s.
	old := metav1.NewMicroTime(time.Now().Add(-time.Minute))
	l := lock("stale", 30*time.Second)
	if err := l.ensureNamespace(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.CoordinationV1().Leases("drover").Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "stale", Namespace: "drover"},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To("runner=dead run=0"), LeaseDurationSeconds: ptr.To(int32(30)), AcquireTime: &old, RenewTime: &old},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	release, err := l.Acquire(ctx, Holder{Runner: "runner-c", RunID: "run-3"})
	if err != nil {
		t.Fatalf("a stale lock was not taken over: %v", err)
	}
	release()
}

func TestRenewalKeepsTheLockAndUnlockBreaksIt(t *testing.T) {
	testenv.Require(t, env)
	ctx := context.Background()
	// Time is the lock's clock, virtual: the renewals and the expiry are
	// judged on it, not on how busy the machine is.
	clk := clock.NewVirtual(time.Now())
	onClock := func(ttl time.Duration) *LeaseLock {
		return &LeaseLock{Client: env.Drover, Clock: clk, Namespace: "drover", Name: "renewed", TTL: ttl}
	}
	release, err := onClock(time.Second).Acquire(ctx, Holder{Runner: "runner-d", RunID: "run-4"})
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	// Well past the TTL, the renewals keep it held.
	for range 10 {
		if err := clk.Sleep(ctx, 250*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if _, err := onClock(time.Second).Acquire(ctx, Holder{Runner: "runner-e"}); err == nil {
			t.Fatalf("the lock expired at %s while its holder was renewing it", clk.Now())
		}
	}
	holder, err := lock("renewed", time.Second).Break(ctx)
	if err != nil || !strings.Contains(holder, "runner-d") {
		t.Fatalf("break: %q %v", holder, err)
	}
	r2, err := lock("renewed", time.Minute).Acquire(ctx, Holder{Runner: "runner-e"})
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	r2()
}
