package version

import "testing"

// FuzzParse: a version that parses prints back to a form that parses to
// the same version.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"v1.11.3", "1.12.0", "v2.0.0-rc.1", "v01.2.3", "", "v1.2", "v1.2.3+x"} {
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, allowPre bool) {
		v, err := Parse(s, allowPre)
		if err != nil {
			return
		}
		again, err := Parse(v.String(), true)
		if err != nil || again != v {
			t.Fatalf("%q -> %s -> %v, %v", s, v, again, err)
		}
		if !allowPre && v.Pre != "" {
			t.Fatalf("%q: pre-release accepted", s)
		}
	})
}
