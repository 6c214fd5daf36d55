package kube

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Access says how to reach the cluster, like kubectl.
type Access struct {
	// Kubeconfig is --kubeconfig; it wins over everything else.
	Kubeconfig string
	// Context is --context; empty means the kubeconfig's current context.
	Context string
	// Getenv reads KUBECONFIG (os.Getenv in production).
	Getenv func(string) string
	// Home is the user's home directory, for ~/.kube/config.
	Home string
	// InCluster returns the in-cluster service-account config
	// (rest.InClusterConfig in production).
	InCluster func() (*rest.Config, error)
}

// ErrNoCluster means no way to reach a cluster was found.
var ErrNoCluster = errors.New("no cluster access: pass --kubeconfig, set KUBECONFIG, create ~/.kube/config, or run in a pod with a service account")

// RESTConfig resolves the cluster access in kubectl's order: --kubeconfig,
// then $KUBECONFIG (a list of files, merged), then ~/.kube/config, then the
// in-cluster service account (drover runs in a runner pod in production).
// It returns the config and a description of where it came from.
func (a Access) RESTConfig() (*rest.Config, string, error) {
	getenv := a.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	rules := &clientcmd.ClientConfigLoadingRules{}
	var source string
	switch {
	case a.Kubeconfig != "":
		if _, err := os.Stat(a.Kubeconfig); err != nil {
			return nil, "", fmt.Errorf("--kubeconfig: %w", err)
		}
		rules.ExplicitPath = a.Kubeconfig
		source = "--kubeconfig " + a.Kubeconfig
	case getenv("KUBECONFIG") != "":
		rules.Precedence = filepath.SplitList(getenv("KUBECONFIG"))
		source = "KUBECONFIG=" + getenv("KUBECONFIG")
	case a.Home != "":
		home := filepath.Join(a.Home, ".kube", "config")
		if _, err := os.Stat(home); err == nil {
			rules.ExplicitPath = home
			source = home
		}
	}
	if source == "" {
		if a.Context != "" {
			return nil, "", fmt.Errorf("--context %q needs a kubeconfig: %w", a.Context, ErrNoCluster)
		}
		if a.InCluster == nil {
			return nil, "", ErrNoCluster
		}
		c, err := a.InCluster()
		if err != nil {
			return nil, "", fmt.Errorf("%w (in-cluster: %w)", ErrNoCluster, err)
		}
		return c, "in-cluster service account", nil
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: a.Context})
	c, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("load cluster access from %s: %w", source, err)
	}
	if a.Context != "" {
		source += ", context " + a.Context
	}
	return c, source, nil
}
