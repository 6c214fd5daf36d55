package testenv

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "embed" // the tool table

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

//go:embed tools.tsv
var toolTable string

// Tool is a real program a test runs (a server beside the control plane,
// a CLI), built from its module by a hack/ script and cached, keyed by its
// version. internal/testenv/tools.tsv is the one table of them: make test
// builds them with hack/tools.sh, and the scripts take their versions
// from it.
type Tool struct {
	// Name names it in the table; Version is its pinned version; Env the
	// variable that overrides where it is; Cache its path under
	// $XDG_CACHE_HOME/drover ({v} the version); Build the command that
	// builds it (and prints its path last).
	Name, Version, Env, Cache, Build string
}

// Tools are the table's rows, in order.
func Tools() []Tool {
	var out []Tool
	for _, line := range strings.Split(toolTable, "\n") {
		if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) < 5 {
			panic("testenv: internal/testenv/tools.tsv: a row with fewer than 5 columns: " + line)
		}
		out = append(out, Tool{Name: f[0], Version: f[1], Env: f[2], Cache: f[3], Build: f[4]})
	}
	return out
}

// ToolNamed is the table's row for name; a name not in it is a bug.
func ToolNamed(name string) Tool {
	for _, tl := range Tools() {
		if tl.Name == name {
			return tl
		}
	}
	panic("testenv: no tool " + name + " in internal/testenv/tools.tsv")
}

// The tools the integration tier runs.
var (
	AlertmanagerTool = ToolNamed("alertmanager")
	GoreleaserTool   = ToolNamed("goreleaser")
	CycloneDXTool    = ToolNamed("cyclonedx-gomod")
	ActTool          = ToolNamed("act")
	MinIOTool        = ToolNamed("minio")
	PushgatewayTool  = ToolNamed("pushgateway")
	TofuTool         = ToolNamed("tofu")
	RenovateTool     = ToolNamed("renovate")
	CRDsTool         = ToolNamed("crds")
	ControlPlaneTool = ToolNamed("control-plane")
)

// cacheRoot is $XDG_CACHE_HOME/drover (~/.cache/drover).
func cacheRoot() string {
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "drover")
}

// Path is where the tool is: $Env, else its place in the cache at its
// version; ok says it is there.
func (tl Tool) Path() (path string, ok bool) {
	if tl.Env != "-" {
		if p := os.Getenv(tl.Env); p != "" {
			return p, true
		}
	}
	p := filepath.Join(cacheRoot(), strings.ReplaceAll(tl.Cache, "{v}", tl.Version))
	_, err := os.Stat(p)
	return p, err == nil
}

// Binary is the tool's path (Path). A missing tool skips the test, or
// fails it when the integration tier is required, naming the one command
// that builds it.
func (tl Tool) Binary(t testing.TB) string {
	t.Helper()
	if p, ok := tl.Path(); ok && !Off() {
		return p
	}
	if required() {
		t.Fatalf("integration tier required (%s=1) but %s %s is missing: run %s (make test does)", EnvRequired, tl.Name, tl.Version, tl.Build)
	}
	if Off() {
		t.Skipf("%s=off: %s not used", EnvOff, tl.Name)
	}
	t.Skipf("%s %s is not built (run %s, or make test): skipping", tl.Name, tl.Version, tl.Build)
	return ""
}

// FreePort is a free TCP port on 127.0.0.1.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Serve runs a tool's binary with args until the test ends (SIGKILL if the
// test process dies) and waits until ready answers 200.
func Serve(t testing.TB, bin, ready string, args ...string) { ServeEnv(t, bin, ready, nil, args...) }

// ServeEnv is Serve with env added to the tool's environment.
func ServeEnv(t testing.TB, bin, ready string, env []string, args ...string) {
	t.Helper()
	dir := t.TempDir()
	logf, err := os.Create(filepath.Join(dir, filepath.Base(bin)+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		logf.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ready, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("%s exited before it was ready:\n%s", filepath.Base(bin), log)
		case <-ctx.Done():
			t.Fatalf("%s not ready at %s within 60s", filepath.Base(bin), ready)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// StartAlertmanager runs a real Alertmanager on a loopback port, with a
// route to nowhere and no clustering, and returns its URL.
func StartAlertmanager(t testing.TB) string {
	t.Helper()
	bin := AlertmanagerTool.Binary(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfg, []byte("route:\n  receiver: nowhere\nreceivers:\n  - name: nowhere\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := FreePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	Serve(t, bin, url+"/-/ready", "--config.file="+cfg, "--storage.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port), "--cluster.listen-address=", "--log.level=warn")
	return url
}

// S3 is a real S3 server (MinIO) for one test.
type S3 struct {
	// Endpoint is its URL; AccessKey and SecretKey its root credentials.
	Endpoint, AccessKey, SecretKey string
	// Dir is where it keeps its data (a bucket is a directory there).
	Dir string
}

// StartMinIO runs a MinIO server on a loopback port with its data in a
// temporary directory, and creates the buckets.
func StartMinIO(t testing.TB, buckets ...string) S3 {
	t.Helper()
	bin := MinIOTool.Binary(t)
	dir := t.TempDir()
	port, console := FreePort(t), FreePort(t)
	s := S3{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), AccessKey: "drover-test", SecretKey: "drover-test-" + randomHex(8), Dir: dir}
	ServeEnv(t, bin, s.Endpoint+"/minio/health/ready",
		[]string{"MINIO_ROOT_USER=" + s.AccessKey, "MINIO_ROOT_PASSWORD=" + s.SecretKey, "MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CI_CD=1"},
		"server", dir, "--address", fmt.Sprintf("127.0.0.1:%d", port), "--console-address", fmt.Sprintf("127.0.0.1:%d", console), "--quiet")
	c := s.Client(t)
	for _, b := range buckets {
		if err := c.MakeBucket(context.Background(), b, minio.MakeBucketOptions{}); err != nil {
			t.Fatalf("make bucket %s: %v", b, err)
		}
	}
	return s
}

// Client is an S3 client of the server, as its root user.
func (s S3) Client(t testing.TB) *minio.Client {
	t.Helper()
	c, err := minio.New(strings.TrimPrefix(s.Endpoint, "http://"), &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""), Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// UpstreamCRDs is the directory of the upstream CRDs hack/crds.sh collects
// (Flux, External Secrets, Rook): $DROVER_CRDS_DIR, else the cache. Missing,
// the test skips, or fails when the integration tier is required.
func UpstreamCRDs(t testing.TB) string {
	t.Helper()
	return CRDsTool.Binary(t)
}

// StartPushgateway runs a real Prometheus Pushgateway on a loopback port
// and returns its URL.
func StartPushgateway(t testing.TB) string {
	t.Helper()
	bin := PushgatewayTool.Binary(t)
	port := FreePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	Serve(t, bin, url+"/-/ready", fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port), "--log.level=warn")
	return url
}
