package health

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/prox-ops/drover/internal/clock"
	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/rollout"
)

// stuckReader is an API server that never answers: every read waits for
// its context.
type stuckReader struct{}

func (stuckReader) Node(ctx context.Context, _ string) (*corev1.Node, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
func (stuckReader) Nodes(ctx context.Context) ([]*corev1.Node, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
func (stuckReader) PodsOn(ctx context.Context, _ string) ([]*corev1.Pod, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
func (stuckReader) PodsIn(ctx context.Context, _ string, _ labels.Selector) ([]*corev1.Pod, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}
func (stuckReader) Unsettled(ctx context.Context) ([]*corev1.Pod, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestACheckThatHangsEndsAtItsTimeout: a check whose reads never come back
// ends at health.checkTimeout, fails as "could not run" and says why; the
// gate does not hang with it.
func TestACheckThatHangsEndsAtItsTimeout(t *testing.T) {
	g := &Gate{Reader: stuckReader{}, Clock: clock.Real{}, Settings: config.Health{
		CheckTimeout: config.D(20 * time.Millisecond),
		Disable:      []string{CheckDNS, CheckNetwork, CheckScheduling, CheckStorage, CheckFlux},
	}}
	res := g.Check(context.Background(), rollout.GateInput{Node: plan.Node{Node: config.Node{Name: "n-1"}}})
	for _, name := range []string{CheckNodeReadiness, CheckPodHealth} {
		var c *rollout.CheckResult
		for i := range res.Checks {
			if res.Checks[i].Name == name {
				c = &res.Checks[i]
			}
		}
		if c == nil || c.Passed || len(c.Diagnostics) == 0 || !strings.Contains(c.Diagnostics[0], "could not run: context deadline exceeded") {
			t.Errorf("%s: %+v", name, c)
		}
	}
}
