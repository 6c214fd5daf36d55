package terraform

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/terraform-exec/tfexec"
	"github.com/minio/minio-go/v7"

	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/testenv"
)

// These tests keep the fixture's state in a real S3 server (MinIO, built
// from its module) through Terraform's S3 backend with use_lockfile: the
// PRD's remote state with locking.

const (
	stateBucket = "prox-ops-tfstate"
	stateKey    = "prox-ops/terraform.tfstate"
	lockKey     = stateKey + ".tflock"
)

type s3Fixture struct {
	*fixture
	s3      testenv.S3
	backend map[string]string
}

// newS3Fixture is newFixture with the state in S3: the fixture's backend
// is overridden to "s3", configured as drover's terraform.backendConfig
// would, and the VMs are created at v1.11.3.
func newS3Fixture(t *testing.T) *s3Fixture {
	t.Helper()
	s3 := testenv.StartMinIO(t, stateBucket)
	f := &fixture{dir: t.TempDir(), vmDir: t.TempDir(), bin: tfBinary(t), out: &syncBuffer{}}
	if err := os.CopyFS(f.dir, os.DirFS("testdata/prox-ops")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.dir, "backend_override.tf"), []byte("terraform {\n  backend \"s3\" {}\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TF_VAR_vm_dir", f.vmDir)
	t.Setenv("TF_IN_AUTOMATION", "1")
	t.Setenv("AWS_ACCESS_KEY_ID", s3.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3.SecretKey)
	t.Setenv("AWS_ENDPOINT_URL_S3", s3.Endpoint)
	backend := map[string]string{
		"bucket": stateBucket, "key": stateKey, "region": "us-east-1", "use_lockfile": "true", "use_path_style": "true",
		"skip_credentials_validation": "true", "skip_requesting_account_id": "true", "skip_metadata_api_check": "true", "skip_region_validation": "true",
	}
	tf, err := tfexec.NewTerraform(f.dir, f.bin)
	if err != nil {
		t.Fatal(err)
	}
	var opts []tfexec.InitOption
	for k, v := range backend {
		opts = append(opts, tfexec.BackendConfig(k+"="+v))
	}
	ctx := context.Background()
	if err := tf.Init(ctx, opts...); err != nil {
		t.Fatalf("init: %v", err)
	}
	if err := tf.Apply(ctx, tfexec.Var("talos_version=v1.11.3")); err != nil {
		t.Fatalf("initial apply: %v", err)
	}
	return &s3Fixture{fixture: f, s3: s3, backend: backend}
}

func (f *s3Fixture) runner(t *testing.T) *Runner {
	t.Helper()
	s := f.settings()
	s.BackendConfig = f.backend
	return f.fixture.runner(t, s)
}

// object says whether the bucket holds key.
func (f *s3Fixture) object(t *testing.T, key string) bool {
	t.Helper()
	_, err := f.s3.Client(t).StatObject(context.Background(), stateBucket, key, minio.StatObjectOptions{})
	if err != nil && minio.ToErrorResponse(err).Code != "NoSuchKey" {
		t.Fatalf("stat %s: %v", key, err)
	}
	return err == nil
}

// slowApply starts a plain terraform apply that holds the lock for a while.
func (f *s3Fixture) slowApply(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(f.bin, "apply", "-auto-approve", "-input=false", "-no-color",
		"-var", "talos_version=v1.11.3", "-var", "slow_seconds=60", "-var", "slow_token="+newRef())
	cmd.Dir = f.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	testenv.Eventually(t, 30*time.Second, "the apply to take the lock", func() (bool, error) { return f.object(t, lockKey), nil })
	return cmd
}

type ledger struct {
	mu   sync.Mutex
	recs []LockRecord
}

func (l *ledger) record(_ context.Context, rec LockRecord) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, rec)
}

func (l *ledger) statuses() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.recs {
		out = append(out, r.Op+":"+r.Status)
	}
	return out
}

// TestTheS3BackendLocksAndReleases: a replacement through drover keeps
// the state in the bucket and leaves no lock; while another apply holds
// the lock (its lock file is in the bucket), drover's preflight names the
// holder, and once it is done the state is free again.
func TestTheS3BackendLocksAndReleases(t *testing.T) {
	f := newS3Fixture(t)
	ctx := context.Background()
	r := f.runner(t)
	var l ledger
	r.Watch(ctx, l.record)
	w := node("k8s-work-1")
	if err := r.Destroy(ctx, []plan.Node{w}); err != nil {
		t.Fatal(err)
	}
	if err := r.Create(ctx, []plan.Node{w}, v1120); err != nil {
		t.Fatal(err)
	}
	if got := f.vm(t, "k8s-work-1"); got != "v1.12.0 v1.34.1" {
		t.Fatalf("k8s-work-1 is %q", got)
	}
	if !f.object(t, stateKey) || f.object(t, lockKey) {
		t.Fatalf("state in the bucket: %v, lock left: %v", f.object(t, stateKey), f.object(t, lockKey))
	}
	if got := strings.Join(l.statuses(), " "); got != "destroy:started destroy:done apply:started apply:done" {
		t.Fatalf("ledger: %s", got)
	}

	other := f.slowApply(t)
	err := Preflight{Runner: r, At: v1113}.Check(ctx, plan.Plan{})
	var le *LockedError
	if !errors.As(err, &le) || le.ID == "" || le.Who != lockOwner() {
		t.Fatalf("err = %v, want the lock of the other apply", err)
	}
	_ = syscall.Kill(-other.Process.Pid, syscall.SIGINT)
	testenv.Eventually(t, 60*time.Second, "the interrupted apply to release its lock", func() (bool, error) { return !f.object(t, lockKey), nil })
	if err := (Preflight{Runner: r, At: v1113}).Check(ctx, plan.Plan{}); err != nil {
		t.Fatalf("after the other apply: %v", err)
	}
}

// TestAStoppedCreateReleasesItsLock: the run is stopped (SIGINT/SIGTERM)
// while Terraform is creating a VM: drover interrupts Terraform, which
// stops and releases the lock, and the ledger says so.
func TestAStoppedCreateReleasesItsLock(t *testing.T) {
	f := newS3Fixture(t)
	ctx := context.Background()
	r := f.runner(t)
	stop, stopRun := context.WithCancel(ctx)
	defer stopRun()
	var l ledger
	r.Watch(stop, l.record)
	w := node("k8s-work-2")
	if err := r.Destroy(ctx, []plan.Node{w}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DROVER_FIXTURE_CLONE_SECONDS", "120")
	done := make(chan error, 1)
	go func() { done <- r.Create(ctx, []plan.Node{w}, v1120) }()
	testenv.Eventually(t, 30*time.Second, "the create to take the lock and start cloning", func() (bool, error) {
		return f.object(t, lockKey) && strings.Contains(f.out.String(), "proxmox_virtual_environment_vm.vm: Creating..."), nil
	})
	stopRun()
	var err error
	select {
	case err = <-done:
	case <-time.After(90 * time.Second):
		t.Fatal("the create did not stop on the interrupt")
	}
	if err == nil || !strings.Contains(err.Error(), "interrupted; it released its state lock") {
		t.Fatalf("err = %v\n%s", err, f.out.String())
	}
	if f.object(t, lockKey) {
		t.Fatal("the lock is still in the bucket")
	}
	if got := strings.Join(l.statuses(), " "); got != "destroy:started destroy:done apply:started apply:interrupted" {
		t.Fatalf("ledger: %s", got)
	}
	if !strings.Contains(f.out.String(), "Interrupt received") {
		t.Errorf("Terraform was not interrupted gracefully:\n%s", f.out.String())
	}
}

// TestALockLeftByAKilledRun: a Terraform run killed outright (SIGKILL,
// as the runner does 10 s after a cancel) leaves its lock in the bucket.
// The preflight breaks it only when the journal of the resumed run shows
// it is that run's own; anyone else's lock stays, named.
func TestALockLeftByAKilledRun(t *testing.T) {
	f := newS3Fixture(t)
	ctx := context.Background()
	r := f.runner(t)
	var l ledger
	r.Watch(ctx, l.record)
	started := time.Now().UTC()
	other := f.slowApply(t)
	if err := syscall.Kill(-other.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = other.Wait()
	if !f.object(t, lockKey) {
		t.Fatal("the killed apply left no lock")
	}
	le, err := r.lockHolder(ctx)
	if err != nil || le == nil {
		t.Fatalf("lock holder: %v %v", le, err)
	}
	tests := []struct {
		name  string
		own   []LockRecord
		broke bool
	}{
		{"no journal: someone else's", nil, false},
		{"a run of this host an hour earlier", []LockRecord{{Ref: "a", Op: "apply", Who: lockOwner(), Started: started.Add(-time.Hour), Status: LockStarted}}, false},
		{"a run that ended", []LockRecord{{Ref: "b", Op: "apply", Who: lockOwner(), Started: started, Status: LockStarted}, {Ref: "b", Op: "apply", Who: lockOwner(), Started: started, Status: LockDone}}, false},
		{"another host's run", []LockRecord{{Ref: "c", Op: "apply", Who: "runner@another-pod", Started: started, Status: LockStarted}}, false},
		{"a left lock of another ID", []LockRecord{{Ref: "d", Op: "apply", Who: lockOwner(), Started: started.Add(-time.Hour), Status: LockLeft, LockID: "5b4a4a2e-0000-0000-0000-000000000000"}}, false},
		{"this run's own, started and never ended", []LockRecord{{Ref: "e", Op: "apply", Who: lockOwner(), Started: started, Status: LockStarted}}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Preflight{Runner: r, At: v1113, Own: tc.own}.Check(ctx, plan.Plan{})
			if tc.broke {
				if err != nil || f.object(t, lockKey) {
					t.Fatalf("err = %v, lock left %v", err, f.object(t, lockKey))
				}
				if !strings.Contains(f.out.String(), "was left by this run's own apply") {
					t.Errorf("the console does not say why the lock was broken:\n%s", f.out.String())
				}
				if got := l.statuses(); len(got) == 0 || got[len(got)-1] != "apply:unlocked" {
					t.Errorf("ledger: %v", got)
				}
				return
			}
			var got *LockedError
			if !errors.As(err, &got) || got.ID != le.ID || !f.object(t, lockKey) {
				t.Fatalf("err = %v; the lock must stay", err)
			}
		})
	}
}

// TestALeftLockIDFromTheJournalIsBroken: the journal recorded the very
// lock a run left (lock-left with its ID): that one is broken.
func TestALeftLockIDFromTheJournalIsBroken(t *testing.T) {
	f := newS3Fixture(t)
	ctx := context.Background()
	r := f.runner(t)
	other := f.slowApply(t)
	_ = syscall.Kill(-other.Process.Pid, syscall.SIGKILL)
	_ = other.Wait()
	le, err := r.lockHolder(ctx)
	if err != nil || le == nil {
		t.Fatalf("lock holder: %v %v", le, err)
	}
	own := []LockRecord{{Ref: "f", Op: "destroy", Who: lockOwner(), Started: time.Now().Add(-time.Hour), Status: LockLeft, LockID: le.ID}}
	if err := (Preflight{Runner: r, At: v1113, Own: own}).Check(ctx, plan.Plan{}); err != nil || f.object(t, lockKey) {
		t.Fatalf("err = %v, lock left %v", err, f.object(t, lockKey))
	}
}
