package clock

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// Virtual is a simulated clock for the lab. Time stands still while any
// goroutine it accounts for is working, and jumps to the next timer when all
// of them are waiting on it. It accounts for the goroutine that created it and
// for every goroutine started through Parallel; other goroutines must not
// call Sleep.
//
// A Virtual clock is deterministic in the order its timers fire: by deadline,
// then by the order they were set.
type Virtual struct {
	mu     sync.Mutex
	now    time.Time
	busy   int
	seq    uint64
	timers timerHeap
}

// NewVirtual returns a virtual clock set to start, owned by the calling goroutine.
func NewVirtual(start time.Time) *Virtual {
	return &Virtual{now: start, busy: 1}
}

// Now returns the virtual time.
func (v *Virtual) Now() time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.now
}

// Sleep parks the caller until the virtual time has moved on by d.
func (v *Virtual) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	v.mu.Lock()
	t := v.add(d, nil)
	t.ctx = ctx
	v.busy--
	v.advance()
	v.mu.Unlock()

	select {
	case <-t.wake:
		// Woken either by time or, through wakeCancelled, by ctx.
		return ctx.Err()
	case <-ctx.Done():
		v.mu.Lock()
		defer v.mu.Unlock()
		if t.fired {
			// The clock already counted us busy again when it woke us.
			return ctx.Err()
		}
		heap.Remove(&v.timers, t.index)
		v.busy++
		return ctx.Err()
	}
}

// AfterFunc runs fn on the clock once the virtual time has moved on by d. fn
// runs while the clock stands still; it may set further timers. The returned
// function cancels the timer if it has not fired yet.
func (v *Virtual) AfterFunc(d time.Duration, fn func()) (cancel func()) {
	v.mu.Lock()
	t := v.add(d, fn)
	v.mu.Unlock()
	return func() {
		v.mu.Lock()
		defer v.mu.Unlock()
		if !t.fired && t.index >= 0 {
			heap.Remove(&v.timers, t.index)
		}
	}
}

// Pending says how many timers are set.
func (v *Virtual) Pending() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.timers)
}

func (v *Virtual) runParallel(fns []func()) {
	var wg sync.WaitGroup
	v.mu.Lock()
	// The caller waits while the workers run: the workers take its place,
	// and the last one to finish hands it back, so time cannot jump between
	// the last worker's return and the caller's wake-up.
	v.busy += len(fns) - 1
	remaining := len(fns)
	v.mu.Unlock()
	for _, fn := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				v.mu.Lock()
				remaining--
				if remaining > 0 {
					v.busy--
					v.advance()
				}
				v.mu.Unlock()
			}()
			fn()
		}()
	}
	wg.Wait()
}

// goAccounted runs fn on a goroutine the clock counts as busy while it
// works. A caller of the returned wait stops counting while it waits, and
// the goroutine hands its count over to it as it returns, so time cannot
// jump between the two.
func (v *Virtual) goAccounted(fn func()) func() {
	done := make(chan struct{})
	waiting := false
	v.mu.Lock()
	v.busy++
	v.mu.Unlock()
	go func() {
		defer func() {
			v.mu.Lock()
			defer v.mu.Unlock()
			close(done)
			if waiting {
				return // the waiter wakes counted: the count is handed over
			}
			v.busy--
			v.advance()
		}()
		fn()
	}()
	return func() {
		v.mu.Lock()
		select {
		case <-done:
			v.mu.Unlock()
			return
		default:
		}
		waiting = true
		v.busy--
		v.advance()
		v.mu.Unlock()
		<-done
	}
}

// add sets a timer; v.mu must be held.
func (v *Virtual) add(d time.Duration, fn func()) *timer {
	if d < 0 {
		d = 0
	}
	v.seq++
	t := &timer{at: v.now.Add(d), seq: v.seq, fn: fn, wake: make(chan struct{})}
	heap.Push(&v.timers, t)
	return t
}

// advance fires timers while nobody is working; v.mu must be held.
func (v *Virtual) advance() {
	for v.busy == 0 && len(v.timers) > 0 {
		// A timer callback may have cancelled a sleeper's context: wake
		// those sleepers now, before time moves past the cancellation.
		if v.wakeCancelled() {
			return
		}
		t := heap.Pop(&v.timers).(*timer)
		t.fired = true
		if t.at.After(v.now) {
			v.now = t.at
		}
		v.busy++
		if t.fn == nil {
			close(t.wake)
			continue
		}
		v.mu.Unlock()
		t.fn()
		v.mu.Lock()
		v.busy--
	}
}

// wakeCancelled wakes sleepers whose context is done; v.mu must be held.
func (v *Virtual) wakeCancelled() bool {
	woke := false
	for i := 0; i < len(v.timers); {
		t := v.timers[i]
		if t.ctx == nil || t.ctx.Err() == nil {
			i++
			continue
		}
		heap.Remove(&v.timers, i)
		t.fired = true
		v.busy++
		close(t.wake)
		woke = true
	}
	return woke
}

type timer struct {
	ctx   context.Context
	at    time.Time
	seq   uint64
	fn    func()
	wake  chan struct{}
	fired bool
	index int
}

type timerHeap []*timer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].seq < h[j].seq
	}
	return h[i].at.Before(h[j].at)
}
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *timerHeap) Push(x any) {
	t := x.(*timer)
	t.index = len(*h)
	*h = append(*h, t)
}
func (h *timerHeap) Pop() any {
	old := *h
	n := len(old)
	t := old[n-1]
	old[n-1] = nil
	t.index = -1
	*h = old[:n-1]
	return t
}
