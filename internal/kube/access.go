package kube

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

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
	// QPS and Burst limit the client's requests (0: kubectl's 50 and 300);
	// RequestTimeout bounds every request but a watch (0: 30 s).
	QPS            float32
	Burst          int
	RequestTimeout time.Duration
	// Warn hears the API server's warnings (Pod Security's "would violate"
	// among them), each distinct one once, for drover's own (masked)
	// output; nil drops them. client-go's default would print each one
	// unmasked, again for every request.
	Warn func(string)
}

// kubectl's client rates; drover's own client uses them unless told.
const (
	DefaultQPS            = 50
	DefaultBurst          = 300
	DefaultRequestTimeout = 30 * time.Second
)

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
		return a.shape(c), "in-cluster service account", nil
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: a.Context})
	c, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("load cluster access from %s: %w", source, err)
	}
	if a.Context != "" {
		source += ", context " + a.Context
	}
	return a.shape(c), source, nil
}

// shape gives a REST config drover's rates and request deadline: every
// command's client is built here, in every tier of the tests too.
func (a Access) shape(c *rest.Config) *rest.Config {
	c.QPS, c.Burst = DefaultQPS, DefaultBurst
	if a.QPS > 0 {
		c.QPS = a.QPS
	}
	if a.Burst > 0 {
		c.Burst = a.Burst
	}
	timeout := DefaultRequestTimeout
	if a.RequestTimeout > 0 {
		timeout = a.RequestTimeout
	}
	c.Wrap(func(rt http.RoundTripper) http.RoundTripper { return &deadline{rt: rt, d: timeout} })
	c.WarningHandler = rest.NoWarnings{}
	if a.Warn != nil {
		c.WarningHandler = &onceWarnings{warn: a.Warn, seen: map[string]bool{}}
	}
	return c
}

// onceWarnings passes each distinct API warning on once.
type onceWarnings struct {
	mu   sync.Mutex
	seen map[string]bool
	warn func(string)
}

func (w *onceWarnings) HandleWarningHeader(code int, _ string, text string) {
	if code != 299 || text == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seen[text] {
		return
	}
	w.seen[text] = true
	w.warn(text)
}

// deadline bounds each request, its body read included, except a watch,
// which lasts as long as its caller wants (rest.Config.Timeout would cut
// the informers' watches too). An API server that accepts a connection
// and never answers cannot hold a command.
type deadline struct {
	rt http.RoundTripper
	d  time.Duration
}

func (t *deadline) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Query().Get("watch") == "true" || strings.Contains(req.URL.Path, "/watch/") {
		return t.rt.RoundTrip(req)
	}
	ctx, cancel := context.WithTimeout(req.Context(), t.d)
	resp, err := t.rt.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		if ctx.Err() == context.DeadlineExceeded && req.Context().Err() == nil {
			return nil, &RequestTimeoutError{Method: req.Method, URL: req.URL.Redacted(), After: t.d}
		}
		return nil, err
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// RequestTimeoutError is a request the API server did not answer in time.
type RequestTimeoutError struct {
	Method, URL string
	After       time.Duration
}

func (e *RequestTimeoutError) Error() string {
	return fmt.Sprintf("%s %s: no answer from the API server within %s (--request-timeout)", e.Method, e.URL, e.After)
}

// Timeout marks it as a timeout for net.Error-minded callers.
func (e *RequestTimeoutError) Timeout() bool { return true }

type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// Unreachable reports whether err says the cluster could not be reached or
// would not let drover in: a request that timed out, a connection refused
// or reset, a name that does not resolve, TLS that does not verify, a
// denial. Every command exits 4 for it: nothing was changed.
func Unreachable(err error) bool {
	if err == nil {
		return false
	}
	var rt *RequestTimeoutError
	var op *net.OpError
	var dns *net.DNSError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	switch {
	case errors.As(err, &rt), errors.As(err, &op), errors.As(err, &dns), errors.As(err, &ua), errors.As(err, &hn):
		return true
	case apierrors.IsForbidden(err), apierrors.IsUnauthorized(err), apierrors.IsServiceUnavailable(err), apierrors.IsTimeout(err), apierrors.IsServerTimeout(err):
		return true
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET):
		return true
	}
	return false
}
