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

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Tool is a real server a test runs beside the control plane, built from
// its Go module by a hack/ script and cached (make test builds it first).
type Tool struct {
	// Name is the binary's name; Env the variable make test sets to its
	// path; Script the hack/ script that builds it.
	Name, Env, Script string
}

// The tools the integration tier runs.
var (
	AlertmanagerTool = Tool{Name: "alertmanager", Env: "DROVER_ALERTMANAGER_BIN", Script: "hack/alertmanager-binary.sh"}
	GoreleaserTool   = Tool{Name: "goreleaser", Env: "DROVER_GORELEASER_BIN", Script: "hack/go-tool.sh goreleaser"}
	CycloneDXTool    = Tool{Name: "cyclonedx-gomod", Env: "DROVER_CYCLONEDX_BIN", Script: "hack/go-tool.sh cyclonedx-gomod"}
	ActTool          = Tool{Name: "act", Env: "DROVER_ACT_BIN", Script: "hack/go-tool.sh act"}
	MinIOTool        = Tool{Name: "minio", Env: "DROVER_MINIO_BIN", Script: "hack/minio-binary.sh"}
	PushgatewayTool  = Tool{Name: "pushgateway", Env: "DROVER_PUSHGATEWAY_BIN", Script: "hack/pushgateway-binary.sh"}
)

// Binary is the tool's path: $Env, else the cache. A missing tool skips the
// test, or fails it when the integration tier is required.
func (tl Tool) Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(tl.Env); p != "" {
		return p
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	matches, _ := filepath.Glob(filepath.Join(cache, "drover", tl.Name+"-*", tl.Name))
	if len(matches) > 0 {
		return matches[len(matches)-1]
	}
	if required() {
		t.Fatalf("integration tier required (%s=1) but %s is missing: run %s (make test does)", EnvRequired, tl.Name, tl.Script)
	}
	t.Skipf("%s is not built (run %s, or make test): skipping", tl.Name, tl.Script)
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
	if d := os.Getenv("DROVER_CRDS_DIR"); d != "" {
		return d
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	matches, _ := filepath.Glob(filepath.Join(cache, "drover", "crds-*", ".complete"))
	if len(matches) > 0 {
		return filepath.Dir(matches[len(matches)-1])
	}
	if required() {
		t.Fatalf("integration tier required (%s=1) but the upstream CRDs are missing: run hack/crds.sh (make test does)", EnvRequired)
	}
	t.Skip("the upstream CRDs are not collected (run hack/crds.sh, or make test): skipping")
	return ""
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
