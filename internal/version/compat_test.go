package version

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestCheckCompatibility(t *testing.T) {
	tests := []struct {
		talos, kube string
		wantErr     bool
		wantWarn    bool
	}{
		{"v1.11.3", "v1.34.1", false, false},
		{"v1.12.0", "v1.35.0", false, false},
		{"v1.12.0", "v1.30.4", false, false},
		{"v1.12.0", "v1.36.0", true, false},
		{"v1.11.4", "v1.28.9", true, false},
		{"v1.13.0", "v1.36.2", false, false},
		{"v2.0.0", "v1.34.1", false, true},
	}
	for _, tc := range tests {
		warn, err := CheckCompatibility(Pair{Talos: MustParse(tc.talos), Kubernetes: MustParse(tc.kube)})
		var ce *CompatibilityError
		if tc.wantErr != errors.As(err, &ce) || tc.wantWarn != (warn != "") {
			t.Errorf("%s + %s: warn %q err %v", tc.talos, tc.kube, warn, err)
		}
		if ce != nil && !strings.Contains(ce.Error(), "supports Kubernetes") {
			t.Errorf("message %q", ce)
		}
	}
}

func TestHops(t *testing.T) {
	tests := []struct {
		from, to string
		want     []string
		refused  bool
	}{
		{"v1.11.3", "v1.11.4", nil, false},
		{"v1.11.3", "v1.12.0", []string{"v1.12"}, false},
		{"v1.11.3", "v1.13.1", []string{"v1.12", "v1.13"}, true},
		{"v1.10.0", "v1.13.0", []string{"v1.11", "v1.12", "v1.13"}, true},
		{"v1.13.2", "v2.0.0", []string{"v2.0"}, false},
	}
	for _, tc := range tests {
		got := Hops(MustParse(tc.from), MustParse(tc.to))
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Hops(%s, %s) = %v, want %v", tc.from, tc.to, got, tc.want)
		}
		err := CheckHops(MustParse(tc.from), MustParse(tc.to), false)
		var se *SkipMinorError
		if tc.refused != errors.As(err, &se) {
			t.Errorf("CheckHops(%s, %s) = %v", tc.from, tc.to, err)
		}
		if err := CheckHops(MustParse(tc.from), MustParse(tc.to), true); err != nil {
			t.Errorf("allowed skip still refused: %v", err)
		}
	}
}
