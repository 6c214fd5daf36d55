// Package metrics pushes a run's metrics to a Prometheus Pushgateway with
// the Prometheus client library's push package, so the Prometheus/Grafana
// stack the cluster already has sees upgrades: the run's state, start and
// ETA, each node's outcome, duration and step durations, rollbacks and
// health-gate attempts. The series are grouped by cluster and run.
package metrics

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/push"

	"github.com/prox-ops/drover/internal/rollout"
)

// Job is the Pushgateway job drover pushes under.
const Job = "drover"

// Run identifies the run the metrics are of.
type Run struct {
	Cluster, ID, Strategy, From, To string
	Started                         time.Time
	ETA                             time.Duration
}

// Pusher is a rollout.Sink: it keeps the run's metrics from the engine's
// events and pushes them at each node's end and at the run's end. The
// pushes happen on a goroutine of their own and are bounded in time: a
// Pushgateway that is down or slow never holds the run (a failed push is
// logged and the next one carries everything).
type Pusher struct {
	pusher *push.Pusher
	log    func(string)

	running, started, eta, finished *prometheus.GaugeVec
	nodeDuration, stepDuration      *prometheus.GaugeVec
	nodeOutcome, healthAttempts     *prometheus.GaugeVec
	rollbacks                       prometheus.Counter

	mu     sync.Mutex
	steps  map[[2]string]time.Time
	wake   chan struct{}
	done   chan struct{}
	closed bool
}

// New prepares the metrics of run for the Pushgateway at url.
func New(url string, run Run, log func(string)) *Pusher {
	reg := prometheus.NewRegistry()
	g := func(name, help string, labels ...string) *prometheus.GaugeVec {
		v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
		reg.MustRegister(v)
		return v
	}
	p := &Pusher{
		log:            log,
		running:        g("drover_run_running", "1 while the run goes on, 0 once it ended.", "strategy", "from", "to"),
		started:        g("drover_run_start_timestamp_seconds", "When the run started (Unix time).", "strategy", "from", "to"),
		eta:            g("drover_run_eta_seconds", "The plan's expected duration of the run.", "strategy", "from", "to"),
		finished:       g("drover_run_result", "1 for how the run ended (result label), once it ended.", "result"),
		nodeDuration:   g("drover_node_duration_seconds", "How long the node took, from its first step to its end.", "node", "role", "outcome"),
		stepDuration:   g("drover_node_step_duration_seconds", "How long each step of each node took.", "node", "step", "status"),
		nodeOutcome:    g("drover_node_outcome", "1 for how the node ended (outcome label).", "node", "outcome"),
		healthAttempts: g("drover_node_health_attempts", "Health-gate attempts of the node's most tried check.", "node"),
		rollbacks:      prometheus.NewCounter(prometheus.CounterOpts{Name: "drover_rollbacks_total", Help: "Nodes rolled back in the run."}),
		steps:          map[[2]string]time.Time{},
		wake:           make(chan struct{}, 1),
		done:           make(chan struct{}),
	}
	reg.MustRegister(p.rollbacks)
	l := []string{run.Strategy, run.From, run.To}
	p.running.WithLabelValues(l...).Set(1)
	p.started.WithLabelValues(l...).Set(float64(run.Started.Unix()))
	p.eta.WithLabelValues(l...).Set(run.ETA.Seconds())
	p.pusher = push.New(url, Job).Gatherer(reg).Grouping("cluster", run.Cluster).Grouping("run", run.ID)
	go p.loop()
	p.kick() // the run is visible from its start
	return p
}

func (p *Pusher) logf(format string, args ...any) {
	if p.log != nil {
		p.log(fmt.Sprintf(format, args...))
	}
}

// kick asks for a push; one pending push is enough.
func (p *Pusher) kick() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *Pusher) loop() {
	defer close(p.done)
	for range p.wake {
		p.pushNow()
	}
}

// pushNow replaces the run's group on the Pushgateway.
func (p *Pusher) pushNow() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.pusher.PushContext(ctx); err != nil {
		p.logf("metrics: push to the Pushgateway failed (the run goes on): %v", err)
	}
}

// Event updates the metrics; at a node's or the run's end it asks for a
// push. It never blocks.
func (p *Pusher) Event(e rollout.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	switch e.Kind {
	case rollout.EventStep:
		if e.Node == "" {
			return
		}
		k := [2]string{e.Node, string(e.Step)}
		if e.Status == rollout.StatusStarted {
			p.steps[k] = e.Time
			return
		}
		if t0, ok := p.steps[k]; ok {
			p.stepDuration.WithLabelValues(e.Node, string(e.Step), string(e.Status)).Set(e.Time.Sub(t0).Seconds())
			delete(p.steps, k)
		}
	case rollout.EventRollback:
		p.rollbacks.Inc()
	case rollout.EventNodeDone:
		if n := e.NodeReport; n != nil {
			p.nodeOutcome.WithLabelValues(n.Name, string(n.Outcome)).Set(1)
			p.nodeDuration.WithLabelValues(n.Name, n.Role, string(n.Outcome)).Set(n.Duration.Seconds())
			attempts := 0
			if n.Health != nil {
				for _, c := range n.Health.Checks {
					attempts = max(attempts, c.Attempts)
				}
			}
			p.healthAttempts.WithLabelValues(n.Name).Set(float64(attempts))
		}
		p.kick()
	case rollout.EventRunFinished:
		if r := e.Report; r != nil {
			p.running.Reset()
			p.running.WithLabelValues(r.Strategy, r.From, r.To).Set(0)
			p.finished.WithLabelValues(string(r.Result)).Set(1)
		}
		p.kick()
	}
}

// Close makes the last push and waits for it, at most timeout.
func (p *Pusher) Close(timeout time.Duration) {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.wake)
	}
	p.mu.Unlock()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.logf("metrics: the Pushgateway did not answer within %s; the last push is abandoned", timeout)
	}
}
