package cli

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// silentAPIServer accepts connections on 127.0.0.1 and never answers, as
// an API server behind a wedged load balancer does. It returns a
// kubeconfig that points at it.
func silentAPIServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never read or answered
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	must(t, os.WriteFile(kc, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: silent, cluster: {server: "https://%s", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t0ken-for-the-silent-server}}]
contexts: [{name: silent, context: {cluster: silent, user: u}}]
current-context: silent
`, l.Addr())), 0o600))
	return kc
}

// TestSilentAPIServerEveryCommandEnds: against an API server that accepts
// and never answers, every command that reads the cluster gives up after
// --request-timeout (plus its own retries), exits 4 like any unreachable
// cluster, and says the API server did not answer.
func TestSilentAPIServerEveryCommandEnds(t *testing.T) {
	kc := silentAPIServer(t)
	cfg := exampleConfig
	for _, args := range [][]string{
		{"plan", "--config", cfg, "--to-talos", "v1.12.0"},
		{"access"},
		{"health", "--config", cfg},
		{"unlock"},
		{"history", "--journal", "configmap"},
		{"report", "--journal", "configmap"},
	} {
		t.Run(args[0], func(t *testing.T) {
			args := append(args, "--kubeconfig", kc, "--request-timeout", "1s")
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var out, errb bytes.Buffer
			code := Run(ctx, testStreams(t, &out, &errb), args)
			if ctx.Err() != nil {
				t.Fatalf("still waiting after 2 minutes")
			}
			if code != ExitBlocked {
				t.Errorf("exit %d, want 4\n%s", code, lastLines(errb.String()+out.String(), 5))
			}
			if !strings.Contains(out.String()+errb.String(), "no answer from the API server within 1s") {
				t.Errorf("the error does not say the API server did not answer:\n%s", lastLines(errb.String()+out.String(), 5))
			}
		})
	}
}

// TestSilentAPIServerStopIsAStop: a stop (SIGTERM) while a command waits on
// the cluster exits 130, and says nothing was changed.
func TestSilentAPIServerStopIsAStop(t *testing.T) {
	kc := silentAPIServer(t)
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(300*time.Millisecond, func() { cancel(fmt.Errorf("signal: terminated")) })
	var out, errb bytes.Buffer
	code := Run(ctx, testStreams(t, &out, &errb), []string{"plan", "--config", exampleConfig, "--to-talos", "v1.12.0", "--kubeconfig", kc})
	if code != ExitInterrupted || !strings.Contains(errb.String(), "before anything was changed") {
		t.Errorf("exit %d, want 130\n%s", code, lastLines(errb.String(), 5))
	}
}
