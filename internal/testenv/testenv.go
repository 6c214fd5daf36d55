// Package testenv runs a real Kubernetes control plane for integration
// tests: etcd, kube-apiserver, kube-controller-manager and kube-scheduler,
// built from their upstream Go modules by hack/testenv-binaries.sh and
// cached outside the repository. Only the kubelets and the hypervisor are
// simulated (see Kubelets and Hypervisor); everything else, PodDisruptionBudget
// status and every binding included, comes from the real components.
//
// Use it from TestMain:
//
//	var env *testenv.Env
//	func TestMain(m *testing.M) { os.Exit(testenv.Main(m, &env)) }
//
// and start each integration test with testenv.Require(t, env).
package testenv

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prox-ops/drover/internal/kube"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Env variables that steer the harness.
const (
	// EnvBin names the directory with kube-apiserver, kube-controller-manager and etcd.
	EnvBin = "DROVER_TESTENV_BIN"
	// EnvRequired makes a missing control plane a test failure, not a skip.
	// The README's test command (make test) and CI set it.
	EnvRequired = "DROVER_TESTENV_REQUIRED"
	// K8sVersion is the pinned Kubernetes version of the binaries.
	K8sVersion = "v1.37.2"
)

// Controllers are the kube-controller-manager controllers the harness runs.
var Controllers = []string{
	"disruption-controller", "replicaset-controller", "deployment-controller",
	"node-lifecycle-controller", "pod-garbage-collector-controller", "daemonset-controller",
	"endpointslice-controller", "job-controller",
}

// TalosAdmission is the admission configuration Talos gives a cluster's
// API server: Pod Security enforces "baseline" and warns and audits
// "restricted" in every namespace but kube-system. The test API server
// runs with it, so that drover's pods meet what they meet on Talos.
const TalosAdmission = `apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
  - name: PodSecurity
    configuration:
      apiVersion: pod-security.admission.config.k8s.io/v1
      kind: PodSecurityConfiguration
      defaults:
        enforce: baseline
        enforce-version: latest
        audit: restricted
        audit-version: latest
        warn: restricted
        warn-version: latest
      exemptions:
        usernames: []
        runtimeClasses: []
        namespaces: [kube-system]
`

// Env is a running control plane.
type Env struct {
	// Config reaches the API server as a cluster admin, fast: it is for
	// the tests' fixtures only, never given to drover's code.
	Config *rest.Config
	Client kubernetes.Interface
	// DroverConfig and Drover are the client drover's commands build
	// (kube.Access from the kubeconfig, kubectl's rates): what a test
	// hands to drover's code, so that it runs the production client.
	DroverConfig *rest.Config
	Drover       kubernetes.Interface
	// Kubeconfig is a kubeconfig file for the admin.
	Kubeconfig string
	Dir        string
	// Summary is the "testenv: ..." line naming binaries, versions and address.
	Summary string

	procs []*proc
	// unavailable says why the control plane could not start.
	unavailable string
	// apiserverArgs start another kube-apiserver on the same etcd (its
	// secure port appended).
	apiserverArgs []string
}

// BinDir is where the binaries are: $DROVER_TESTENV_BIN, or the cache
// directory hack/testenv-binaries.sh fills.
func BinDir() string {
	p, _ := ControlPlaneTool.Path()
	return p
}

func required() bool {
	v := os.Getenv(EnvRequired)
	return !Off() && v != "" && v != "0" && v != "false"
}

// EnvOff is the variable that, set to "off", leaves the integration tier out: make test-unit
// runs the tests that need no control plane and no tool.
const EnvOff = "DROVER_TESTENV"

// Off says the integration tier is switched off ($DROVER_TESTENV=off).
func Off() bool { return os.Getenv(EnvOff) == "off" }

// Main starts the control plane, runs the package's tests and tears it
// down. When the binaries are missing it says why, and the integration
// tests skip (or fail, when DROVER_TESTENV_REQUIRED is set).
func Main(m *testing.M, env **Env) int {
	if Off() {
		fmt.Printf("testenv: integration tier off (%s=off): the tests that need a control plane skip\n", EnvOff)
		*env = &Env{unavailable: EnvOff + "=off"}
		return m.Run()
	}
	e, err := Start(context.Background())
	if err != nil {
		e = &Env{unavailable: err.Error()}
		fmt.Printf("testenv: integration tier unavailable: %v\n", err)
	} else {
		fmt.Println(e.Summary)
	}
	*env = e
	code := m.Run()
	e.Stop()
	return code
}

// Require skips (or, when required, fails) a test that needs the control
// plane if it is not running.
func Require(t testing.TB, e *Env) {
	t.Helper()
	if e != nil && e.unavailable == "" && e.Client != nil {
		return
	}
	why := "testenv.Main was not called"
	if e != nil && e.unavailable != "" {
		why = e.unavailable
	}
	if required() {
		t.Fatalf("integration tier required (%s=1) but unavailable: %s", EnvRequired, why)
	}
	t.Skipf("integration tier unavailable (build the binaries with hack/testenv-binaries.sh, or run make test): %s", why)
}

// Start launches etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler on free loopback ports in a temporary directory.
func Start(ctx context.Context) (_ *Env, err error) {
	bin := BinDir()
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return nil, fmt.Errorf("%s not found in %s: run hack/testenv-binaries.sh (make test does)", b, bin)
		}
	}
	dir, err := os.MkdirTemp("", "drover-testenv-")
	if err != nil {
		return nil, err
	}
	e := &Env{Dir: dir}
	defer func() {
		if err != nil {
			e.Stop()
		}
	}()

	etcdClient, etcdPeer, apiPort, err := freePorts3()
	if err != nil {
		return nil, err
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdClient)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPeer)
	if err := e.start("etcd", filepath.Join(bin, "etcd"),
		"--name=testenv", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=testenv="+peerURL, "--unsafe-no-fsync", "--log-level=error",
	); err != nil {
		return nil, err
	}

	token, tokenFile, saKey, admission, err := apiServerFiles(dir)
	if err != nil {
		return nil, err
	}
	certDir := filepath.Join(dir, "certs")
	common := []string{"--admission-control-config-file=" + admission, "--etcd-servers=" + etcdURL, "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--token-auth-file=" + tokenFile, "--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + saKey, "--service-account-signing-key-file=" + saKey,
		"--service-cluster-ip-range=10.96.0.0/16", "--disable-admission-plugins=ServiceAccount",
		// The default reconciler refuses a loopback advertise address.
		"--endpoint-reconciler-type=none", "--enable-priority-and-fairness=false", "--v=0",
	}
	// A second API server serves the first one's certificate, as the
	// control-plane nodes of a cluster share its serving identity.
	e.apiserverArgs = append(slices.Clone(common),
		"--tls-cert-file="+filepath.Join(certDir, "apiserver.crt"), "--tls-private-key-file="+filepath.Join(certDir, "apiserver.key"))
	if err := e.start("kube-apiserver", filepath.Join(bin, "kube-apiserver"),
		append(common, fmt.Sprintf("--secure-port=%d", apiPort), "--cert-dir="+certDir)...); err != nil {
		return nil, err
	}
	host := fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	if err := waitHTTP(ctx, host+"/readyz", token, 90*time.Second, e.procs[len(e.procs)-1].exited); err != nil {
		return nil, fmt.Errorf("kube-apiserver did not become ready: %w (log: %s)", err, e.logTail("kube-apiserver"))
	}
	// The fixtures' client: fast, and quiet about the Pod Security
	// warnings its bare fixture pods draw.
	e.Config = &rest.Config{Host: host, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{Insecure: true}, QPS: 200, Burst: 400,
		WarningHandler: rest.NoWarnings{}}
	if ca, err := os.ReadFile(filepath.Join(certDir, "apiserver.crt")); err == nil {
		e.Config.TLSClientConfig = rest.TLSClientConfig{CAData: ca, ServerName: "kubernetes"}
	}
	if e.Client, err = kubernetes.NewForConfig(e.Config); err != nil {
		return nil, err
	}
	e.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(e.Kubeconfig, e.Config); err != nil {
		return nil, err
	}
	if err := e.droverClient(); err != nil {
		return nil, err
	}
	if err := e.start("kube-controller-manager", filepath.Join(bin, "kube-controller-manager"),
		"--kubeconfig="+e.Kubeconfig, "--controllers="+strings.Join(Controllers, ","),
		"--leader-elect=false", "--secure-port=0",
		"--node-monitor-grace-period=40s", "--node-monitor-period=2s",
		"--v=0",
	); err != nil {
		return nil, err
	}
	// The real scheduler binds pods: probe pods pinned by affinity, pods a
	// drain evicted. Only the kubelets are simulated.
	if err := e.start("kube-scheduler", filepath.Join(bin, "kube-scheduler"),
		"--kubeconfig="+e.Kubeconfig, "--leader-elect=false", "--secure-port=0", "--v=0",
	); err != nil {
		return nil, err
	}
	// drover's namespace, where its probe pods (and, in the kit, its
	// runner) live.
	if _, err := e.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "drover"}}, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("namespace drover: %w", err)
	}
	sv, err := e.Client.Discovery().ServerVersion()
	if err != nil {
		return nil, fmt.Errorf("server version: %w", err)
	}
	e.Summary = fmt.Sprintf("testenv: kube-apiserver %s, etcd %s, kube-controller-manager %s, kube-scheduler %s on 127.0.0.1:%d (controllers: %s)",
		sv.GitVersion, binVersion(filepath.Join(bin, "etcd"), "etcd Version: "), binVersion(filepath.Join(bin, "kube-controller-manager"), "Kubernetes "),
		binVersion(filepath.Join(bin, "kube-scheduler"), "Kubernetes "), apiPort, strings.Join(Controllers, ", "))
	return e, nil
}

// start runs a component. The child gets SIGKILL if the test process dies,
// so a panicking test leaves no stray control plane behind.
func (e *Env) start(name, path string, args ...string) error {
	logf, err := os.Create(filepath.Join(e.Dir, name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	e.procs = append(e.procs, p)
	return nil
}

type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// Stop kills every component and removes the directory.
func (e *Env) Stop() {
	if e == nil {
		return
	}
	for i := len(e.procs) - 1; i >= 0; i-- {
		p := e.procs[i]
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.exited
		}
	}
	e.procs = nil
	if e.Dir != "" && os.Getenv("DROVER_TESTENV_KEEP") == "" {
		_ = os.RemoveAll(e.Dir)
	}
}

func (e *Env) logTail(name string) string {
	data, err := os.ReadFile(filepath.Join(e.Dir, name+".log"))
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, " | ")
}

// droverClient builds the client drover's commands build, from the
// admin kubeconfig.
func (e *Env) droverClient() (err error) {
	if e.DroverConfig, _, err = (kube.Access{Kubeconfig: e.Kubeconfig}).RESTConfig(); err != nil {
		return err
	}
	e.Drover, err = kubernetes.NewForConfig(e.DroverConfig)
	return err
}

// apiServerFiles writes what the API servers read: the admin's token,
// the service-account key and TalosAdmission.
func apiServerFiles(dir string) (token, tokenFile, saKey, admission string, err error) {
	token = randomHex(16)
	tokenFile = filepath.Join(dir, "tokens.csv")
	if err = os.WriteFile(tokenFile, []byte(token+",admin,admin-uid,system:masters\n"), 0o600); err != nil {
		return
	}
	saKey = filepath.Join(dir, "sa.key")
	if err = writeRSAKey(saKey); err != nil {
		return
	}
	admission = filepath.Join(dir, "admission.yaml")
	err = os.WriteFile(admission, []byte(TalosAdmission), 0o600)
	return
}

func freePorts3() (a, b, c int, err error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 3)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, 0, 0, err
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports[0], ports[1], ports[2], nil
}

func waitHTTP(ctx context.Context, url, token string, timeout time.Duration, exited <-chan struct{}) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: insecureTLS()}}
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("the process exited")
		default:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	if last == nil {
		last = errors.New("no answer")
	}
	return last
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func writeRSAKey(path string) error {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	return os.WriteFile(path, data, 0o600)
}

func writeKubeconfig(path string, c *rest.Config) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["testenv"] = &clientcmdapi.Cluster{Server: c.Host, CertificateAuthorityData: c.CAData, InsecureSkipTLSVerify: c.Insecure, TLSServerName: c.ServerName}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: c.BearerToken}
	cfg.Contexts["testenv"] = &clientcmdapi.Context{Cluster: "testenv", AuthInfo: "admin"}
	cfg.CurrentContext = "testenv"
	return clientcmd.WriteToFile(*cfg, path)
}

// binVersion runs `bin --version` and returns the word after prefix.
func binVersion(bin, prefix string) string {
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		return "unknown"
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), prefix); ok {
			v := strings.Fields(rest)[0]
			if !strings.HasPrefix(v, "v") {
				v = "v" + v
			}
			return v
		}
	}
	return "unknown"
}
