package version

import (
	"fmt"
	"strings"
)

// Strategy is how nodes are upgraded.
type Strategy string

// The strategies.
const (
	// Pets upgrades nodes in place through the Talos API.
	Pets Strategy = "pets"
	// Cattle replaces each node's VM from a new template.
	Cattle Strategy = "cattle"
	// NoChange means there is nothing to upgrade.
	NoChange Strategy = "none"
)

// Label is the pull-request label for the strategy.
func (s Strategy) Label() string {
	switch s {
	case Pets:
		return "upgrade-pets"
	case Cattle:
		return "upgrade-cattle"
	}
	return ""
}

// Pair is the Talos and Kubernetes versions of a cluster at one point.
type Pair struct {
	Talos      Version
	Kubernetes Version
}

func (p Pair) String() string {
	if p.Kubernetes.IsZero() {
		return "Talos " + p.Talos.String()
	}
	return fmt.Sprintf("Talos %s, Kubernetes %s", p.Talos, p.Kubernetes)
}

// Decision is the chosen strategy and why.
type Decision struct {
	Strategy         Strategy `json:"strategy"`
	Label            string   `json:"label"`
	ApprovalRequired bool     `json:"approvalRequired"`
	// Rationale is one sentence an operator can read in a PR comment.
	Rationale string `json:"rationale"`
	// TalosDelta and KubernetesDelta are the sizes of each change.
	TalosDelta      Delta `json:"-"`
	KubernetesDelta Delta `json:"-"`
}

// DowngradeError is a target older than the current version.
type DowngradeError struct {
	What     string
	From, To Version
}

func (e *DowngradeError) Error() string {
	return fmt.Sprintf("%s %s -> %s is a downgrade; drover only upgrades (roll back with the runbook)", e.What, e.From, e.To)
}

// Decide picks the strategy for a change: a patch is upgraded in place
// (pets), a minor or major change replaces nodes (cattle), and a major change
// or a target on the approval list needs an explicit approval. When Talos and
// Kubernetes both change, the larger change decides. A Kubernetes version
// left zero in from or to is treated as unchanged.
func Decide(from, to Pair, approvalList []Version) (Decision, error) {
	td := DeltaOf(from.Talos, to.Talos)
	if td == DeltaDowngrade {
		return Decision{}, &DowngradeError{"Talos", from.Talos, to.Talos}
	}
	kd := DeltaNone
	if !from.Kubernetes.IsZero() && !to.Kubernetes.IsZero() {
		kd = DeltaOf(from.Kubernetes, to.Kubernetes)
		if kd == DeltaDowngrade {
			return Decision{}, &DowngradeError{"Kubernetes", from.Kubernetes, to.Kubernetes}
		}
	}
	d := Decision{TalosDelta: td, KubernetesDelta: kd}
	biggest, what, f, t := td, "Talos", from.Talos, to.Talos
	if kd > td {
		biggest, what, f, t = kd, "Kubernetes", from.Kubernetes, to.Kubernetes
	}
	switch biggest {
	case DeltaNone:
		d.Strategy = NoChange
		d.Rationale = fmt.Sprintf("Nothing to do: the cluster is already at %s.", to)
		return d, nil
	case DeltaPatch:
		d.Strategy = Pets
		d.Rationale = fmt.Sprintf("%s %s -> %s is a patch release, so nodes are upgraded in place through the Talos API (pets).", what, f, t)
	case DeltaMinor:
		d.Strategy = Cattle
		d.Rationale = fmt.Sprintf("%s %s -> %s is a minor release, so each node is drained and its VM recreated from the new template (cattle).", what, f, t)
	case DeltaMajor:
		d.Strategy = Cattle
		d.ApprovalRequired = true
		d.Rationale = fmt.Sprintf("%s %s -> %s is a major release, so each node is drained and its VM recreated from the new template (cattle), after an explicit approval.", what, f, t)
	}
	for _, a := range approvalList {
		hit := ""
		if a.Compare(to.Talos) == 0 && td != DeltaNone {
			hit = "Talos " + a.String()
		} else if a.Compare(to.Kubernetes) == 0 && kd != DeltaNone {
			hit = "Kubernetes " + a.String()
		}
		if hit != "" && !d.ApprovalRequired {
			d.ApprovalRequired = true
			d.Rationale = strings.TrimSuffix(d.Rationale, ".") + fmt.Sprintf(", and %s is on the approval list, so it needs an explicit approval.", hit)
		}
	}
	d.Label = d.Strategy.Label()
	return d, nil
}

// ParsePair reads a Pair back from its String form ("Talos v1.11.3" or
// "Talos v1.11.3, Kubernetes v1.34.1"), as a run's journal header holds it.
func ParsePair(s string) (Pair, error) {
	var p Pair
	talos, kube, hasKube := strings.Cut(s, ", ")
	t, ok := strings.CutPrefix(talos, "Talos ")
	if !ok {
		return p, &ParseError{Input: s, Why: `want "Talos vX.Y.Z[, Kubernetes vX.Y.Z]"`}
	}
	var err error
	if p.Talos, err = Parse(t, true); err != nil {
		return p, err
	}
	if hasKube {
		k, ok := strings.CutPrefix(kube, "Kubernetes ")
		if !ok {
			return p, &ParseError{Input: s, Why: `want "Talos vX.Y.Z[, Kubernetes vX.Y.Z]"`}
		}
		if p.Kubernetes, err = Parse(k, true); err != nil {
			return p, err
		}
	}
	return p, nil
}
