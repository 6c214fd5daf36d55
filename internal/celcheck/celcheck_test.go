package celcheck

import (
	"strings"
	"testing"
)

func TestEval(t *testing.T) {
	ceph := map[string]any{"status": map[string]any{"ceph": map[string]any{"health": "HEALTH_WARN"}}}
	tests := []struct {
		expr    string
		obj     map[string]any
		want    bool
		wantErr string
	}{
		{"status.ceph.health in ['HEALTH_OK']", ceph, false, ""},
		{"status.ceph.health in ['HEALTH_OK', 'HEALTH_WARN']", ceph, true, ""},
		{"has(spec.replicas) && spec.replicas >= 2", map[string]any{"spec": map[string]any{"replicas": int64(3)}}, true, ""},
		{"object.kind == 'CephCluster'", map[string]any{"kind": "CephCluster"}, true, ""},
		{"status.missing == 'x'", ceph, false, "no such key"},
	}
	for _, tc := range tests {
		p, err := Compile(tc.expr)
		if err != nil {
			t.Fatalf("%s: %v", tc.expr, err)
		}
		got, err := p.Eval(tc.obj)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err = %v", tc.expr, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s = %v, %v; want %v", tc.expr, got, err, tc.want)
		}
	}
}

func TestCompileRejects(t *testing.T) {
	for _, bad := range []string{"status.ceph.health ==", "1 + 2", "'text'"} {
		if _, err := Compile(bad); err == nil {
			t.Errorf("%q compiled", bad)
		}
	}
}
