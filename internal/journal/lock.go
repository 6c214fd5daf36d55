package journal

import (
	"context"
	"fmt"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/prox-ops/drover/internal/clock"
)

// Holder says who holds the run lock.
type Holder struct {
	Runner  string
	RunID   string
	Started time.Time
}

// String is the Lease's holderIdentity.
func (h Holder) String() string {
	return fmt.Sprintf("runner=%s run=%s started=%s", h.Runner, h.RunID, h.Started.UTC().Format(time.RFC3339))
}

// LockedError says another run holds the lock. The CLI exits 4.
type LockedError struct {
	Holder string
	Since  time.Time
	// Expires is when the holder's lease runs out if it stops renewing.
	Expires time.Time
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("another upgrade holds the run lock (%s, renewed until %s); wait for it, or break a stale lock with `drover unlock`",
		e.Holder, e.Expires.UTC().Format(time.RFC3339))
}

// LeaseLock is the run lock: a coordination.k8s.io/v1 Lease held for the
// whole run and renewed while it runs. A holder that stops renewing loses
// it after TTL.
type LeaseLock struct {
	Client    kubernetes.Interface
	Clock     clock.Clock
	Namespace string
	Name      string
	TTL       time.Duration
	// OnLost, when set, is told once, with a *LockLostError, when the lock
	// is lost: taken over by another holder, deleted (drover unlock), or
	// not renewed for its TTL (another run may now take it).
	OnLost func(error)
}

// LockLostError says the run lock was lost while the run held it. The run
// stops at its next safe point; the CLI exits 4.
type LockLostError struct {
	// Holder is who holds it now, when someone does.
	Holder string
	Why    string
}

func (e *LockLostError) Error() string {
	if e.Holder != "" {
		return "run lock lost: " + e.Why + "; it is now held by " + e.Holder
	}
	return "run lock lost: " + e.Why
}

func (l *LeaseLock) ttl() time.Duration {
	if l.TTL > 0 {
		return l.TTL
	}
	return 2 * time.Minute
}

// Acquire takes the lock or returns *LockedError naming the holder.
// release gives it back; it is safe to call more than once.
func (l *LeaseLock) Acquire(ctx context.Context, h Holder) (release func(), err error) {
	leases := l.Client.CoordinationV1().Leases(l.Namespace)
	now := metav1.NewMicroTime(l.Clock.Now())
	want := coordinationv1.LeaseSpec{
		HolderIdentity: ptr.To(h.String()), LeaseDurationSeconds: ptr.To(int32(l.ttl().Seconds())),
		AcquireTime: &now, RenewTime: &now,
	}
	cur, err := leases.Get(ctx, l.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		if err := l.ensureNamespace(ctx); err != nil {
			return nil, err
		}
		_, err = leases.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: l.Name, Namespace: l.Namespace}, Spec: want}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return l.Acquire(ctx, h) // someone was faster: look again
		}
	case err != nil:
		return nil, fmt.Errorf("run lock: %w", err)
	default:
		if le := l.held(cur); le != nil {
			return nil, le
		}
		cur.Spec = want
		_, err = leases.Update(ctx, cur, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			return l.Acquire(ctx, h)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("run lock: %w", err)
	}
	stop := l.renew(h)
	released := false
	return func() {
		if released {
			return
		}
		released = true
		stop()
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		cur, err := leases.Get(dctx, l.Name, metav1.GetOptions{})
		if err == nil && ptr.Deref(cur.Spec.HolderIdentity, "") == h.String() {
			_ = leases.Delete(dctx, l.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &cur.UID}})
		}
	}, nil
}

// held says whether a live holder has the lease.
func (l *LeaseLock) held(cur *coordinationv1.Lease) *LockedError {
	holder := ptr.Deref(cur.Spec.HolderIdentity, "")
	if holder == "" || cur.Spec.RenewTime == nil {
		return nil
	}
	expires := cur.Spec.RenewTime.Add(time.Duration(ptr.Deref(cur.Spec.LeaseDurationSeconds, 0)) * time.Second)
	if !l.Clock.Now().Before(expires) {
		return nil // the holder stopped renewing: the lock has expired
	}
	le := &LockedError{Holder: holder, Expires: expires}
	if cur.Spec.AcquireTime != nil {
		le.Since = cur.Spec.AcquireTime.Time
	}
	return le
}

// renew renews the lease every TTL/3 until stopped, and tells OnLost once
// when the lease is lost.
func (l *LeaseLock) renew(h Holder) (stop func()) {
	every := l.ttl() / 3
	lastRenewed := l.Clock.Now()
	lost := false
	renewOnce := func() {
		if lost {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		leases := l.Client.CoordinationV1().Leases(l.Namespace)
		cur, err := leases.Get(ctx, l.Name, metav1.GetOptions{})
		var le *LockLostError
		switch {
		case apierrors.IsNotFound(err):
			le = &LockLostError{Why: "the Lease " + l.Namespace + "/" + l.Name + " was deleted (drover unlock?)"}
		case err == nil && ptr.Deref(cur.Spec.HolderIdentity, "") != h.String():
			le = &LockLostError{Why: "the Lease " + l.Namespace + "/" + l.Name + " was taken over", Holder: ptr.Deref(cur.Spec.HolderIdentity, "(nobody)")}
		case err == nil:
			now := metav1.NewMicroTime(l.Clock.Now())
			cur.Spec.RenewTime = &now
			if _, err = leases.Update(ctx, cur, metav1.UpdateOptions{}); err == nil {
				lastRenewed = now.Time
				return
			}
		}
		if le == nil && l.Clock.Now().Sub(lastRenewed) >= l.ttl() {
			le = &LockLostError{Why: fmt.Sprintf("not renewed for %s (%v): another run may take it", l.ttl(), err)}
		}
		if le != nil && l.OnLost != nil {
			lost = true
			l.OnLost(le)
		}
	}
	return clock.Every(l.Clock, every, renewOnce)
}

func (l *LeaseLock) ensureNamespace(ctx context.Context) error {
	_, err := l.Client.CoreV1().Namespaces().Get(ctx, l.Namespace, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = l.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: l.Namespace}}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("run lock namespace %s: %w", l.Namespace, err)
	}
	return nil
}

// Break deletes the lock, whoever holds it, and says who did.
func (l *LeaseLock) Break(ctx context.Context) (holder string, err error) {
	leases := l.Client.CoordinationV1().Leases(l.Namespace)
	cur, err := leases.Get(ctx, l.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if err := leases.Delete(ctx, l.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return "", err
	}
	return strings.TrimSpace(ptr.Deref(cur.Spec.HolderIdentity, "")), nil
}
