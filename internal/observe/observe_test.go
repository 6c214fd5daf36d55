package observe

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/prox-ops/drover/internal/config"

	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/version"
)

func pair(t, k string) version.Pair {
	p := version.Pair{Talos: version.MustParse(t)}
	if k != "" {
		p.Kubernetes = version.MustParse(k)
	}
	return p
}

func nodes(vs map[string]string) map[string]rollout.Observed {
	out := map[string]rollout.Observed{}
	for n, v := range vs {
		out[n] = rollout.Observed{Versions: pair(v, "v1.34.1"), Source: SourceNode}
	}
	return out
}

func TestResolve(t *testing.T) {
	to := pair("v1.12.0", "")
	tests := []struct {
		name      string
		claim     Claim
		obs       map[string]rollout.Observed
		wantFrom  string
		wantMixed bool
		wantErr   any
		errHas    []string
	}{
		{"no claim: the nodes say where the cluster stands", Claim{To: to}, nodes(map[string]string{"a": "v1.11.3", "b": "v1.11.3"}), "Talos v1.11.3, Kubernetes v1.34.1", false, nil, nil},
		{"a claim the nodes confirm", Claim{From: pair("v1.11.3", ""), To: to, Source: "--from-talos"}, nodes(map[string]string{"a": "v1.11.3"}), "Talos v1.11.3, Kubernetes v1.34.1", false, nil, nil},
		{"a claim the nodes contradict", Claim{From: pair("v1.12.0", ""), To: pair("v1.12.1", ""), Source: "--from-talos"}, nodes(map[string]string{"a": "v1.11.3", "b": "v1.11.3"}), "", false, new(*MismatchError), []string{"--from-talos", "a, b run Talos v1.11.3"}},
		{"a claim of the target while the nodes are behind", Claim{From: pair("v1.12.0", ""), To: pair("v1.12.0", ""), Source: "--from-talos"}, nodes(map[string]string{"a": "v1.11.3"}), "", false, new(*MismatchError), []string{"a runs Talos v1.11.3"}},
		{"nodes already at the target agree with any claim", Claim{From: pair("v1.11.3", ""), To: to}, nodes(map[string]string{"a": "v1.11.3", "b": "v1.12.0"}), "Talos v1.11.3, Kubernetes v1.34.1", true, nil, nil},
		{"a kubelet the claim does not know", Claim{From: pair("v1.11.3", "v1.33.0"), To: to, Source: "terraform/variables.tf at abc"}, nodes(map[string]string{"a": "v1.11.3"}), "", false, new(*MismatchError), []string{"kubelet v1.34.1"}},
		{"mixed within a minor: the oldest decides", Claim{To: pair("v1.12.1", "")}, nodes(map[string]string{"a": "v1.11.3", "b": "v1.12.0"}), "Talos v1.11.3, Kubernetes v1.34.1", true, nil, nil},
		{"a spread of two minors is refused", Claim{To: pair("v1.13.1", "")}, nodes(map[string]string{"a": "v1.11.3", "b": "v1.13.0"}), "", true, new(*SpreadError), []string{"a v1.11.3", "b v1.13.0"}},
		{"everything at the target: nothing to do", Claim{To: to}, nodes(map[string]string{"a": "v1.12.0"}), "Talos v1.12.0, Kubernetes v1.34.1", false, nil, nil},
		{"no cluster: the claim stands", Claim{From: pair("v1.11.3", ""), To: to}, nil, "Talos v1.11.3", false, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Resolve(tc.claim, tc.obs)
			if tc.wantErr != nil {
				if !errors.As(err, tc.wantErr) {
					t.Fatalf("err = %v, want %T", err, tc.wantErr)
				}
				for _, s := range tc.errHas {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("%q lacks %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.From.String() != tc.wantFrom || res.Mixed != tc.wantMixed {
				t.Fatalf("from %s mixed %v, want %s %v", res.From, res.Mixed, tc.wantFrom, tc.wantMixed)
			}
		})
	}
}

type talosStub map[string]string

func (s talosStub) NodeVersion(_ context.Context, n config.Node) (version.Version, error) {
	v, ok := s[n.Name]
	if !ok {
		return version.Version{}, errors.New("connection refused")
	}
	return version.MustParse(v), nil
}

func node(name, osImage, kubelet string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		NodeInfo:   corev1.NodeSystemInfo{OSImage: osImage, KubeletVersion: kubelet},
	}}
}

func TestReaderAsksTheTalosAPIOfTheControlPlaneAndOfEveryNodeForPets(t *testing.T) {
	cs := fake.NewClientset(node("cp", "Talos (v1.11.3)", "v1.34.1"), node("w", "Talos (v1.11.3)", "v1.34.1"))
	inv := []config.Node{{Name: "cp", Role: config.RoleControlPlane}, {Name: "w", Role: config.RoleWorker}, {Name: "gone", Role: config.RoleWorker}}
	r := &Reader{Client: cs, Talos: talosStub{"cp": "v1.11.4", "w": "v1.11.4"}}
	ctx := context.Background()
	obs, err := r.All(ctx, inv, false)
	if err != nil {
		t.Fatal(err)
	}
	if o := obs["cp"]; o.Versions.Talos.String() != "v1.11.4" || !strings.HasPrefix(o.Source, SourceTalosAPI) || !strings.Contains(o.Source, "still says v1.11.3") {
		t.Errorf("control plane %+v: the Talos API should win and the disagreement show", o)
	}
	if o := obs["w"]; o.Versions.Talos.String() != "v1.11.3" || o.Source != SourceNode {
		t.Errorf("cattle worker %+v: the Node object only", o)
	}
	if _, ok := obs["gone"]; ok {
		t.Error("a node without a Node object was observed")
	}
	if obs, err = r.All(ctx, inv, true); err != nil || obs["w"].Versions.Talos.String() != "v1.11.4" {
		t.Errorf("pets worker %+v %v: the Talos API must answer", obs["w"], err)
	}
	// A node whose Talos API does not answer while it is Ready is an error.
	r.Talos = talosStub{}
	if _, err := r.All(ctx, inv, false); err == nil || !strings.Contains(err.Error(), "cp") {
		t.Errorf("err = %v, want the silent control plane named", err)
	}
	// Not Talos at all.
	cs = fake.NewClientset(node("x", "Ubuntu 24.04", "v1.34.1"))
	if _, err := (&Reader{Client: cs}).All(ctx, []config.Node{{Name: "x"}}, false); err == nil || !strings.Contains(err.Error(), "not Talos") {
		t.Errorf("err = %v", err)
	}
}
