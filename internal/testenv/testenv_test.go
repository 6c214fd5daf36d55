package testenv

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
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
	w, err := env.Client.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=tk-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if err := k.AddNode(ctx, NodeSpec{Name: "tk-1", Talos: "v1.11.3", Kubelet: "v1.34.1"}); err != nil {
		t.Fatal(err)
	}
	// Like a real kubelet's registration, the Node is born with its status:
	// a reader never sees it without its OS image (drover refuses such a node).
	if ev := <-w.ResultChan(); ev.Type != watch.Added || ev.Object.(*corev1.Node).Status.NodeInfo.OSImage != "Talos (v1.11.3)" {
		t.Fatalf("the first event of the node is %s %+v", ev.Type, ev.Object)
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

// TestNoStrayProcessAfterAPanic runs a child test process that starts a
// control plane and panics; its etcd, kube-apiserver and
// kube-controller-manager must die with it.
func TestNoStrayProcessAfterAPanic(t *testing.T) {
	Require(t, env)
	if os.Getenv("DROVER_TESTENV_PANIC_CHILD") == "1" {
		e, err := Start(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range e.procs {
			fmt.Printf("child-pid %d\n", p.cmd.Process.Pid)
		}
		panic("a test panicked with the control plane running")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestNoStrayProcessAfterAPanic$")
	cmd.Env = append(os.Environ(), "DROVER_TESTENV_PANIC_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the child did not panic:\n%s", out)
	}
	var pids []int
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, "child-pid "); ok {
			pid, _ := strconv.Atoi(strings.TrimSpace(rest))
			pids = append(pids, pid)
		}
	}
	if len(pids) != 4 {
		t.Fatalf("child started %d processes, want 4 (etcd, kube-apiserver, kube-controller-manager, kube-scheduler):\n%s", len(pids), out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for processAlive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d outlived the panicking test", pid)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// processAlive: signal 0 reaches a live process; a zombie has exited.
func processAlive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !strings.Contains(string(stat), ") Z ")
}

// TestTheToolTableIsWhatTheCodeUses: internal/testenv/tools.tsv is the
// one table of tools: every DROVER_..._BIN/_DIR variable the code reads
// is a row's, every row's build script exists, and the control plane's
// version is the one testenv reports.
func TestTheToolTableIsWhatTheCodeUses(t *testing.T) {
	vars := map[string]bool{}
	for _, tl := range Tools() {
		vars[tl.Env] = true
		script, _, _ := strings.Cut(tl.Build, " ")
		if _, err := os.Stat(filepath.Join("../..", script)); err != nil {
			t.Errorf("%s: its build command %q: %v", tl.Name, tl.Build, err)
		}
		if tl.Version == "" || tl.Cache == "" {
			t.Errorf("%s: a row without version or cache path", tl.Name)
		}
	}
	if ControlPlaneTool.Version != K8sVersion {
		t.Errorf("the table builds the control plane at %s, testenv says %s", ControlPlaneTool.Version, K8sVersion)
	}
	re := regexp.MustCompile(`"(DROVER_[A-Z_]+_(?:BIN|DIR)|DROVER_RENOVATE_VALIDATOR)"`)
	for _, root := range []string{"../../internal", "../../hack"} {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") {
				return err
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, m := range re.FindAllStringSubmatch(string(data), -1) {
				if !vars[m[1]] {
					t.Errorf("%s reads %s, which no row of tools.tsv names", p, m[1])
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
