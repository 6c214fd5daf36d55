package health

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	httptransport "github.com/go-openapi/runtime/client"
	"github.com/go-openapi/strfmt"
	amclient "github.com/prometheus/alertmanager/api/v2/client"
	"github.com/prometheus/alertmanager/api/v2/client/alert"
	"github.com/prometheus/alertmanager/pkg/labels"

	"github.com/prox-ops/drover/internal/rollout"
)

// Alert is one firing alert.
type Alert struct {
	Fingerprint string
	Labels      map[string]string
	StartsAt    time.Time
	Summary     string
	// SilencedByDrover: it fires under a silence drover holds for a node
	// under change; it pages nobody, and still counts.
	SilencedByDrover bool
}

// Name is the alert's alertname.
func (a Alert) Name() string { return a.Labels["alertname"] }

// AlertSource says which alerts fire now.
type AlertSource interface {
	Firing(ctx context.Context) ([]Alert, error)
}

// Alertmanager reads firing alerts (active, neither silenced nor
// inhibited) through Alertmanager's API v2, with its own client.
type Alertmanager struct {
	api *amclient.AlertmanagerAPI
	url string
}

var _ AlertSource = (*Alertmanager)(nil)

// NewAlertmanager is the client of the Alertmanager at rawURL
// (http://alertmanager.monitoring:9093). hc may be nil.
func NewAlertmanager(rawURL string, hc *http.Client) (*Alertmanager, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("health.alertmanager.url %q: want an http(s) URL such as http://alertmanager.monitoring:9093", rawURL)
	}
	cfg := amclient.DefaultTransportConfig().WithHost(u.Host).WithSchemes([]string{u.Scheme}).
		WithBasePath(strings.TrimSuffix(u.Path, "/") + amclient.DefaultBasePath)
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	api := amclient.New(httptransport.NewWithClient(cfg.Host, cfg.BasePath, cfg.Schemes, hc), strfmt.Default)
	return &Alertmanager{api: api, url: rawURL}, nil
}

// Firing lists the alerts that fire now: the active ones, and those that
// only drover's own silences hide (a silence hides pages, never a
// failure). Alerts that others silenced or that are inhibited do not count.
func (a *Alertmanager) Firing(ctx context.Context) ([]Alert, error) {
	yes, no := true, false
	resp, err := a.api.Alert.GetAlerts(alert.NewGetAlertsParamsWithContext(ctx).WithActive(&yes).WithSilenced(&yes).WithInhibited(&no))
	if err != nil {
		return nil, fmt.Errorf("read the alerts from %s: %w", a.url, err)
	}
	var ours map[string]string
	var out []Alert
	for _, g := range resp.Payload {
		if g == nil {
			continue
		}
		al := Alert{Labels: map[string]string(g.Labels), Summary: g.Annotations["summary"]}
		if g.Status != nil && len(g.Status.SilencedBy) > 0 {
			if ours == nil {
				if ours, err = a.droverSilences(ctx); err != nil {
					return nil, err
				}
			}
			if !allIn(g.Status.SilencedBy, ours) {
				continue // silenced by people: not the gate's
			}
			al.SilencedByDrover = true
		}
		if g.Fingerprint != nil {
			al.Fingerprint = *g.Fingerprint
		}
		if g.StartsAt != nil {
			al.StartsAt = time.Time(*g.StartsAt)
		}
		out = append(out, al)
	}
	return out, nil
}

// ParseMatchers parses Alertmanager matchers (alertname="Watchdog",
// severity=~"critical|page", team!=db).
func ParseMatchers(ss []string) (labels.Matchers, error) {
	var out labels.Matchers
	for _, s := range ss {
		m, err := labels.ParseMatcher(s)
		if err != nil {
			return nil, fmt.Errorf("matcher %q: %w", s, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// matchesAll: every matcher holds (true for none).
func matchesAll(ms labels.Matchers, l map[string]string) bool {
	for _, m := range ms {
		if !m.Matches(l[m.Name]) {
			return false
		}
	}
	return true
}

// matchesAny: some matcher holds.
func matchesAny(ms labels.Matchers, l map[string]string) bool {
	return slices.ContainsFunc(ms, func(m *labels.Matcher) bool { return m.Matches(l[m.Name]) })
}

// alerts: no selected alert fires that did not fire before the run. An
// alert firing at the baseline is shown and fails nothing, unless it
// matches health.blockingAlerts: then it blocks the run before any change.
func (g *Gate) alerts(ctx context.Context, _ rollout.GateInput) (outcome, error) {
	s := g.settings()
	sel, err := ParseMatchers(s.Alertmanager.Select)
	if err != nil {
		return outcome{}, err
	}
	ign, err := ParseMatchers(s.Alertmanager.Ignore)
	if err != nil {
		return outcome{}, err
	}
	block, err := ParseMatchers(s.BlockingAlerts)
	if err != nil {
		return outcome{}, err
	}
	firing, err := g.Alerts.Firing(ctx)
	if err != nil {
		return outcome{}, err
	}
	sort.Slice(firing, func(i, j int) bool {
		return firing[i].Name()+firing[i].Fingerprint < firing[j].Name()+firing[j].Fingerprint
	})
	var o outcome
	for _, a := range firing {
		if !matchesAll(sel, a.Labels) || matchesAny(ign, a.Labels) {
			continue
		}
		text := fmt.Sprintf("alert %s firing since %s", a.Name(), a.StartsAt.UTC().Format(time.RFC3339))
		if a.Summary != "" {
			text += ": " + a.Summary
		}
		if extra := alertLabels(a.Labels); extra != "" {
			text += " (" + extra + ")"
		}
		if a.SilencedByDrover {
			text += " [under drover's silence: it pages nobody, and still counts]"
		}
		o.fail("alert/"+a.Name()+"/"+a.Fingerprint, a.Labels["node"], len(block) > 0 && matchesAll(block, a.Labels), "%s", text)
	}
	return o, nil
}

// alertLabels lists an alert's labels but its name, for people.
func alertLabels(l map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(l)) {
		if k != "alertname" {
			parts = append(parts, k+"="+l[k])
		}
	}
	return strings.Join(parts, ", ")
}
