package cli

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/prox-ops/drover/internal/rollout"
)

// Whereabouts follows the step each node is in (a rollout.Sink), so that a
// second signal can say, as drover stops at once, where the run stood.
// Safe for concurrent use.
type Whereabouts struct {
	mu    sync.Mutex
	steps map[string]string
}

// Event implements rollout.Sink.
func (w *Whereabouts) Event(e rollout.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.steps == nil {
		w.steps = map[string]string{}
	}
	node := e.Node
	if node == "" {
		node = "(run)"
	}
	switch e.Kind {
	case rollout.EventStep:
		w.steps[node] = fmt.Sprintf("%s %s", e.Step, e.Status)
	case rollout.EventNodeDone:
		w.steps[node] = string(e.NodeReport.Outcome)
	case rollout.EventRunFinished:
		w.steps = map[string]string{}
	}
}

// String says where each node stood.
func (w *Whereabouts) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.steps) == 0 {
		return "no node was being changed"
	}
	var parts []string
	for _, n := range slices.Sorted(maps.Keys(w.steps)) {
		parts = append(parts, n+": "+w.steps[n])
	}
	return strings.Join(parts, "; ")
}

// noArgs refuses positional arguments as a usage error (exit 2).
func noArgs(cmd *cobra.Command, args []string) error {
	if err := cobra.NoArgs(cmd, args); err != nil {
		return usage(err)
	}
	return nil
}
