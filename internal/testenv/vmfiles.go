package testenv

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// WatchVMs is the hypervisor of the Terraform fixture (its VMs are
// <node>.vm files holding "talos kubelet"): a file that appears or changes
// boots the node at those versions in k, a file that goes away stops it.
// onBoot, when set, is told of each boot.
func WatchVMs(t testing.TB, dir string, k *Kubelets, onBoot func(name, talos string)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		seen := map[string]string{}
		for ctx.Err() == nil {
			now := map[string]string{}
			files, _ := filepath.Glob(filepath.Join(dir, "*.vm"))
			for _, f := range files {
				data, err := os.ReadFile(f)
				if err != nil {
					continue
				}
				now[strings.TrimSuffix(filepath.Base(f), ".vm")] = string(data)
			}
			for name, v := range now {
				if seen[name] == v {
					continue
				}
				if parts := strings.Fields(v); len(parts) == 2 {
					_ = k.AddNode(ctx, NodeSpec{Name: name, ControlPlane: strings.Contains(name, "ctrl"), Talos: parts[0], Kubelet: parts[1]})
					if onBoot != nil {
						onBoot(name, parts[0])
					}
				}
			}
			for name := range seen {
				if _, ok := now[name]; !ok {
					_ = k.StopNode(ctx, name)
				}
			}
			seen = now
			time.Sleep(50 * time.Millisecond)
		}
	}()
}
