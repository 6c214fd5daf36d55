package lab

import (
	"fmt"

	"github.com/prox-ops/drover/internal/config"
)

// Hosts are the Proxmox hosts of the prox-ops reference cluster.
var hosts = [...]string{"baldar", "heimdall", "odin", "thor"}

// DefaultConfig returns the prox-ops reference cluster, the shape the lab
// takes when no configuration is given: 3 control-plane nodes and 12
// workers on 4 Proxmox hosts, with GPU workers k8s-work-4 and k8s-work-14.
// examples/prox-ops/drover.yaml describes the same cluster.
func DefaultConfig() config.Config {
	c := config.Defaults()
	c.Cluster.Name = "prox-ops"
	c.Talos.InstallerImage = "factory.talos.dev/nocloud-installer/376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba:{version}"
	for i := 1; i <= 3; i++ {
		c.Nodes = append(c.Nodes, config.Node{
			Name: fmt.Sprintf("k8s-ctrl-%d", i), Role: config.RoleControlPlane,
			IP: fmt.Sprintf("10.20.67.%d", i), ProxmoxHost: hosts[i-1], VMID: 8000 + i,
		})
	}
	workers := []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 14}
	for i, w := range workers {
		n := config.Node{
			Name: fmt.Sprintf("k8s-work-%d", w), Role: config.RoleWorker,
			IP: fmt.Sprintf("10.20.67.%d", 10+w), ProxmoxHost: hosts[i%len(hosts)], VMID: 8100 + w,
		}
		if w == 4 || w == 14 {
			n.GPUs = 1
		}
		c.Nodes = append(c.Nodes, n)
	}
	return c
}

// GeneratedConfig is a lab inventory of n nodes: cp control-plane nodes
// (default 3, or 1 for very small clusters) and the rest workers, spread
// round-robin over hosts Proxmox hosts (default: one per 4 nodes, at least
// 3), with a GPU on every tenth worker. Addresses are data in 10.20.0.0/16.
func GeneratedConfig(n, cp, hosts int) config.Config {
	c := config.Defaults()
	c.Cluster.Name = fmt.Sprintf("lab-%d", n)
	c.Talos.InstallerImage = DefaultConfig().Talos.InstallerImage
	if cp <= 0 {
		cp = min(3, max(1, n/3))
	}
	if hosts <= 0 {
		hosts = max(3, n/4)
	}
	for i := 1; i <= n; i++ {
		node := config.Node{ProxmoxHost: fmt.Sprintf("pve-%d", (i-1)%hosts+1), IP: fmt.Sprintf("10.20.%d.%d", i/250, i%250+1)}
		if i <= cp {
			node.Name, node.Role, node.VMID = fmt.Sprintf("cp-%d", i), config.RoleControlPlane, 8000+i
		} else {
			w := i - cp
			node.Name, node.Role, node.VMID = fmt.Sprintf("worker-%d", w), config.RoleWorker, 10000+w
			if w%10 == 0 {
				node.GPUs = 1
			}
		}
		c.Nodes = append(c.Nodes, node)
	}
	return c
}
