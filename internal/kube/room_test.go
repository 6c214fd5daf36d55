package kube

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func roomNode(name string, cpu, mem string, mutate ...func(*corev1.Node)) *corev1.Node {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}},
		Status: corev1.NodeStatus{
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem), corev1.ResourcePods: resource.MustParse("110")},
			Conditions:  []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		},
	}
	for _, m := range mutate {
		m(n)
	}
	return n
}

func roomPod(name, node string, req corev1.ResourceList, mutate ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "apps"},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{Requests: req}}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

func cpuMem(cpu, mem string) corev1.ResourceList {
	return corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)}
}

// TestRoomPlacesAsTheSchedulerFilters: requests against allocatable minus
// what is used, extended resources, taints, selectors, affinity, cordons;
// and each placement takes its room.
func TestRoomPlacesAsTheSchedulerFilters(t *testing.T) {
	gpuNode := func(n *corev1.Node) {
		n.Status.Allocatable["nvidia.com/gpu"] = resource.MustParse("1")
		n.Labels["nvidia.com/gpu.present"] = "true"
	}
	tainted := func(n *corev1.Node) {
		n.Spec.Taints = []corev1.Taint{{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule}}
	}
	cordoned := func(n *corev1.Node) { n.Spec.Unschedulable = true }
	for _, tc := range []struct {
		name  string
		nodes []*corev1.Node
		pods  []*corev1.Pod
		place []*corev1.Pod
		want  []string // the node each is placed on, "" for none
		why   string   // part of the reason the last one did not fit
	}{
		{
			name:  "requests fit in what is free",
			nodes: []*corev1.Node{roomNode("a", "4", "8Gi"), roomNode("b", "4", "8Gi")},
			pods:  []*corev1.Pod{roomPod("busy", "a", cpuMem("3500m", "1Gi"))},
			place: []*corev1.Pod{roomPod("new", "", cpuMem("1", "1Gi"))},
			want:  []string{"b"},
		},
		{
			name:  "each placement takes its room",
			nodes: []*corev1.Node{roomNode("a", "2", "8Gi")},
			place: []*corev1.Pod{roomPod("one", "", cpuMem("1500m", "1Gi")), roomPod("two", "", cpuMem("1", "1Gi"))},
			want:  []string{"a", ""},
			why:   "insufficient cpu: wants 1, 500m free",
		},
		{
			name:  "a GPU only where one is free",
			nodes: []*corev1.Node{roomNode("a", "4", "8Gi"), roomNode("gpu-1", "4", "8Gi", gpuNode)},
			pods:  []*corev1.Pod{roomPod("plex", "gpu-1", corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("1")})},
			place: []*corev1.Pod{roomPod("transcode", "", corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("1")})},
			want:  []string{""},
			why:   "insufficient nvidia.com/gpu: wants 1, 0 free",
		},
		{
			name:  "a taint keeps out what does not tolerate it",
			nodes: []*corev1.Node{roomNode("a", "4", "8Gi", tainted)},
			place: []*corev1.Pod{roomPod("web", "", cpuMem("1", "1Gi")), roomPod("db", "", cpuMem("1", "1Gi"), func(p *corev1.Pod) {
				p.Spec.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "db", Effect: corev1.TaintEffectNoSchedule}}
			})},
			want: []string{"", "a"},
		},
		{
			name:  "a node selector and a required affinity must match",
			nodes: []*corev1.Node{roomNode("a", "4", "8Gi"), roomNode("gpu-1", "4", "8Gi", gpuNode)},
			place: []*corev1.Pod{roomPod("sel", "", nil, func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"nvidia.com/gpu.present": "true"} }),
				roomPod("aff", "", nil, func(p *corev1.Pod) {
					p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
						NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{"nowhere"}}}}},
					}}}
				})},
			want: []string{"gpu-1", ""},
			why:  "node selector or required node affinity does not match",
		},
		{
			name:  "a cordoned node takes nothing; finished pods take no room",
			nodes: []*corev1.Node{roomNode("a", "1", "8Gi", cordoned), roomNode("b", "1", "8Gi")},
			pods:  []*corev1.Pod{roomPod("done", "b", cpuMem("1", "1Gi"), func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded })},
			place: []*corev1.Pod{roomPod("x", "", cpuMem("1", "1Gi"))},
			want:  []string{"b"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRoom(tc.nodes, tc.pods)
			var why map[string]string
			for i, p := range tc.place {
				var got string
				got, why = r.Place(p, nil)
				if got != tc.want[i] {
					t.Fatalf("%s placed on %q, want %q (why: %v)", p.Name, got, tc.want[i], why)
				}
			}
			if tc.why != "" && !strings.Contains(strings.Join(mapValues(why), "; "), tc.why) {
				t.Fatalf("why %v, want it to say %q", why, tc.why)
			}
		})
	}
}

func mapValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// TestRoomPlacesOnlyWhereAllowed: the node being drained is no place for
// its own pods.
func TestRoomPlacesOnlyWhereAllowed(t *testing.T) {
	r := NewRoom([]*corev1.Node{roomNode("a", "4", "8Gi"), roomNode("b", "4", "8Gi")}, nil)
	got, why := r.Place(roomPod("runner", "", cpuMem("1", "1Gi")), func(n string) bool { return n != "a" })
	if got != "b" {
		t.Fatalf("placed on %q (%v), want b", got, why)
	}
	if got, _ := r.Place(roomPod("runner", "", cpuMem("1", "1Gi")), func(string) bool { return false }); got != "" {
		t.Fatalf("placed on %q with no node allowed", got)
	}
}
