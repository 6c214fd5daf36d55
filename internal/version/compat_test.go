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

func TestKubernetesGoesOneMinorAtATime(t *testing.T) {
	tests := []struct {
		from, to string
		allow    bool
		wantErr  string
	}{
		{"v1.34.1", "v1.35.0", false, ""},
		{"v1.34.1", "v1.34.3", false, ""},
		{"v1.34.1", "v1.36.0", false, "Kubernetes v1.34.1 -> v1.36.0 skips a minor: upgrade one minor at a time (v1.34 -> v1.35 -> v1.36)"},
		{"v1.34.1", "v1.36.0", true, ""},
	}
	for _, tc := range tests {
		err := CheckKubernetesHops(MustParse(tc.from), MustParse(tc.to), tc.allow)
		if (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s -> %s (allow %v): %v, want %q", tc.from, tc.to, tc.allow, err, tc.wantErr)
		}
	}
}

func TestSkewPolicy(t *testing.T) {
	tests := []struct {
		name     string
		api      string
		kubelets map[string]string
		wantErr  string
	}{
		{"all at the API server", "v1.35.0", map[string]string{"a": "v1.35.0", "b": "v1.35.0"}, ""},
		{"three minors older is allowed", "v1.35.0", map[string]string{"a": "v1.32.4"}, ""},
		{"four minors older is not", "v1.35.0", map[string]string{"a": "v1.31.2", "b": "v1.34.0"}, "at most 3 minors older than kube-apiserver v1.35.0): a runs kubelet v1.31.2, 4 minors behind"},
		{"a kubelet newer than the API server", "v1.34.1", map[string]string{"a": "v1.35.0"}, "a kubelet must not be newer than kube-apiserver v1.34.1): a runs kubelet v1.35.0"},
		{"a newer patch is the same minor", "v1.34.1", map[string]string{"a": "v1.34.3"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := map[string]Version{}
			for n, v := range tc.kubelets {
				k[n] = MustParse(v)
			}
			err := CheckSkew(MustParse(tc.api), k)
			var se *SkewError
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (!errors.As(err, &se) || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
