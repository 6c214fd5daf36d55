package e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/prox-ops/drover/internal/kit"
	"github.com/prox-ops/drover/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { os.Exit(testenv.Main(m, &env)) }

const (
	droverVersion = "v0.1.0"
	repoURL       = "https://github.com/prox-ops/e2e-infra" // data, never dialled
	namespace     = "github-actions"
	// Pinned third-party actions the kit uses, replaced with stand-ins.
	uploadArtifact = "actions/upload-artifact@ea165f8d65b6e75b540449e92b4886f43607fa02"
	appToken       = "actions/create-github-app-token@fee1f7d63c2ff003460e3d139729b119787bc349"
)

// kitRepo is an infrastructure repository with the kit rendered into it,
// and everything its workflows need around them here: a release mirror,
// the stand-ins for what is GitHub's, and act.
type kitRepo struct {
	dir       string
	act       string
	env       []string
	secrets   string
	artifacts string
	ghLog     string
	mirror    *mirror
}

// mirror serves GitHub-release-shaped downloads from a directory and
// records what was fetched.
type mirror struct {
	dir string
	url string
	mu  sync.Mutex
	got []string
}

func (m *mirror) fetched() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.got...)
}

func newMirror(t *testing.T) *mirror {
	t.Helper()
	m := &mirror{dir: t.TempDir()}
	files := http.FileServer(http.Dir(m.dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		m.got = append(m.got, r.URL.Path)
		m.mu.Unlock()
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	m.url = srv.URL
	return m
}

// put writes a file at OWNER/REPO/releases/download/TAG/NAME and returns
// the line a SHA-256 sums file lists it with.
func (m *mirror) put(t *testing.T, release, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(m.dir, filepath.FromSlash(release), name)
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(t, os.WriteFile(p, data, 0o644))
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]) + "  " + name + "\n"
}

// tarGz is a tar.gz holding one executable.
func tarGz(t *testing.T, name string, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	must(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg}))
	_, err := tw.Write(data)
	must(t, err)
	must(t, tw.Close())
	must(t, gz.Close())
	return buf.Bytes()
}

// release publishes drover (built here at droverVersion), OpenTofu (the
// test's Terraform binary, as `tofu`) and talosctl (a stand-in recording
// its calls: it has nothing to do in these runs) on the mirror, at the
// versions the kit pins, as their projects publish them.
func (m *mirror) release(t *testing.T, drover, tf, talosctlLog string) {
	t.Helper()
	arch := runtime.GOARCH
	bin, err := os.ReadFile(drover)
	must(t, err)
	rel := kit.DefaultDroverRepo + "/releases/download/" + droverVersion
	d := m.put(t, rel, fmt.Sprintf("drover_%s_linux_%s.tar.gz", strings.TrimPrefix(droverVersion, "v"), arch), tarGz(t, "drover", bin))
	m.put(t, rel, "checksums.txt", []byte(d))

	tofu, err := os.ReadFile(tf)
	must(t, err)
	v := strings.TrimPrefix(kit.DefaultTofuVersion, "v")
	rel = "opentofu/opentofu/releases/download/v" + v
	sums := m.put(t, rel, fmt.Sprintf("tofu_%s_linux_%s.tar.gz", v, arch), tarGz(t, "tofu", tofu))
	m.put(t, rel, "tofu_"+v+"_SHA256SUMS", []byte(sums))

	rel = "siderolabs/talos/releases/download/" + kit.DefaultTalosctlVersion
	stub := "#!/usr/bin/env bash\necho \"talosctl $*\" >> " + talosctlLog + "\n" +
		"if [ \"$1 $2\" = \"version --client\" ]; then echo \"Client: " + kit.DefaultTalosctlVersion + "\"; fi\n"
	c := m.put(t, rel, "talosctl-linux-"+arch, []byte(stub))
	m.put(t, rel, "sha256sum.txt", []byte(c))
}

// buildDrover builds drover as a release would, at droverVersion.
func buildDrover(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "drover")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-trimpath",
		"-ldflags", "-X github.com/prox-ops/drover/internal/cli.Version="+droverVersion+" -X github.com/prox-ops/drover/internal/cli.Commit=e2e0000",
		"-o", out, "../../cmd/drover")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build drover: %v\n%s", err, b)
	}
	return out
}

func (r *kitRepo) git(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "git", append([]string{"-c", "user.name=Renovate Bot", "-c", "user.email=bot@renovate.invalid"}, args...)...)
	cmd.Dir = r.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// bump commits a new talos_version in terraform/variables.tf, as Renovate's
// merged pull request would, and returns the commits before and after.
func (r *kitRepo) bump(t *testing.T, from, to string) (base, head string) {
	t.Helper()
	p := filepath.Join(r.dir, "terraform", "variables.tf")
	data, err := os.ReadFile(p)
	must(t, err)
	if !bytes.Contains(data, []byte(`"`+from+`"`)) {
		t.Fatalf("variables.tf does not hold %s:\n%s", from, data)
	}
	must(t, os.WriteFile(p, bytes.Replace(data, []byte(`"`+from+`"`), []byte(`"`+to+`"`), 1), 0o644))
	base = r.git(t, "rev-parse", "HEAD")
	r.git(t, "commit", "-qam", "chore(deps): update talos to "+to)
	return base, r.git(t, "rev-parse", "HEAD")
}

// actRun is what one act invocation did.
type actRun struct {
	code int
	// log is every line's message; summaries the step summaries written;
	// jobs each job's result ("success", "failure"); errors the
	// ::error:: annotations.
	log       string
	summaries []string
	jobs      map[string]string
}

// run runs act for an event. act runs the jobs of runs-on: cattle-upgrade
// on this host (-P cattle-upgrade=-self-hosted), as the runner pod would.
// act ignores path filters, concurrency, environments (the approval's
// required reviewers) and job timeouts; the kit's tests check those by
// actionlint and by reading the rendered workflows.
// A workflow_dispatch's inputs go in the payload's "inputs", as GitHub
// sends them (and act reads them, with an event file).
func (r *kitRepo) run(t *testing.T, event, workflow string, payload map[string]any) actRun {
	t.Helper()
	return r.runWith(t, nil, event, workflow, payload)
}

// runWith is run with more environment for the jobs' steps.
func (r *kitRepo) runWith(t *testing.T, extraEnv []string, event, workflow string, payload map[string]any) actRun {
	t.Helper()
	must(t, os.RemoveAll(r.artifacts))
	ev := filepath.Join(t.TempDir(), "event.json")
	data, err := json.Marshal(payload)
	must(t, err)
	must(t, os.WriteFile(ev, data, 0o600))
	args := []string{event, "-W", ".github/workflows/" + workflow, "-e", ev,
		"-P", "cattle-upgrade=-self-hosted", "--no-cache-server", "--json",
		"--secret-file", r.secrets,
		"--local-repository", uploadArtifact + "=" + abs(t, "testdata/actions/upload-artifact"),
		"--local-repository", appToken + "=" + abs(t, "testdata/actions/create-github-app-token"),
	}
	cmd := exec.CommandContext(t.Context(), r.act, args...)
	cmd.Dir = r.dir
	cmd.Env = append(append([]string(nil), r.env...), extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	res := actRun{jobs: map[string]string{}}
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		res.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("act: %v", err)
	}
	var log strings.Builder
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var line struct {
			Msg       string `json:"msg"`
			Job       string `json:"job"`
			JobResult string `json:"jobResult"`
			Command   string `json:"command"`
			Content   string `json:"content"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			log.WriteString(sc.Text() + "\n")
			continue
		}
		log.WriteString(line.Msg)
		if !strings.HasSuffix(line.Msg, "\n") {
			log.WriteString("\n")
		}
		if line.Command == "summary" {
			res.summaries = append(res.summaries, line.Content)
		}
		if line.JobResult != "" {
			res.jobs[line.Job] = line.JobResult
		}
	}
	res.log = log.String() + stderr.String()
	return res
}

// job is the result of the job whose name ends in name: act names a job
// of a called workflow CALLER/WORKFLOW/JOB.
func (a actRun) job(name string) string {
	for k, v := range a.jobs {
		if k == name || strings.HasSuffix(k, "/"+name) {
			return v
		}
	}
	return ""
}

// summary is every step summary, joined.
func (a actRun) summary() string { return strings.Join(a.summaries, "\n") }

func (a actRun) tail(n int) string {
	lines := strings.Split(strings.TrimRight(a.log, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func abs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	must(t, err)
	return a
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// secretsFile writes the kit's nine secrets as act's --secret-file reads
// them. Only TALOSCONFIG is real; the others stand in (no Proxmox, S3,
// Discord or GitHub App is dialled here).
func secretsFile(t *testing.T, talosconfig []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secrets.env")
	lines := []string{
		"TALOSCONFIG=" + base64.StdEncoding.EncodeToString(talosconfig),
		"PROXMOX_USERNAME=terraform@pve!drover",
		"PROXMOX_PASSWORD=e2e-proxmox-secret-value",
		"AWS_ACCESS_KEY_ID=E2EACCESSKEY",
		"AWS_SECRET_ACCESS_KEY=e2e-s3-secret-value",
		"DISCORD_WEBHOOK_URL=",
		"GH_APP_ID=123456",
		"GH_APP_INSTALLATION_ID=7890123",
		"GH_APP_PRIVATE_KEY=e2e-app-key-standin",
		// The workflow's own token (act would otherwise ask `gh auth token`).
		"GITHUB_TOKEN=ghs_e2e_workflow_token",
	}
	must(t, os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600))
	return p
}

// hostEnv is the environment act (and so every step: act passes it on)
// runs with: the runner pod's, as far as drover can tell. No KUBECONFIG
// or TALOSCONFIG of the developer's leaks in.
func hostEnv(extra map[string]string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "KUBECONFIG", k == "TALOSCONFIG", k == "HOME", k == "DISCORD_WEBHOOK_URL",
			strings.HasPrefix(k, "AWS_"), strings.HasPrefix(k, "PROXMOX_"), strings.HasPrefix(k, "GITHUB_"),
			strings.HasPrefix(k, "TF_"), strings.HasPrefix(k, "ACT"):
			continue
		}
		if _, ok := extra[k]; ok {
			continue
		}
		out = append(out, kv)
	}
	for k, v := range extra {
		out = append(out, k+"="+v)
	}
	return out
}
