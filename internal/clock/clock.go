// Package clock is drover's only source of time. Product code never calls
// time.Sleep: it waits through a Clock, so the lab's virtual clock can play a
// two-hour upgrade in seconds.
package clock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Clock tells the time and waits.
type Clock interface {
	Now() time.Time
	// Sleep waits for d, or until ctx is done (then it returns ctx.Err()).
	Sleep(ctx context.Context, d time.Duration) error
}

// Real is the wall clock.
type Real struct{}

// Now returns the wall-clock time.
func (Real) Now() time.Time { return time.Now() }

// Sleep waits for d of wall-clock time or until ctx is done.
func (Real) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// parallelRunner is implemented by clocks that must account for goroutines.
type parallelRunner interface {
	runParallel(fns []func())
}

// Parallel runs fns concurrently and returns when all have returned. Use it,
// not bare goroutines, for work that waits on the clock: a virtual clock only
// advances while every goroutine it knows of is waiting on it.
func Parallel(c Clock, fns ...func()) {
	switch {
	case len(fns) == 0:
		return
	case len(fns) == 1:
		fns[0]()
		return
	}
	if p, ok := c.(parallelRunner); ok {
		p.runParallel(fns)
		return
	}
	var wg sync.WaitGroup
	for _, fn := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn()
		}()
	}
	wg.Wait()
}

// goRunner is implemented by clocks that must account for goroutines.
type goRunner interface {
	goAccounted(fn func()) (wait func())
}

// Go runs fn on a goroutine of its own, which the clock accounts for like
// one of Parallel's, and returns a function that waits for it to return.
// Use it for work that goes on in the background while its caller does
// other work on the clock (a soak while the run goes on).
func Go(c Clock, fn func()) (wait func()) {
	if g, ok := c.(goRunner); ok {
		return g.goAccounted(fn)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	return func() { <-done }
}

// TimeoutError is returned by Poll when the condition did not hold in time.
type TimeoutError struct {
	What    string
	Timeout time.Duration
	// Last is the condition's last explanation of why it is not yet true.
	Last string
}

func (e *TimeoutError) Error() string {
	msg := fmt.Sprintf("timed out after %s waiting for %s", e.Timeout, e.What)
	if e.Last != "" {
		msg += ": " + e.Last
	}
	return msg
}

// Condition reports whether a wait is over. When it is not, why says what is
// still missing; a non-nil error ends the wait at once.
type Condition func(ctx context.Context) (done bool, why string, err error)

// Poll checks cond now and then every interval until it holds, it fails, ctx
// ends, or timeout passes on c. A timeout yields *TimeoutError.
func Poll(ctx context.Context, c Clock, what string, interval, timeout time.Duration, cond Condition) error {
	if interval <= 0 {
		return errors.New("clock.Poll: interval must be positive")
	}
	deadline := c.Now().Add(timeout)
	for {
		// No check outlives the wait by more than one interval: a call that
		// hangs (an endpoint that accepts and never answers) ends by then.
		cctx, cancel := WithTimeout(ctx, c, max(interval, deadline.Sub(c.Now())))
		done, why, err := cond(cctx)
		cancel()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		left := deadline.Sub(c.Now())
		if left <= 0 {
			return &TimeoutError{What: what, Timeout: timeout, Last: why}
		}
		if err := c.Sleep(ctx, min(interval, left)); err != nil {
			return err
		}
	}
}

// WithTimeout is context.WithTimeout on c: on the wall clock a deadline,
// on a virtual clock a cancel when its time has come.
func WithTimeout(ctx context.Context, c Clock, d time.Duration) (context.Context, context.CancelFunc) {
	af, ok := c.(afterFuncer)
	if !ok {
		return context.WithTimeout(ctx, d)
	}
	cctx, cancel := context.WithCancelCause(ctx)
	stop := af.AfterFunc(d, func() { cancel(context.DeadlineExceeded) })
	return cctx, func() {
		stop()
		cancel(context.Canceled)
	}
}

// afterFuncer is a clock that runs timers itself (Virtual).
type afterFuncer interface {
	AfterFunc(d time.Duration, fn func()) (cancel func())
}

// Every calls fn every d until stop is called. On a virtual clock fn runs
// as a timer of that clock (so it never races the clock's accounting); on
// any other clock, on a ticker goroutine.
func Every(c Clock, d time.Duration, fn func()) (stop func()) {
	if af, ok := c.(afterFuncer); ok {
		var mu sync.Mutex
		stopped := false
		var cancel func()
		var tick func()
		tick = func() {
			fn()
			mu.Lock()
			defer mu.Unlock()
			if !stopped {
				cancel = af.AfterFunc(d, tick)
			}
		}
		mu.Lock()
		cancel = af.AfterFunc(d, tick)
		mu.Unlock()
		return func() {
			mu.Lock()
			defer mu.Unlock()
			stopped = true
			cancel()
		}
	}
	done := make(chan struct{})
	var once sync.Once
	go func() {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fn()
			}
		}
	}()
	return func() { once.Do(func() { close(done) }) }
}
