package version

import (
	"fmt"
	"sort"
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

// SkipMinorError is an upgrade that skips a minor of Talos or of
// Kubernetes (What names which).
type SkipMinorError struct {
	What     string
	From, To Version
	Hops     []string
}

func (e *SkipMinorError) Error() string {
	how := "upgrade one minor at a time"
	if e.What == "Talos" {
		how += ", each to its latest patch"
	}
	return fmt.Sprintf("%s %s -> %s skips a minor: %s (%s -> %s), one run each; or pass --allow-skip-minor",
		e.What, e.From, e.To, how, "v"+minorOf(e.From).String(), strings.Join(e.Hops, " -> "))
}

// CheckHops refuses an upgrade of more than one Talos minor unless allowed.
func CheckHops(from, to Version, allowSkip bool) error {
	return checkHops("Talos", from, to, Hops(from, to), allowSkip)
}

func checkHops(what string, from, to Version, hops []string, allowSkip bool) error {
	if len(hops) > 1 && minorOf(from).Major == minorOf(to).Major && !allowSkip {
		return &SkipMinorError{What: what, From: from, To: to, Hops: hops}
	}
	return nil
}

// KubernetesHops lists the Kubernetes minors an upgrade passes through.
func KubernetesHops(from, to Version) []string {
	if from.IsZero() || to.IsZero() {
		return nil
	}
	return Hops(from, to)
}

// CheckKubernetesHops refuses a Kubernetes upgrade of more than one minor
// unless allowed.
func CheckKubernetesHops(from, to Version, allowSkip bool) error {
	return checkHops("Kubernetes", from, to, KubernetesHops(from, to), allowSkip)
}

// MaxKubeletSkew is how many minors older than kube-apiserver a kubelet
// may be (Kubernetes' version skew policy, since 1.28).
const MaxKubeletSkew = 3

// SkewError is a plan that would break Kubernetes' version skew policy.
type SkewError struct {
	Rule  string
	Nodes []string
}

func (e *SkewError) Error() string {
	return fmt.Sprintf("the Kubernetes version skew policy forbids this plan (%s): %s", e.Rule, strings.Join(e.Nodes, "; "))
}

// CheckSkew checks the kubelets the nodes run against the API server the
// plan ends with: a kubelet never newer than kube-apiserver, at most
// MaxKubeletSkew minors older. kubelets maps node name to version.
func CheckSkew(apiServer Version, kubelets map[string]Version) error {
	if apiServer.IsZero() {
		return nil
	}
	api := minorOf(apiServer)
	newer, older := map[Version][]string{}, map[Version][]string{}
	for _, n := range sortedNames(kubelets) {
		k := kubelets[n]
		km := minorOf(k)
		switch {
		case api.less(km):
			newer[k] = append(newer[k], n)
		case km.Major == api.Major && api.Minor-km.Minor > MaxKubeletSkew:
			older[k] = append(older[k], n)
		}
	}
	if len(newer) > 0 {
		return &SkewError{Rule: "a kubelet must not be newer than kube-apiserver " + apiServer.String(), Nodes: grouped(newer, func(Version) string { return "" })}
	}
	if len(older) > 0 {
		return &SkewError{Rule: fmt.Sprintf("a kubelet may be at most %d minors older than kube-apiserver %s", MaxKubeletSkew, apiServer),
			Nodes: grouped(older, func(k Version) string { return fmt.Sprintf(", %d minors behind", api.Minor-minorOf(k).Minor) })}
	}
	return nil
}

// grouped says, per kubelet version, which nodes run it (a few by name).
func grouped(by map[Version][]string, suffix func(Version) string) []string {
	var vs []Version
	for v := range by {
		vs = append(vs, v)
	}
	sort.Slice(vs, func(i, j int) bool { return vs[i].Compare(vs[j]) < 0 })
	var out []string
	for _, v := range vs {
		names := by[v]
		who := strings.Join(names, ", ")
		if len(names) > 4 {
			who = fmt.Sprintf("%s and %d more nodes", strings.Join(names[:3], ", "), len(names)-3)
		}
		verb := " runs "
		if len(names) > 1 {
			verb = " run "
		}
		out = append(out, who+verb+"kubelet "+v.String()+suffix(v))
	}
	return out
}

func sortedNames(m map[string]Version) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
