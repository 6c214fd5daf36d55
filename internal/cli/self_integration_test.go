package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prox-ops/drover/internal/testenv"
)

// TestDroverFindsTheNodeItRunsOn, against the real API server: drover in a
// runner pod (owned by an EphemeralRunner, as ARC's are) finds its node
// from NODE_NAME, and without it from its own pod ($POD_NAMESPACE/
// $HOSTNAME); it plans that node last and says so. A pod name that is not a
// pod of the cluster, or no namespace at all, is a run from outside.
func TestDroverFindsTheNodeItRunsOn(t *testing.T) {
	testenv.Require(t, env)
	k := testenv.NewKubelets(env.Client, "none")
	defer k.Close()
	ctx := context.Background()
	nodes := []string{"self-cp-1", "self-w-1", "self-w-2", "self-w-3"}
	for i, n := range nodes {
		if err := k.AddNode(ctx, testenv.NodeSpec{Name: n, ControlPlane: i == 0, Talos: "v1.11.3", Kubelet: "v1.34.1"}); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { env.DeleteNodes(nodes...) })
	env.WaitSchedulable(t, nodes...)
	pod := env.RunnerPod(t, "self-runners", "cattle-upgrade-abc12-runner-xyz34", "self-w-1")
	cfg := filepath.Join(t.TempDir(), "drover.yaml")
	write(t, cfg, `cluster: {name: it}
nodes:
  - {name: self-cp-1, role: controlplane, ip: 127.0.0.31, proxmoxHost: a}
  - {name: self-w-1, role: worker, ip: 127.0.0.32, proxmoxHost: a}
  - {name: self-w-2, role: worker, ip: 127.0.0.33, proxmoxHost: b}
  - {name: self-w-3, role: worker, ip: 127.0.0.34, proxmoxHost: c}
`)
	for _, tc := range []struct {
		name   string
		env    map[string]string
		node   string
		source string
	}{
		{"NODE_NAME from the downward API", map[string]string{"NODE_NAME": "self-w-1", "POD_NAME": pod.Name, "POD_NAMESPACE": pod.Namespace}, "self-w-1", "NODE_NAME"},
		{"its own pod, read back", map[string]string{"HOSTNAME": pod.Name, "POD_NAMESPACE": pod.Namespace}, "self-w-1", "its pod self-runners/" + pod.Name},
		{"a host that is no pod of the cluster", map[string]string{"HOSTNAME": "laptop", "POD_NAMESPACE": pod.Namespace}, "", ""},
		{"no namespace: outside the cluster", map[string]string{"HOSTNAME": pod.Name}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			s := testStreams(t, &out, &errb)
			s.Getenv = func(k string) string { return tc.env[k] }
			code := Run(ctx, s, []string{"plan", "--config", cfg, "--kubeconfig", env.Kubeconfig, "--to-talos", "v1.12.0", "--output", "json"})
			var p struct {
				Batches []struct {
					Nodes []struct{ Name string } `json:"nodes"`
				} `json:"batches"`
				RunsOn  *struct{ Node, Source string } `json:"runsOn"`
				Refused string                         `json:"refused"`
			}
			if code != ExitOK || json.Unmarshal(out.Bytes(), &p) != nil {
				t.Fatalf("exit %d\n%s%s", code, out.String(), errb.String())
			}
			last := p.Batches[len(p.Batches)-1].Nodes[0].Name
			if tc.node == "" {
				if p.RunsOn != nil || last != "self-w-3" {
					t.Fatalf("outside the cluster: runsOn %+v, last %s", p.RunsOn, last)
				}
				return
			}
			if p.RunsOn == nil || p.RunsOn.Node != tc.node || p.RunsOn.Source != tc.source || last != tc.node || p.Refused != "" {
				t.Fatalf("runsOn %+v, last %s, refused %q: want %s from %s, last", p.RunsOn, last, p.Refused, tc.node, tc.source)
			}
		})
	}
	// --only drover's own node is refused before any change.
	var out, errb bytes.Buffer
	s := testStreams(t, &out, &errb)
	s.Getenv = func(k string) string { return map[string]string{"NODE_NAME": "self-w-1"}[k] }
	code := Run(ctx, s, []string{"upgrade", "--config", cfg, "--kubeconfig", env.Kubeconfig, "--to-talos", "v1.12.0", "--only", "self-w-1", "--yes"})
	if code != ExitBlocked || !strings.Contains(errb.String(), "--only self-w-1 would drain self-w-1, the node drover runs on") {
		t.Fatalf("--only drover's node: exit %d\n%s", code, errb.String())
	}
}
