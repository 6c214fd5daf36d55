package kube_test

import (
	"strings"
	"testing"

	"github.com/prox-ops/drover/internal/kube"
	"github.com/prox-ops/drover/internal/rollout"
)

// TestDroversOwnAnnotationsAreNoIdentity: drover's own run and step
// annotations on a Node, there before the change (written as the run
// went) and not yet on the recreated Node, are not a lost identity, even
// with an operator's own health.identityIgnore; a lost operator
// annotation is.
func TestDroversOwnAnnotationsAreNoIdentity(t *testing.T) {
	before := rollout.Identity{UID: "a", Annotations: map[string]string{kube.OwnKeyPrefix + "run": "r1", kube.OwnKeyPrefix + "step": "drain", "team": "media"}}
	after := rollout.Identity{UID: "b", Annotations: map[string]string{}}
	for _, ignore := range [][]string{nil, {"example.com/*"}} {
		d := kube.DiffIdentity(before, after, ignore)
		if len(d.Lost) != 1 || !strings.Contains(d.Lost[0], "team") {
			t.Errorf("ignore %v: lost %v", ignore, d.Lost)
		}
	}
}
