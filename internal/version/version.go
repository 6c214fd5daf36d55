// Package version parses Talos and Kubernetes versions, reads them from
// Terraform files and decides the upgrade strategy from their delta.
package version

import (
	"fmt"
	"strconv"
	"strings"
)

// Version is a semantic version such as v1.11.3.
type Version struct {
	Major, Minor, Patch int
	// Pre is the pre-release part after '-', empty for a release.
	Pre string
}

// ParseError is a version that does not parse.
type ParseError struct {
	Input string
	Why   string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("version %q: %s", e.Input, e.Why)
}

// Parse parses "v1.11.3" or "1.11.3". Pre-releases ("v1.12.0-beta.1") are
// refused unless allowPre is set. Build metadata is not accepted.
func Parse(s string, allowPre bool) (Version, error) {
	in := s
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "v")
	if s == "" {
		return Version{}, &ParseError{in, "empty"}
	}
	if strings.Contains(s, "+") {
		return Version{}, &ParseError{in, "build metadata (+...) is not supported"}
	}
	core, pre, hasPre := strings.Cut(s, "-")
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return Version{}, &ParseError{in, "want MAJOR.MINOR.PATCH, such as v1.11.3"}
	}
	var nums [3]int
	for i, p := range parts {
		if p == "" || (len(p) > 1 && p[0] == '0') {
			return Version{}, &ParseError{in, fmt.Sprintf("%q is not a version number", p)}
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return Version{}, &ParseError{in, fmt.Sprintf("%q is not a version number", p)}
		}
		nums[i] = n
	}
	if hasPre {
		if pre == "" {
			return Version{}, &ParseError{in, "empty pre-release"}
		}
		if !allowPre {
			return Version{}, &ParseError{in, "is a pre-release; pre-releases are refused unless allowed (versions.allowPrerelease)"}
		}
	}
	return Version{Major: nums[0], Minor: nums[1], Patch: nums[2], Pre: pre}, nil
}

// MustParse parses a version known to be valid, allowing pre-releases.
func MustParse(s string) Version {
	v, err := Parse(s, true)
	if err != nil {
		panic(err)
	}
	return v
}

// String returns the version with a leading "v".
func (v Version) String() string {
	s := fmt.Sprintf("v%d.%d.%d", v.Major, v.Minor, v.Patch)
	if v.Pre != "" {
		s += "-" + v.Pre
	}
	return s
}

// IsZero reports whether v is unset.
func (v Version) IsZero() bool { return v == Version{} }

// Compare returns -1, 0 or 1. A pre-release sorts before its release;
// pre-release identifiers compare as strings.
func (v Version) Compare(o Version) int {
	for _, d := range [...]int{v.Major - o.Major, v.Minor - o.Minor, v.Patch - o.Patch} {
		if d < 0 {
			return -1
		}
		if d > 0 {
			return 1
		}
	}
	switch {
	case v.Pre == o.Pre:
		return 0
	case v.Pre == "":
		return 1
	case o.Pre == "":
		return -1
	case v.Pre < o.Pre:
		return -1
	default:
		return 1
	}
}

// Delta is the size of a version change.
type Delta int

// The sizes of a version change, smallest first.
const (
	DeltaNone Delta = iota
	DeltaPatch
	DeltaMinor
	DeltaMajor
	DeltaDowngrade
)

func (d Delta) String() string {
	return [...]string{"none", "patch", "minor", "major", "downgrade"}[d]
}

// DeltaOf classifies the change from one version to another.
func DeltaOf(from, to Version) Delta {
	switch c := from.Compare(to); {
	case c == 0:
		return DeltaNone
	case c > 0:
		return DeltaDowngrade
	case from.Major != to.Major:
		return DeltaMajor
	case from.Minor != to.Minor:
		return DeltaMinor
	default:
		return DeltaPatch
	}
}
