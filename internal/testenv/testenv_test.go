package testenv

import (
	"context"
	"os"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var env *Env

func TestMain(m *testing.M) { os.Exit(Main(m, &env)) }

func TestControlPlaneIsReal(t *testing.T) {
	Require(t, env)
	v, err := env.Client.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != K8sVersion {
		t.Fatalf("server reports %s, want %s (version ldflags missing?)", v.GitVersion, K8sVersion)
	}
	if _, err := env.Client.CoreV1().Namespaces().Get(context.Background(), "kube-node-lease", metav1.GetOptions{}); err != nil {
		t.Fatalf("system namespaces missing: %v", err)
	}
}

func TestSimulatedKubeletKeepsANodeReady(t *testing.T) {
	Require(t, env)
	ctx := context.Background()
	k := NewKubelets(env.Client, "")
	defer k.Close()
	if err := k.AddNode(ctx, NodeSpec{Name: "tk-1", Talos: "v1.11.3", Kubelet: "v1.34.1"}); err != nil {
		t.Fatal(err)
	}
	n, err := env.Client.CoreV1().Nodes().Get(ctx, "tk-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Status.NodeInfo.OSImage != "Talos (v1.11.3)" || len(n.Status.Conditions) == 0 || n.Status.Conditions[0].Status != "True" {
		t.Fatalf("node status %+v", n.Status)
	}
	if err := k.StopNode(ctx, "tk-1"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, _ = env.Client.CoreV1().Nodes().Get(ctx, "tk-1", metav1.GetOptions{})
		if n.Status.Conditions[0].Status == "Unknown" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("stopped node still Ready")
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = env.Client.CoreV1().Nodes().Delete(ctx, "tk-1", metav1.DeleteOptions{})
}
