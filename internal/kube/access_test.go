package kube

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

func writeKubeconfig(t *testing.T, path string, contexts map[string]string, current string) {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	for name, server := range contexts {
		cfg.Clusters[name] = &clientcmdapi.Cluster{Server: server}
		cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: "t"}
		cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	}
	cfg.CurrentContext = current
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
}

func TestAccessResolutionOrder(t *testing.T) {
	dir := t.TempDir()
	explicit := filepath.Join(dir, "explicit")
	env := filepath.Join(dir, "env")
	home := filepath.Join(dir, "home")
	writeKubeconfig(t, explicit, map[string]string{"a": "https://127.0.0.1:1001", "b": "https://127.0.0.1:1002"}, "a")
	writeKubeconfig(t, env, map[string]string{"e": "https://127.0.0.1:2001"}, "e")
	writeKubeconfig(t, filepath.Join(home, ".kube", "config"), map[string]string{"h": "https://127.0.0.1:3001"}, "h")
	inCluster := func() (*rest.Config, error) { return &rest.Config{Host: "https://127.0.0.1:4001"}, nil }
	noCluster := func() (*rest.Config, error) { return nil, rest.ErrNotInCluster }
	envWith := func(v string) func(string) string {
		return func(k string) string {
			if k == "KUBECONFIG" {
				return v
			}
			return ""
		}
	}
	tests := []struct {
		name       string
		a          Access
		wantHost   string
		wantSource string
		wantErr    error
	}{
		{"--kubeconfig wins", Access{Kubeconfig: explicit, Getenv: envWith(env), Home: home, InCluster: inCluster}, "https://127.0.0.1:1001", "--kubeconfig", nil},
		{"--context picks another context", Access{Kubeconfig: explicit, Context: "b", InCluster: inCluster}, "https://127.0.0.1:1002", "context b", nil},
		{"KUBECONFIG before home", Access{Getenv: envWith(env), Home: home, InCluster: inCluster}, "https://127.0.0.1:2001", "KUBECONFIG=", nil},
		{"home before in-cluster", Access{Getenv: envWith(""), Home: home, InCluster: inCluster}, "https://127.0.0.1:3001", ".kube/config", nil},
		{"in-cluster last", Access{Getenv: envWith(""), Home: filepath.Join(dir, "nohome"), InCluster: inCluster}, "https://127.0.0.1:4001", "in-cluster", nil},
		{"nothing at all", Access{Getenv: envWith(""), Home: filepath.Join(dir, "nohome"), InCluster: noCluster}, "", "", ErrNoCluster},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, src, err := tc.a.RESTConfig()
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Host != tc.wantHost || !strings.Contains(src, tc.wantSource) {
				t.Fatalf("host %s from %q; want %s from %q", c.Host, src, tc.wantHost, tc.wantSource)
			}
		})
	}
}

func TestAccessErrors(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := (Access{Kubeconfig: filepath.Join(dir, "missing")}).RESTConfig(); err == nil || !strings.Contains(err.Error(), "--kubeconfig") {
		t.Fatalf("missing --kubeconfig file: %v", err)
	}
	path := filepath.Join(dir, "kc")
	writeKubeconfig(t, path, map[string]string{"a": "https://127.0.0.1:1"}, "a")
	if _, _, err := (Access{Kubeconfig: path, Context: "nope"}).RESTConfig(); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("unknown context: %v", err)
	}
}
