package lab

import (
	"context"
	"testing"

	"github.com/prox-ops/drover/internal/journal"
	"github.com/prox-ops/drover/internal/plan"
	"github.com/prox-ops/drover/internal/version"
)

// BenchmarkLabRun measures a full 15-node lab upgrade in wall time: the
// lab's promise is that a two-hour upgrade plays in seconds.
func BenchmarkLabRun(b *testing.B) {
	for _, bc := range []struct {
		name     string
		strategy version.Strategy
		to       version.Pair
	}{{"cattle", version.Cattle, minor}, {"pets", version.Pets, patch}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				cfg := DefaultConfig()
				l, err := New(Options{Config: cfg})
				if err != nil {
					b.Fatal(err)
				}
				p := plan.Build(plan.Input{Nodes: cfg.Nodes, Strategy: bc.strategy, From: start, To: bc.to, MaxParallelWorkers: 1, Images: ownImages(b, l, cfg.Nodes, bc.to)})
				if _, err := l.Engine(&journal.Memory{}, nil, "bench").Run(context.Background(), p); err != nil {
					b.Fatal(err)
				}
				l.Close()
			}
		})
	}
}
