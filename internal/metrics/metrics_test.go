package metrics

import (
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/testenv"
)

// scrape reads the Pushgateway's /metrics as Prometheus would.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// value is the sample of family whose labels include want, or -1.
func value(fams map[string]*dto.MetricFamily, family string, want map[string]string) float64 {
	f := fams[family]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Counter != nil:
			return m.Counter.GetValue()
		}
	}
	return -1
}

// TestPushesToARealPushgateway feeds a small run's events (a node
// upgraded, one rolled back) and scrapes a real Pushgateway, built from its
// module, for the series.
func TestPushesToARealPushgateway(t *testing.T) {
	url := testenv.StartPushgateway(t)
	t0 := time.Date(2026, 11, 26, 8, 0, 0, 0, time.UTC)
	run := Run{Cluster: "prox-ops", ID: "20261126T080000Z-abcd", Strategy: "cattle", From: "v1.11.3", To: "v1.12.0", Started: t0, ETA: 90 * time.Minute}
	p := New(url, run, func(msg string) { t.Error(msg) })
	grp := map[string]string{"job": Job, "cluster": "prox-ops", "run": run.ID}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range grp {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	testenv.Eventually(t, 10*time.Second, "the run to show as running", func() (bool, error) {
		return value(scrape(t, url), "drover_run_running", with(nil)) == 1, nil
	})
	for _, e := range []rollout.Event{
		{Kind: rollout.EventStep, Node: "k8s-work-1", Step: rollout.StepDrain, Status: rollout.StatusStarted, Time: t0},
		{Kind: rollout.EventStep, Node: "k8s-work-1", Step: rollout.StepDrain, Status: rollout.StatusDone, Time: t0.Add(90 * time.Second)},
		{Kind: rollout.EventNodeDone, Node: "k8s-work-1", NodeReport: &rollout.NodeReport{Name: "k8s-work-1", Role: "worker", Outcome: rollout.OutcomeUpgraded, Duration: 5 * time.Minute,
			Health: &rollout.HealthResult{Checks: []rollout.CheckResult{{Name: "Pod Health", Attempts: 2}}}}},
		{Kind: rollout.EventRollback, Node: "k8s-work-2"},
		{Kind: rollout.EventNodeDone, Node: "k8s-work-2", NodeReport: &rollout.NodeReport{Name: "k8s-work-2", Role: "worker", Outcome: rollout.OutcomeRolledBack, Duration: 9 * time.Minute}},
		{Kind: rollout.EventRunFinished, Report: &rollout.Report{Result: rollout.ResultHalted, Strategy: "cattle", From: "v1.11.3", To: "v1.12.0"}},
	} {
		p.Event(e)
	}
	p.Close(10 * time.Second)
	fams := scrape(t, url)
	checks := []struct {
		family string
		labels map[string]string
		want   float64
	}{
		{"drover_run_running", map[string]string{"strategy": "cattle", "from": "v1.11.3", "to": "v1.12.0"}, 0},
		{"drover_run_start_timestamp_seconds", nil, float64(t0.Unix())},
		{"drover_run_eta_seconds", nil, 5400},
		{"drover_run_result", map[string]string{"result": "halted"}, 1},
		{"drover_node_step_duration_seconds", map[string]string{"node": "k8s-work-1", "step": "drain", "status": "done"}, 90},
		{"drover_node_duration_seconds", map[string]string{"node": "k8s-work-1", "outcome": "upgraded"}, 300},
		{"drover_node_outcome", map[string]string{"node": "k8s-work-2", "outcome": "rolled-back"}, 1},
		{"drover_node_health_attempts", map[string]string{"node": "k8s-work-1"}, 2},
		{"drover_rollbacks_total", nil, 1},
	}
	for _, c := range checks {
		if got := value(fams, c.family, with(c.labels)); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.family, c.labels, got, c.want)
		}
	}
}

// TestADeadPushgatewayNeverHoldsTheRun: events go in at once, Close
// returns within its bound, and the failure is logged.
func TestADeadPushgatewayNeverHoldsTheRun(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close()
	var mu sync.Mutex
	var logs []string
	p := New(dead, Run{Cluster: "c", ID: "r", Started: time.Now()}, func(msg string) {
		mu.Lock()
		logs = append(logs, msg)
		mu.Unlock()
	})
	for range 1000 {
		p.Event(rollout.Event{Kind: rollout.EventNodeDone, Node: "n", NodeReport: &rollout.NodeReport{Name: "n", Outcome: rollout.OutcomeUpgraded}})
	}
	p.Event(rollout.Event{Kind: rollout.EventRunFinished, Report: &rollout.Report{Result: rollout.ResultSucceeded}})
	p.Close(30 * time.Second)
	mu.Lock()
	defer mu.Unlock()
	if len(logs) == 0 || !strings.Contains(logs[0], "the run goes on") {
		t.Fatalf("logs %v", logs)
	}
}
