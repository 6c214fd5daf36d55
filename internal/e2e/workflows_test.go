package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"filippo.io/age"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/prox-ops/drover/internal/journal"
	"github.com/prox-ops/drover/internal/testenv"
)

// snapshotKey is the operator's age identity the story's snapshots are
// encrypted to.
var snapshotKey = func() *age.X25519Identity {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		panic(err)
	}
	return id
}()

// The cluster of the story: the prox-ops fixture's Terraform with three of
// its VMs (one control plane, two workers on two Proxmox hosts).
var storyNodes = []struct {
	name, ip, host string
	vmID           int
	member         uint64
}{
	{"k8s-ctrl-1", "127.0.0.201", "baldar", 8001, 2010},
	{"k8s-work-1", "127.0.0.211", "baldar", 8101, 0},
	{"k8s-work-2", "127.0.0.212", "heimdall", 8102, 0},
}

// TestTheKitUpgradesAClusterUnderAct tells the kit's story as an operator
// lives it, each step a real workflow run under act:
//
//  1. Renovate opens the pull request bumping Talos v1.11.3 -> v1.12.0:
//     pr-plan labels it upgrade-cattle and comments the plan (through the
//     gh stand-in, with the GitHub App's token).
//  2. Someone labels it upgrade-pets and merges: upgrade-pets refuses it
//     with a clear message and touches nothing.
//  3. Labelled upgrade-cattle and merged: upgrade-cattle plans into the
//     step summary, replaces every VM, keeps the report, the journal and the
//     etcd snapshots as artifacts, and calls health-check.
//  4. The next patch (v1.12.1, pets) halts on a node that comes back
//     without its second NIC; after the fix a workflow_dispatch resumes the
//     run from the journal in the cluster and finishes it.
//  5. health-check is run by hand.
//
// Every drover step authenticates as the runner's ServiceAccount with the
// rendered rbac.yaml applied; drover, OpenTofu and talosctl come from a
// release mirror, checksums checked. Fakes: the kubelets and the Talos
// API's nodes (simulated in-process), the Proxmox VMs (a stand-in bpg/proxmox
// whose provisioners write files), GitHub (act for the runner, stand-ins
// for upload-artifact, create-github-app-token and gh).
func TestTheKitUpgradesAClusterUnderAct(t *testing.T) {
	testenv.Require(t, env)
	if runtime.GOOS != "linux" || (runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64") {
		t.Skipf("the kit's runners are linux/amd64 or linux/arm64, not %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	actBin := testenv.ActTool.Binary(t)
	tf := tfBinary(t)
	ctx := t.Context()
	work := t.TempDir()
	r := &kitRepo{dir: filepath.Join(work, "infra"), act: actBin, artifacts: filepath.Join(work, "artifacts"), ghLog: filepath.Join(work, "gh.log")}
	must(t, os.MkdirAll(r.dir, 0o755))

	// The simulated side: kubelets for the VMs Terraform creates, a Talos
	// API for their machines.
	vmDir := filepath.Join(work, "vms")
	state := filepath.Join(work, "state", "terraform.tfstate")
	must(t, os.MkdirAll(vmDir, 0o755))
	must(t, os.MkdirAll(filepath.Dir(state), 0o755))
	k := testenv.NewKubelets(env.Client, "")
	t.Cleanup(k.Close)
	ta := testenv.NewTalosAPI()
	// Image Factory's stand-in: an OCI registry on 127.0.0.1 with the
	// installer images of the story's versions.
	reg := testenv.NewRegistry(t)
	for _, v := range []string{"v1.11.3", "v1.12.0", "v1.12.1", "v1.12.2"} {
		reg.Push(t, reg.Installer(testenv.Schematic, v))
	}
	ips := map[string]string{}
	var names []string
	for _, n := range storyNodes {
		ta.Add(n.ip, n.name, "v1.11.3", n.member)
		ta.SetImage(n.ip, reg.Installer(testenv.Schematic, "v1.11.3"))
		ips[n.name] = n.ip
		names = append(names, n.name)
	}
	ta.SetLeader(storyNodes[0].member)
	t.Cleanup(func() { env.DeleteNodes(names...) })
	// k8s-work-2 has two NICs; armed, it comes back from v1.12.1 with one.
	nics := []testenv.Link{{Name: "eth0", MAC: "bc:24:11:00:02:01", Addresses: []string{"127.0.0.212/24"}}, {Name: "eth1", MAC: "bc:24:11:00:02:02", Addresses: []string{"192.168.62.12/24"}}}
	ta.SetLinks(ips["k8s-work-2"], nics)
	var nicFault atomic.Bool
	members := atomic.Uint64{}
	members.Store(storyNodes[0].member)
	// A VM that boots (cattle) runs its template's Talos; a control plane
	// joins etcd as a new member.
	testenv.WatchVMs(t, vmDir, k, func(name, talos string) {
		member := uint64(0)
		if name == "k8s-ctrl-1" {
			member = members.Add(1)
		}
		ta.Add(ips[name], name, talos, member)
		ta.SetImage(ips[name], reg.Installer(testenv.Schematic, talos))
		if name == "k8s-work-2" {
			ta.SetLinks(ips[name], nics)
		}
	})
	// A machine that reboots into a new Talos (pets) re-registers at it.
	ta.OnBoot = func(ip, name, v string) {
		if name == "k8s-work-2" {
			if nicFault.Load() && v == "v1.12.1" {
				ta.SetLinks(ip, nics[:1])
			} else {
				ta.SetLinks(ip, nics)
			}
		}
		_ = k.AddNode(context.Background(), testenv.NodeSpec{Name: name, ControlPlane: name == "k8s-ctrl-1", Talos: v, Kubelet: "v1.34.1"})
	}
	talosconfig := ta.Serve(t)

	// The repository: drover.yaml, the Terraform root with its versions in
	// terraform/variables.tf, and the kit from `drover init`.
	drover := buildDrover(t)
	writeRepo(t, r.dir, reg.InstallerTemplate(testenv.Schematic))
	run := func(args ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, drover, args...)
		cmd.Dir = r.dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("drover %v: %v\n%s", args, err, out)
		}
	}
	run("init", "--config", "drover.yaml", "--repo-url", repoURL, "--output", ".", "--drover-version", droverVersion)
	r.git(t, "init", "-q", "-b", "main")
	r.git(t, "remote", "add", "origin", repoURL+".git")
	r.git(t, "add", "-A")
	r.git(t, "commit", "-qm", "infrastructure with the drover kit")

	// The runner's permissions, as the kit renders them.
	env.Apply(t, filepath.Join(r.dir, "kubernetes/apps/github-actions/runners/rbac.yaml"))
	kubeconfig := env.ServiceAccountKubeconfig(t, namespace, "github-actions-runner")

	// The VMs exist at v1.11.3, in a state outside the checkout (it is the
	// S3 bucket's stand-in: each job starts from a fresh checkout).
	nodesVar := `{"k8s-ctrl-1"={vm_id=8001,host="baldar"},"k8s-work-1"={vm_id=8101,host="baldar"},"k8s-work-2"={vm_id=8102,host="heimdall"}}`
	// TF_CLI_CONFIG_FILE installs the stand-in bpg/proxmox provider from its mirror.
	tfEnv := map[string]string{"TF_VAR_vm_dir": vmDir, "TF_VAR_nodes": nodesVar, "TF_CLI_ARGS_init": "-backend-config=path=" + state,
		"TF_CLI_CONFIG_FILE": os.Getenv("TF_CLI_CONFIG_FILE")}
	seed := filepath.Join(work, "seed")
	must(t, os.CopyFS(seed, os.DirFS(filepath.Join(r.dir, "terraform"))))
	for _, args := range [][]string{{"init", "-input=false"}, {"apply", "-auto-approve", "-input=false"}} {
		cmd := exec.CommandContext(ctx, tf, args...)
		cmd.Dir = seed
		cmd.Env = hostEnv(tfEnv)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("terraform %v: %v\n%s", args, err, out)
		}
	}
	env.WaitSchedulable(t, names...)

	r.mirror = newMirror(t)
	talosctlLog := filepath.Join(work, "talosctl.log")
	r.mirror.release(t, drover, tf, talosctlLog)
	r.secrets = secretsFile(t, talosconfig)
	extra := map[string]string{
		"HOME": filepath.Join(work, "home"), "KUBECONFIG": kubeconfig, "POD_NAMESPACE": namespace,
		"DROVER_TOOLS_MIRROR": r.mirror.url, "DROVER_E2E_ARTIFACTS": r.artifacts, "DROVER_E2E_GH_LOG": r.ghLog,
		"PATH":                      abs(t, "testdata/bin") + string(os.PathListSeparator) + os.Getenv("PATH"),
		"ACT_DISABLE_VERSION_CHECK": "1",
	}
	for k, v := range tfEnv {
		extra[k] = v
	}
	r.env = hostEnv(extra)
	vms := func() map[string]string {
		out := map[string]string{}
		for _, n := range names {
			data, _ := os.ReadFile(filepath.Join(vmDir, n+".vm"))
			out[n] = string(data)
		}
		return out
	}

	base, head := r.bump(t, "v1.11.3", "v1.12.0")
	pr := func(action string, merged bool, labels ...string) map[string]any {
		var ls []map[string]string
		for _, l := range labels {
			ls = append(ls, map[string]string{"name": l})
		}
		return map[string]any{"action": action, "number": 7, "pull_request": map[string]any{
			"number": 7, "merged": merged, "labels": ls, "title": "chore(deps): update talos",
			"base": map[string]any{"sha": base, "ref": "main"}, "head": map[string]any{"sha": head, "ref": "renovate/talos", "repo": map[string]any{"full_name": "prox-ops/e2e-infra"}},
			"merge_commit_sha": head,
		}, "repository": map[string]any{"full_name": "prox-ops/e2e-infra", "name": "e2e-infra", "owner": map[string]any{"login": "prox-ops"}}}
	}

	before := vms()
	ok := t.Run("pr-plan labels and comments the pull request", func(t *testing.T) {
		a := r.run(t, "pull_request", "pr-plan.yml", pr("opened", false))
		if a.code != 0 {
			t.Fatalf("act exit %d\n%s", a.code, a.tail(60))
		}
		gh, err := os.ReadFile(r.ghLog)
		must(t, err)
		for _, want := range []string{"pr edit 7 --add-label upgrade-cattle --remove-label upgrade-pets", "pr comment 7 --body-file plan.md", "<!-- drover-plan -->", "cattle", "k8s-work-2"} {
			if !strings.Contains(string(gh), want) {
				t.Errorf("gh calls lack %q:\n%s", want, gh)
			}
		}
		if strings.Contains(string(gh), "UNAUTHENTICATED") {
			t.Errorf("gh ran without the App's token:\n%s", gh)
		}
		// A cattle bump from a branch of the repository: the templates are
		// built ahead (they exist already in this fixture: an empty plan,
		// nothing applied).
		if a.job("templates") != "success" || !strings.Contains(a.log, "templates are already there") {
			t.Errorf("the templates job: %q\n%s", a.job("templates"), a.tail(40))
		}
		if after := vms(); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("building the templates changed VMs: %v -> %v", before, after)
		}
	})
	if !ok {
		return
	}
	ok = t.Run("a pets label on a minor bump is refused", func(t *testing.T) {
		a := r.run(t, "pull_request", "upgrade-pets.yml", pr("closed", true, "upgrade-pets"))
		if a.code == 0 {
			t.Fatalf("act exit 0\n%s", a.tail(40))
		}
		if !strings.Contains(a.log, "This version bump is a cattle upgrade") || !strings.Contains(a.log, "Relabel the pull request upgrade-cattle") {
			t.Fatalf("no clear refusal:\n%s", a.tail(40))
		}
		if strings.Contains(a.log, "drover upgrade") || a.job("upgrade") == "success" {
			t.Fatalf("the upgrade ran:\n%s", a.tail(40))
		}
		if after := vms(); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Fatalf("VMs changed: %v -> %v", before, after)
		}
	})
	if !ok {
		return
	}
	ok = t.Run("a merged cattle pull request upgrades the cluster, handing off from its runner's node", func(t *testing.T) {
		// drover runs in a runner pod on k8s-work-2, as on the cluster it
		// upgrades; ARC is played by the test (see handOffRunner).
		runner := env.RunnerPod(t, namespace, "runner-e2e", "k8s-work-2")
		moved := handOffRunner(t, runner.Name, "k8s-work-2")
		a := r.runWith(t, []string{"POD_NAME=" + runner.Name}, "pull_request", "upgrade-cattle.yml", pr("closed", true, "upgrade-cattle"))
		if a.code != 0 {
			t.Fatalf("act exit %d\n%s", a.code, a.tail(80))
		}
		if a.job("upgrade") != "success" || a.job("continue") != "success" || !strings.Contains(a.log, "drover: handed off") {
			t.Errorf("jobs %v: want the upgrade to hand off and the continue job to finish\n%s", a.jobs, a.tail(60))
		}
		if to := <-moved; to == "" || to == "k8s-work-2" {
			t.Errorf("the continuation's runner pod ran on %q", to)
		}
		if dirs, _ := filepath.Glob(filepath.Join(r.artifacts, "drover-run-*")); len(dirs) != 2 {
			t.Errorf("artifacts %v: want the upgrade job's and the continue job's", dirs)
		} else if rep := report(t, filepath.Join(dirs[0], "drover-report.json")); rep.Result != "handed-off" {
			t.Errorf("the upgrade job's report: %+v", rep)
		}
		sum := a.summary()
		for _, want := range []string{"## drover plan", "k8s-ctrl-1", "k8s-work-2", "cattle", "Talos API: k8s-ctrl-1"} {
			if !strings.Contains(sum, want) {
				t.Errorf("the step summary lacks %q:\n%s", want, sum)
			}
		}
		for n, v := range vms() {
			if v != "v1.12.0 v1.34.1" {
				t.Errorf("VM %s is %q", n, v)
			}
		}
		art := artifactDir(t, r.artifacts)
		rep := report(t, filepath.Join(art, "drover-report.json"))
		if rep.Result != "succeeded" || rep.Strategy != "cattle" || len(rep.Nodes) != 3 {
			t.Errorf("report: %+v", rep)
		}
		for _, n := range rep.Nodes {
			if n.Name == "k8s-work-2" && n.Outcome != "upgraded" {
				t.Errorf("the continuation left drover's node %s", n.Outcome)
			}
		}
		if j, err := os.ReadFile(filepath.Join(art, "drover-journal.jsonl")); err != nil || !strings.Contains(string(j), "k8s-work-2") {
			t.Errorf("journal artifact: %v\n%s", err, j)
		}
		// The control plane was guarded (and snapshotted) by the upgrade
		// job: the snapshot is among the artifacts encrypted only, and the
		// operator's identity decrypts it.
		snaps, _ := filepath.Glob(filepath.Join(r.artifacts, "drover-run-*", "etcd-snapshots", "*"))
		if len(snaps) == 0 {
			t.Errorf("no etcd snapshot among the artifacts")
		}
		for _, p := range snaps {
			data, err := os.ReadFile(p)
			must(t, err)
			if !strings.HasSuffix(p, ".snapshot.age") || bytes.Contains(data, []byte("etcd-snapshot-chunk")) {
				t.Errorf("a plaintext etcd snapshot among the artifacts: %s", p)
				continue
			}
			dec, err := age.Decrypt(bytes.NewReader(data), snapshotKey)
			if err != nil {
				t.Errorf("%s: %v", p, err)
				continue
			}
			if plain, _ := io.ReadAll(dec); !bytes.Contains(plain, []byte("etcd-snapshot-chunk")) {
				t.Errorf("%s decrypts to %q", p, plain)
			}
		}
		if a.job("health") != "success" || !strings.Contains(sum, "drover health") {
			t.Errorf("health-check was not called after the upgrade: jobs %v\n%s", a.jobs, sum)
		}
		// No secret reaches the log, the summary or an artifact.
		for _, v := range secretValues(t, r.secrets) {
			if strings.Contains(a.log, v) || strings.Contains(sum, v) {
				t.Errorf("a secret (%d bytes) appears in the workflow's output", len(v))
			}
			walkErr := filepath.WalkDir(art, func(p string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					if data, _ := os.ReadFile(p); strings.Contains(string(data), v) {
						t.Errorf("a secret (%d bytes) is in the artifact %s", len(v), p)
					}
				}
				return nil
			})
			if walkErr != nil {
				t.Errorf("read the artifacts: %v", walkErr)
			}
		}
		// The tools came from the release mirror, each with its sums.
		got := strings.Join(r.mirror.fetched(), "\n")
		for _, want := range []string{"/checksums.txt", "_SHA256SUMS", "/sha256sum.txt", "drover_0.1.0_linux_", "talosctl-linux-"} {
			if !strings.Contains(got, want) {
				t.Errorf("the mirror never served %q:\n%s", want, got)
			}
		}
	})
	if !ok {
		return
	}
	ok = t.Run("a halted pets run is resumed by workflow_dispatch", func(t *testing.T) {
		// Without recipients the snapshots stay on the runner: no
		// snapshot artifact at all.
		cfg, err := os.ReadFile(filepath.Join(r.dir, "drover.yaml"))
		must(t, err)
		must(t, os.WriteFile(filepath.Join(r.dir, "drover.yaml"), []byte(strings.Replace(string(cfg), "  etcdSnapshotRecipients: ["+snapshotKey.Recipient().String()+"]\n", "", 1)), 0o644))
		r.git(t, "commit", "-qam", "drover: no snapshot recipients")
		base, head = r.bump(t, "v1.12.0", "v1.12.1")
		nicFault.Store(true)
		a := r.run(t, "pull_request", "upgrade-pets.yml", pr("closed", true, "upgrade-pets"))
		if a.code == 0 {
			t.Fatalf("act exit 0: the NIC fault did not halt the run\n%s", a.tail(60))
		}
		rep := report(t, filepath.Join(artifactDir(t, r.artifacts), "drover-report.json"))
		if rep.Result != "halted" {
			t.Fatalf("report: %+v", rep)
		}
		if snaps, _ := filepath.Glob(filepath.Join(r.artifacts, "drover-run-*", "etcd-snapshots", "*")); len(snaps) != 0 {
			t.Errorf("without recipients, snapshots among the artifacts: %v", snaps)
		}
		if ta.NodeVersion(ips["k8s-work-2"]) != "v1.12.0" {
			t.Fatalf("k8s-work-2 runs %s after its rollback", ta.NodeVersion(ips["k8s-work-2"]))
		}
		if !strings.Contains(a.summary(), "drover health") {
			t.Errorf("health-check did not run after the halted upgrade:\n%s", a.summary())
		}
		nicFault.Store(false) // the operator fixes the NIC
		a = r.run(t, "workflow_dispatch", "upgrade-pets.yml", map[string]any{
			"inputs": map[string]any{"base": base, "head": head, "resume": "true", "retry_node": "k8s-work-2"}})
		if a.code != 0 {
			t.Fatalf("resume: act exit %d\n%s", a.code, a.tail(80))
		}
		for _, n := range storyNodes {
			if v := ta.NodeVersion(n.ip); v != "v1.12.1" {
				t.Errorf("%s runs %s", n.name, v)
			}
		}
		rep = report(t, filepath.Join(artifactDir(t, r.artifacts), "drover-report.json"))
		if rep.Result != "succeeded" {
			t.Errorf("resumed report: %+v", rep)
		}
	})
	if !ok {
		return
	}
	ok = t.Run("a canary run by hand pauses green, and resume does the rest", func(t *testing.T) {
		base, head = r.bump(t, "v1.12.1", "v1.12.2")
		a := r.run(t, "workflow_dispatch", "upgrade-pets.yml", map[string]any{
			"inputs": map[string]any{"base": base, "head": head, "resume": "false", "retry_node": "", "only": "", "canary": "1"}})
		if a.code != 0 || a.job("upgrade") != "success" || !strings.Contains(a.log, "drover: canary paused") {
			t.Fatalf("canary: act exit %d, jobs %v\n%s", a.code, a.jobs, a.tail(40))
		}
		at := map[string]string{}
		for _, n := range storyNodes {
			at[n.name] = ta.NodeVersion(n.ip)
		}
		if at["k8s-work-1"] != "v1.12.2" || at["k8s-ctrl-1"] != "v1.12.1" || at["k8s-work-2"] != "v1.12.1" {
			t.Fatalf("after the canary: %v", at)
		}
		a = r.run(t, "workflow_dispatch", "upgrade-pets.yml", map[string]any{
			"inputs": map[string]any{"base": base, "head": head, "resume": "true", "retry_node": "", "only": "", "canary": "0"}})
		if a.code != 0 {
			t.Fatalf("resume: act exit %d\n%s", a.code, a.tail(60))
		}
		for _, n := range storyNodes {
			if v := ta.NodeVersion(n.ip); v != "v1.12.2" {
				t.Errorf("%s runs %s", n.name, v)
			}
		}
	})
	if !ok {
		return
	}
	t.Run("a tampered download stops the job before drover runs", func(t *testing.T) {
		// The mirror now serves a different drover than its checksums.txt names.
		tar := filepath.Join(r.mirror.dir, "prox-ops/drover/releases/download", droverVersion, "drover_0.1.0_linux_"+runtime.GOARCH+".tar.gz")
		good, err := os.ReadFile(tar)
		must(t, err)
		t.Cleanup(func() { _ = os.WriteFile(tar, good, 0o644) })
		must(t, os.WriteFile(tar, tarGz(t, "drover", []byte("#!/bin/sh\necho pwned\n")), 0o644))
		a := r.run(t, "workflow_dispatch", "health-check.yml", map[string]any{"inputs": map[string]any{"node_name": ""}})
		if a.code == 0 || !strings.Contains(a.log, "FAILED") || strings.Contains(a.log, "pwned") {
			t.Fatalf("act exit %d\n%s", a.code, a.tail(30))
		}
	})
	t.Run("test-runner reaches the API server with every permission", func(t *testing.T) {
		a := r.run(t, "workflow_dispatch", "test-runner.yml", map[string]any{})
		if a.code != 0 || !strings.Contains(a.summary(), "system:serviceaccount:github-actions:github-actions-runner") {
			t.Fatalf("act exit %d\n%s\n%s", a.code, a.summary(), a.tail(30))
		}
	})
	t.Run("test-secrets names what is wrong and prints no value", func(t *testing.T) {
		// DISCORD_WEBHOOK_URL is empty here (nothing may dial Discord) and
		// the App key is a stand-in, not PEM: the check fails on those two.
		a := r.run(t, "workflow_dispatch", "test-secrets.yml", map[string]any{})
		sum := a.summary()
		if a.code == 0 || !strings.Contains(sum, "| DISCORD_WEBHOOK_URL | MISSING |") || !strings.Contains(sum, "| GH_APP_PRIVATE_KEY | MALFORMED |") ||
			!strings.Contains(sum, "| TALOSCONFIG | ok |") || !strings.Contains(sum, "| PROXMOX_USERNAME | ok |") {
			t.Fatalf("act exit %d\n%s\n%s", a.code, sum, a.tail(30))
		}
		for _, v := range secretValues(t, r.secrets) {
			if strings.Contains(a.log, v) || strings.Contains(sum, v) {
				t.Errorf("a secret (%d bytes) appears in the output", len(v))
			}
		}
	})
	t.Run("health-check runs by hand", func(t *testing.T) {
		a := r.run(t, "workflow_dispatch", "health-check.yml", map[string]any{"inputs": map[string]any{"node_name": "k8s-work-1"}})
		if a.code != 0 {
			t.Fatalf("act exit %d\n%s", a.code, a.tail(60))
		}
		if !strings.Contains(a.summary(), "k8s-work-1") {
			t.Fatalf("summary:\n%s", a.summary())
		}
	})
	// The run lock is free and the journal sits in the runner's namespace.
	if chunks, err := env.Client.CoreV1().ConfigMaps(namespace).List(ctx, metav1.ListOptions{LabelSelector: journal.LabelJournal + "=drover-journal"}); err != nil || len(chunks.Items) == 0 {
		t.Errorf("the journal's chunk ConfigMaps are not in the runner's namespace: %v", err)
	}
}

// secretValues are the secrets' values, long enough to search for.
func secretValues(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	must(t, err)
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if _, v, ok := strings.Cut(line, "="); ok && len(v) >= 8 {
			out = append(out, v)
		}
	}
	return out
}

type reportSummary struct {
	Result   string `json:"result"`
	Strategy string `json:"strategy"`
	Nodes    []struct {
		Name    string `json:"name"`
		Outcome string `json:"outcome"`
	} `json:"nodes"`
}

func report(t *testing.T, path string) reportSummary {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("report artifact: %v", err)
	}
	var r reportSummary
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("report artifact: %v\n%s", err, data)
	}
	return r
}

// artifactDir is the artifact of the job that finished the run (each act
// run starts with none): the upgrade's, or its continuation's.
func artifactDir(t *testing.T, root string) string {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(root, "drover-run-*"))
	if len(dirs) == 2 && strings.HasSuffix(dirs[1], "-continued") {
		return dirs[1]
	}
	if len(dirs) != 1 {
		t.Fatalf("%d artifacts, want one (or a run and its continuation): %v", len(dirs), dirs)
	}
	return dirs[0]
}

// handOffRunner plays ARC for a hand-off: once drover cordons its own node
// (the upgrade job hands off), the runner pod that ran that job has
// finished, and the next job's runner pod starts where the real scheduler
// puts it. act runs every job on this host with one environment, so the
// new pod has the old one's name (POD_NAME). It sends the new pod's node
// (or "" after two minutes without a hand-off), then removes it, so the
// later stories run from outside the cluster.
func handOffRunner(t *testing.T, pod, node string) <-chan string {
	t.Helper()
	moved := make(chan string, 1)
	ctx := t.Context()
	pods := env.Client.CoreV1().Pods(namespace)
	go func() {
		defer close(moved)
		deadline := time.Now().Add(10 * time.Minute)
		for time.Now().Before(deadline) {
			n, err := env.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
			if err == nil && n.Spec.Unschedulable {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
		_ = pods.Delete(ctx, pod, metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(0))})
		for i := 0; i < 100; i++ {
			if _, err := pods.Get(ctx, pod, metav1.GetOptions{}); apierrors.IsNotFound(err) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if _, err := env.NewRunnerPod(ctx, namespace, pod, ""); err != nil {
			moved <- ""
			return
		}
		to := ""
		for i := 0; i < 300 && to == ""; i++ {
			if p, err := pods.Get(ctx, pod, metav1.GetOptions{}); err == nil {
				to = p.Spec.NodeName
			}
			time.Sleep(100 * time.Millisecond)
		}
		moved <- to
	}()
	t.Cleanup(func() {
		_ = pods.Delete(context.Background(), pod, metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(0))})
	})
	return moved
}

func tfBinary(t *testing.T) string {
	t.Helper()
	return testenv.Terraform(t, "../terraform/testdata/provider")
}

// writeRepo writes the infrastructure repository: drover.yaml and the
// fixture's Terraform root with the versions moved to variables.tf.
func writeRepo(t *testing.T, dir, installerImage string) {
	t.Helper()
	var inv strings.Builder
	for _, n := range storyNodes {
		role := "worker"
		if n.member != 0 {
			role = "controlplane"
		}
		fmt.Fprintf(&inv, "  - {name: %s, role: %s, ip: %s, proxmoxHost: %s, vmId: %d}\n", n.name, role, n.ip, n.host, n.vmID)
	}
	must(t, os.WriteFile(filepath.Join(dir, "drover.yaml"), []byte(`cluster: {name: e2e}
nodes:
`+inv.String()+`talos:
  installerImage: `+installerImage+`
  etcdSnapshotDir: etcd-snapshots
  etcdSnapshotRecipients: [`+snapshotKey.Recipient().String()+`]
terraform:
  workingDir: terraform
rollout: {maxParallelWorkers: 2, controlPlaneSoak: 1s, workerSoak: 1s, healthInterval: 1s, readyTimeout: 1m, healthAttempts: 2}
health: {disable: [DNS Resolution, Network Connectivity]}
`), 0o644))
	tfDir := filepath.Join(dir, "terraform")
	must(t, os.CopyFS(tfDir, os.DirFS("../terraform/testdata/prox-ops")))
	mainTF := filepath.Join(tfDir, "main.tf")
	data, err := os.ReadFile(mainTF)
	must(t, err)
	main := string(data)
	for _, block := range []string{"variable \"talos_version\" {\n  type = string\n}\n", "variable \"kubernetes_version\" {\n  type    = string\n  default = \"v1.34.1\"\n}\n"} {
		if !strings.Contains(main, block) {
			t.Fatalf("the fixture's main.tf no longer declares %q", block)
		}
		main = strings.Replace(main, block, "", 1)
	}
	must(t, os.WriteFile(mainTF, []byte(main), 0o644))
	must(t, os.WriteFile(filepath.Join(tfDir, "variables.tf"), []byte(`# Renovate bumps these.
variable "talos_version" {
  type    = string
  default = "v1.11.3"
}

variable "kubernetes_version" {
  type    = string
  default = "v1.34.1"
}
`), 0o644))
}
