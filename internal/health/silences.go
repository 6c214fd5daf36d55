package health

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/go-openapi/strfmt"
	"github.com/prometheus/alertmanager/api/v2/client/silence"
	"github.com/prometheus/alertmanager/api/v2/models"
	"github.com/prometheus/alertmanager/pkg/labels"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/rollout"
)

// SilenceCreator is who drover's silences say created them.
const SilenceCreator = "drover"

// Silences holds, through Alertmanager's API v2, one silence per node
// under change (health.alertmanager.silences). Each carries the run's ID
// in its comment, so a resumed run finds and reuses its own and expires
// them all at its end.
type Silences struct {
	AM *Alertmanager
	// Matchers are the configured matchers; {node} is the node's name.
	Matchers []string
	RunID    string
	// For is how long a silence lasts unless expired first.
	For   time.Duration
	Clock clock.Clock
}

var _ rollout.Silencer = (*Silences)(nil)

// comment is the silence comment of a node of this run; its prefix
// "drover run ID:" names every silence of the run.
func (s *Silences) comment(node string) string {
	return s.runPrefix() + " node " + node + " is being upgraded (expired when it passed its health gate or was rolled back)"
}

func (s *Silences) runPrefix() string { return "drover run " + s.RunID + ":" }

// Silence creates the node's silence, or returns the one this run holds.
func (s *Silences) Silence(ctx context.Context, node string) (string, error) {
	mine, err := s.mine(ctx)
	if err != nil {
		return "", err
	}
	if id, ok := mine[s.comment(node)]; ok {
		return id, nil
	}
	var ms models.Matchers
	for _, raw := range s.Matchers {
		m, err := labels.ParseMatcher(strings.ReplaceAll(raw, "{node}", node))
		if err != nil {
			return "", fmt.Errorf("health.alertmanager.silences: %q: %w", raw, err)
		}
		ms = append(ms, &models.Matcher{
			Name: &m.Name, Value: &m.Value,
			IsRegex: ptrTo(m.Type == labels.MatchRegexp || m.Type == labels.MatchNotRegexp),
			IsEqual: ptrTo(m.Type == labels.MatchEqual || m.Type == labels.MatchRegexp),
		})
	}
	now := s.Clock.Now()
	starts, ends := strfmt.DateTime(now), strfmt.DateTime(now.Add(s.For))
	resp, err := s.AM.api.Silence.PostSilences(silence.NewPostSilencesParamsWithContext(ctx).WithSilence(&models.PostableSilence{Silence: models.Silence{
		Matchers: ms, StartsAt: &starts, EndsAt: &ends, CreatedBy: ptrTo(SilenceCreator), Comment: ptrTo(s.comment(node)),
	}}))
	if err != nil {
		return "", fmt.Errorf("create a silence in %s: %w", s.AM.url, err)
	}
	return resp.Payload.SilenceID, nil
}

// Expire ends the node's silence of this run, if there is one.
func (s *Silences) Expire(ctx context.Context, node string) (bool, error) {
	n, err := s.expire(ctx, func(comment string) bool { return comment == s.comment(node) })
	return n > 0, err
}

// ExpireAll ends every silence of this run.
func (s *Silences) ExpireAll(ctx context.Context) error {
	_, err := s.expire(ctx, func(comment string) bool { return strings.HasPrefix(comment, s.runPrefix()+" ") })
	return err
}

func (s *Silences) expire(ctx context.Context, which func(comment string) bool) (int, error) {
	mine, err := s.mine(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for comment, id := range mine {
		if !which(comment) {
			continue
		}
		if _, err := s.AM.api.Silence.DeleteSilence(silence.NewDeleteSilenceParamsWithContext(ctx).WithSilenceID(strfmt.UUID(id))); err != nil {
			return n, fmt.Errorf("expire silence %s in %s: %w", id, s.AM.url, err)
		}
		n++
	}
	return n, nil
}

// mine are this run's silences that are not expired, ID by comment.
func (s *Silences) mine(ctx context.Context) (map[string]string, error) {
	all, err := s.AM.droverSilences(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for id, comment := range all {
		if strings.HasPrefix(comment, s.runPrefix()+" ") {
			out[comment] = id
		}
	}
	return out, nil
}

// droverSilences are the silences drover created (any run's) that are
// not expired: comment by ID.
func (a *Alertmanager) droverSilences(ctx context.Context) (map[string]string, error) {
	resp, err := a.api.Silence.GetSilences(silence.NewGetSilencesParamsWithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("read the silences of %s: %w", a.url, err)
	}
	out := map[string]string{}
	for _, g := range resp.Payload {
		if g == nil || g.ID == nil || g.Comment == nil || g.CreatedBy == nil || *g.CreatedBy != SilenceCreator ||
			g.Status == nil || g.Status.State == nil || *g.Status.State == models.SilenceStatusStateExpired {
			continue
		}
		out[*g.ID] = *g.Comment
	}
	return out, nil
}

// allIn says every id is a key of set.
func allIn(ids []string, set map[string]string) bool {
	for _, id := range ids {
		if _, ok := set[id]; !ok {
			return false
		}
	}
	return true
}

func ptrTo[T any](v T) *T { return &v }
