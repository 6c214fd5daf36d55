package testenv

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

// APIServer is another kube-apiserver of the control plane, on the same
// etcd, as a second control-plane node runs one.
type APIServer struct {
	Host string
	p    *proc
}

// SecondAPIServer starts another kube-apiserver on the control plane's
// etcd, serving the same certificate and tokens; the test's end stops it.
func (e *Env) SecondAPIServer(t testing.TB) *APIServer {
	t.Helper()
	port, _, _, err := freePorts3()
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("kube-apiserver-%d", port)
	if err := e.start(name, filepath.Join(BinDir(), "kube-apiserver"), append(e.apiserverArgs, fmt.Sprintf("--secure-port=%d", port))...); err != nil {
		t.Fatal(err)
	}
	a := &APIServer{Host: fmt.Sprintf("https://127.0.0.1:%d", port), p: e.procs[len(e.procs)-1]}
	if err := waitHTTP(context.Background(), a.Host+"/readyz", e.Config.BearerToken, 90*time.Second, a.p.exited); err != nil {
		t.Fatalf("%s did not become ready: %v (log: %s)", name, err, e.logTail(name))
	}
	t.Cleanup(a.Stop)
	return a
}

// Stop kills the API server at once, as a destroyed VM goes.
func (a *APIServer) Stop() {
	select {
	case <-a.p.exited:
	default:
		_ = syscall.Kill(-a.p.cmd.Process.Pid, syscall.SIGKILL)
		<-a.p.exited
	}
}

// Balancer is a TCP front for the API servers, as the cluster's endpoint
// (a VIP, the kubernetes Service) is: new connections go to the current
// backend; Route moves that to another, as the endpoint fails over.
type Balancer struct {
	Addr     string
	l        net.Listener
	mu       sync.Mutex
	backends []string
	cur      int
}

// NewBalancer fronts the backends (host:port), new connections going to
// the first.
func NewBalancer(t testing.TB, backends ...string) *Balancer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &Balancer{Addr: l.Addr().String(), l: l, backends: backends}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			to := b.backends[b.cur]
			b.mu.Unlock()
			go pipeTo(c, to)
		}
	}()
	return b
}

// Route sends the new connections to backend i.
func (b *Balancer) Route(i int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cur = i
}

func pipeTo(c net.Conn, to string) {
	s, err := net.Dial("tcp", to)
	if err != nil {
		_ = c.Close()
		return
	}
	cp := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		_ = dst.Close()
		_ = src.Close()
	}
	go cp(s, c)
	go cp(c, s)
}

// Through is the admin's REST config with its host replaced by addr
// (host:port), for a kubeconfig through a Balancer.
func (e *Env) Through(addr string) *rest.Config {
	c := rest.CopyConfig(e.Config)
	c.Host = "https://" + addr
	return c
}

// KubeconfigFor writes a kubeconfig for c under the test's directory.
func KubeconfigFor(t testing.TB, c *rest.Config) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := writeKubeconfig(path, c); err != nil {
		t.Fatal(err)
	}
	return path
}
