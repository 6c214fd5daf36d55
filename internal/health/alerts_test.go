package health

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-openapi/strfmt"
	amclient "github.com/prometheus/alertmanager/api/v2/client"
	"github.com/prometheus/alertmanager/api/v2/client/alert"
	"github.com/prometheus/alertmanager/api/v2/models"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/testenv"
)

// post fires an alert at the Alertmanager at url, as Prometheus would.
func post(t *testing.T, url string, labels map[string]string, summary string) {
	t.Helper()
	host := strings.TrimPrefix(url, "http://")
	api := amclient.NewHTTPClientWithConfig(strfmt.Default, amclient.DefaultTransportConfig().WithHost(host).WithSchemes([]string{"http"}))
	now := strfmt.DateTime(time.Now().Add(-time.Minute))
	_, err := api.Alert.PostAlerts(alert.NewPostAlertsParams().WithAlerts(models.PostableAlerts{{
		Alert:       models.Alert{Labels: models.LabelSet(labels)},
		Annotations: models.LabelSet{"summary": summary},
		StartsAt:    now,
	}}))
	if err != nil {
		t.Fatal(err)
	}
}

// TestAlertsFromARealAlertmanager: alerts are read from a real
// Alertmanager (built from its module) through its API v2. One firing
// before the run is known and fails nothing, unless it matches
// health.blockingAlerts; one that starts firing during the run fails the
// gate; selected and ignored alerts are honoured.
func TestAlertsFromARealAlertmanager(t *testing.T) {
	url := testenv.StartAlertmanager(t)
	ctx := context.Background()
	am, err := NewAlertmanager(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Only the Alerts check, on no cluster: the others need none here.
	g := &Gate{Clock: clock.Real{}, Alerts: am, Settings: config.Health{
		Disable:      config.BuiltinChecks[:8], // all but Alerts
		Alertmanager: config.Alertmanager{URL: url, Ignore: []string{`alertname="Watchdog"`}},
	}}
	run := func(in rollout.GateInput) rollout.CheckResult {
		for _, c := range g.Check(ctx, in).Checks {
			if c.Name == CheckAlerts {
				return c
			}
		}
		t.Fatal("no Alerts check")
		return rollout.CheckResult{}
	}
	post(t, url, map[string]string{"alertname": "Watchdog", "severity": "none"}, "always firing")
	post(t, url, map[string]string{"alertname": "CephMonClockSkew", "severity": "warning"}, "clock skew on mon.b")
	var pre rollout.CheckResult
	testenv.Eventually(t, 10*time.Second, "the alert to be served", func() (bool, error) {
		pre = run(rollout.GateInput{Preflight: true})
		return len(pre.Known) == 1, nil
	})
	if !pre.Passed || !strings.Contains(pre.Known[0], "alert CephMonClockSkew firing since") || !strings.Contains(pre.Known[0], "clock skew on mon.b (severity=warning)") {
		t.Fatalf("a warning firing before the run: %+v", pre)
	}
	// The same alert, matching health.blockingAlerts, blocks the run.
	g.Settings.BlockingAlerts = []string{`severity=~"warning|critical"`}
	if c := run(rollout.GateInput{Preflight: true}); c.Passed || !strings.Contains(strings.Join(c.Diagnostics, "\n"), "CephMonClockSkew") {
		t.Fatalf("a blocking alert did not block: %+v", c)
	}
	g.Settings.BlockingAlerts = nil
	// During the run, against the baseline: the old alert fails nothing,
	// a new one fails the gate.
	baseline := rollout.BaselineOf(rollout.HealthResult{Checks: []rollout.CheckResult{pre}})
	if c := run(rollout.GateInput{Baseline: baseline}); !c.Passed {
		t.Fatalf("the alert known before the run failed the gate: %+v", c)
	}
	post(t, url, map[string]string{"alertname": "KubeletDown", "severity": "critical", "node": "k8s-work-3"}, "kubelet on k8s-work-3 is down")
	var during rollout.CheckResult
	testenv.Eventually(t, 10*time.Second, "the new alert to fail the gate", func() (bool, error) {
		during = run(rollout.GateInput{Baseline: baseline})
		return !during.Passed, nil
	})
	if len(during.Diagnostics) != 1 || !strings.Contains(during.Diagnostics[0], "alert KubeletDown firing") || during.FailedNodes[0] != "k8s-work-3" {
		t.Fatalf("during the run: %+v", during)
	}
	// Select narrows what counts.
	g.Settings.Alertmanager.Select = []string{`severity="warning"`}
	if c := run(rollout.GateInput{Baseline: baseline}); !c.Passed {
		t.Fatalf("an unselected alert failed the gate: %+v", c)
	}
}
