package health

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-openapi/strfmt"
	amclient "github.com/prometheus/alertmanager/api/v2/client"
	"github.com/prometheus/alertmanager/api/v2/client/silence"
	"github.com/prometheus/alertmanager/api/v2/models"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/testenv"
)

// silencesOf lists the Alertmanager's silences that are not expired, by
// comment, with their matchers written out.
func silencesOf(t *testing.T, url string) map[string]string {
	t.Helper()
	api := amclient.NewHTTPClientWithConfig(strfmt.Default, amclient.DefaultTransportConfig().WithHost(strings.TrimPrefix(url, "http://")).WithSchemes([]string{"http"}))
	resp, err := api.Silence.GetSilences(silence.NewGetSilencesParams())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, s := range resp.Payload {
		if *s.Status.State == models.SilenceStatusStateExpired {
			continue
		}
		var ms []string
		for _, m := range s.Matchers {
			op := "="
			if *m.IsRegex {
				op = "=~"
			}
			ms = append(ms, *m.Name+op+*m.Value)
		}
		out[*s.Comment] = strings.Join(ms, ",")
	}
	return out
}

// TestSilencesInARealAlertmanager: drover's silences are made, found
// again by a resumed run (the same run ID) instead of doubled, expired one
// by one and all at once, and never touch another run's or a person's
// silence. An alert under drover's own silence still fails the gate; one
// that people silenced does not count.
func TestSilencesInARealAlertmanager(t *testing.T) {
	url := testenv.StartAlertmanager(t)
	ctx := context.Background()
	am, err := NewAlertmanager(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	run := &Silences{AM: am, Matchers: []string{`node="{node}"`, `severity=~"warning|critical"`}, RunID: "run-1", For: time.Hour, Clock: clock.Real{}}
	other := &Silences{AM: am, Matchers: []string{`node="{node}"`}, RunID: "run-0", For: time.Hour, Clock: clock.Real{}}
	if _, err := other.Silence(ctx, "k8s-work-9"); err != nil {
		t.Fatal(err)
	}
	id, err := run.Silence(ctx, "k8s-work-3")
	if err != nil || id == "" {
		t.Fatalf("silence: %q %v", id, err)
	}
	if _, err := run.Silence(ctx, "k8s-work-4"); err != nil {
		t.Fatal(err)
	}
	// A resumed run (same run ID) reuses its silence.
	resumed := *run
	if again, err := resumed.Silence(ctx, "k8s-work-3"); err != nil || again != id {
		t.Fatalf("the resumed run's silence: %q (was %q) %v", again, id, err)
	}
	got := silencesOf(t, url)
	if len(got) != 3 || got[run.comment("k8s-work-3")] != `node=k8s-work-3,severity=~warning|critical` {
		t.Fatalf("silences: %v", got)
	}

	// The gate: an alert under drover's silence still counts; one that
	// people silenced (another creator) does not.
	g := &Gate{Clock: clock.Real{}, Alerts: am, Settings: config.Health{Disable: config.BuiltinChecks[:8], Alertmanager: config.Alertmanager{URL: url}}}
	post(t, url, map[string]string{"alertname": "KubeletDown", "severity": "critical", "node": "k8s-work-3"}, "kubelet on k8s-work-3 is down")
	post(t, url, map[string]string{"alertname": "NodeFilesystemAlmostFull", "severity": "warning", "node": "k8s-work-5"}, "disk almost full")
	api := amclient.NewHTTPClientWithConfig(strfmt.Default, amclient.DefaultTransportConfig().WithHost(strings.TrimPrefix(url, "http://")).WithSchemes([]string{"http"}))
	start, end := strfmt.DateTime(time.Now()), strfmt.DateTime(time.Now().Add(time.Hour))
	name, value, regex, person, why := "node", "k8s-work-5", false, "ops@example.org", "disk cleanup under way"
	if _, err := api.Silence.PostSilences(silence.NewPostSilencesParams().WithSilence(&models.PostableSilence{Silence: models.Silence{
		Matchers: models.Matchers{{Name: &name, Value: &value, IsRegex: &regex}}, StartsAt: &start, EndsAt: &end, CreatedBy: &person, Comment: &why,
	}})); err != nil {
		t.Fatal(err)
	}
	var c rollout.CheckResult
	testenv.Eventually(t, 10*time.Second, "the silenced alert to be served", func() (bool, error) {
		for _, r := range g.Check(ctx, rollout.GateInput{}).Checks {
			if r.Name == CheckAlerts {
				c = r
			}
		}
		return !c.Passed, nil
	})
	if len(c.Diagnostics) != 1 || !strings.Contains(c.Diagnostics[0], "alert KubeletDown firing") || !strings.Contains(c.Diagnostics[0], "under drover's silence") {
		t.Fatalf("the gate under drover's silence: %+v", c)
	}

	// Expired one by one, then all of the run's at once; run-0's and the
	// person's stay.
	if had, err := run.Expire(ctx, "k8s-work-3"); err != nil || !had {
		t.Fatalf("expire: %v %v", had, err)
	}
	if had, err := run.Expire(ctx, "k8s-work-3"); err != nil || had {
		t.Fatalf("expired twice: %v %v", had, err)
	}
	if got := silencesOf(t, url); len(got) != 3 || got[run.comment("k8s-work-3")] != "" {
		t.Fatalf("after expiring k8s-work-3: %v", got)
	}
	if err := run.ExpireAll(ctx); err != nil {
		t.Fatal(err)
	}
	got = silencesOf(t, url)
	if len(got) != 2 || got[other.comment("k8s-work-9")] == "" || got[why] == "" {
		t.Fatalf("after the run's end: %v", got)
	}
}
