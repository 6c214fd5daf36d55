package version

import (
	"fmt"
	"strings"
)

// minor is a MAJOR.MINOR pair.
type minor struct{ Major, Minor int }

func (m minor) String() string { return fmt.Sprintf("%d.%d", m.Major, m.Minor) }

func minorOf(v Version) minor { return minor{v.Major, v.Minor} }

// kubernetesSupport is the Kubernetes minors each Talos minor supports,
// from the Talos support matrix. Keep it current with new Talos releases:
// a Talos minor missing here is allowed with a warning.
var kubernetesSupport = map[minor][2]minor{
	{1, 8}:  {{1, 26}, {1, 31}},
	{1, 9}:  {{1, 27}, {1, 32}},
	{1, 10}: {{1, 28}, {1, 33}},
	{1, 11}: {{1, 29}, {1, 34}},
	{1, 12}: {{1, 30}, {1, 35}},
	{1, 13}: {{1, 31}, {1, 36}},
}

func (m minor) less(o minor) bool {
	return m.Major < o.Major || m.Major == o.Major && m.Minor < o.Minor
}

// CompatibilityError is a Talos and Kubernetes pair Talos does not support.
type CompatibilityError struct {
	Talos, Kubernetes Version
	Min, Max          string
}

func (e *CompatibilityError) Error() string {
	return fmt.Sprintf("Talos %s supports Kubernetes %s to %s, not %s", e.Talos, e.Min, e.Max, e.Kubernetes)
}

// CheckCompatibility refuses a target pair outside the support matrix. It
// returns a warning for a Talos minor the table does not know yet.
func CheckCompatibility(to Pair) (warning string, err error) {
	if to.Kubernetes.IsZero() {
		return "", nil
	}
	r, ok := kubernetesSupport[minorOf(to.Talos)]
	if !ok {
		return fmt.Sprintf("Talos %s is not in drover's support table: check the Talos support matrix for Kubernetes %s yourself", minorOf(to.Talos), to.Kubernetes), nil
	}
	k := minorOf(to.Kubernetes)
	if k.less(r[0]) || r[1].less(k) {
		return "", &CompatibilityError{Talos: to.Talos, Kubernetes: to.Kubernetes, Min: "v" + r[0].String(), Max: "v" + r[1].String()}
	}
	return "", nil
}

// Hops lists the Talos minors an upgrade passes through, one minor at a
// time: v1.11.3 -> v1.13.1 is [v1.12, v1.13]. A major change is one hop.
func Hops(from, to Version) []string {
	f, t := minorOf(from), minorOf(to)
	if f.Major != t.Major || !f.less(t) {
		if f != t {
			return []string{"v" + t.String()}
		}
		return nil
	}
	var out []string
	for m := f.Minor + 1; m <= t.Minor; m++ {
		out = append(out, fmt.Sprintf("v%d.%d", t.Major, m))
	}
	return out
}

// SkipMinorError is an upgrade that skips a Talos minor.
type SkipMinorError struct {
	From, To Version
	Hops     []string
}

func (e *SkipMinorError) Error() string {
	return fmt.Sprintf("Talos %s -> %s skips a minor: upgrade one minor at a time (%s -> %s), each to its latest patch, one run each; or pass --allow-skip-minor",
		e.From, e.To, "v"+minorOf(e.From).String(), strings.Join(e.Hops, " -> "))
}

// CheckHops refuses an upgrade of more than one Talos minor unless allowed.
func CheckHops(from, to Version, allowSkip bool) error {
	h := Hops(from, to)
	if len(h) > 1 && minorOf(from).Major == minorOf(to).Major && !allowSkip {
		return &SkipMinorError{From: from, To: to, Hops: h}
	}
	return nil
}
