package terraform

import (
	"errors"
	"testing"

	tfjson "github.com/hashicorp/terraform-json"

	"github.com/prox-ops/drover/internal/config"
)

// TestTheIdentityCheckReadsEachField: the VM at a node's address must be
// that node's VM: its vm_id, its name and its Proxmox host (node_name),
// each checked on its own; a node with no VM in the state has nothing to
// destroy.
func TestTheIdentityCheckReadsEachField(t *testing.T) {
	const typ = "proxmox_virtual_environment_vm"
	node := config.Node{Name: "k8s-work-1", VMID: 8101, ProxmoxHost: "baldar"}
	r := &Runner{settings: config.Terraform{VMResourceType: typ, NodeAddress: `module.nodes["{name}"]`}}
	state := func(attrs map[string]any) *tfjson.State {
		return &tfjson.State{Values: &tfjson.StateValues{RootModule: &tfjson.StateModule{ChildModules: []*tfjson.StateModule{{
			Address: `module.nodes["k8s-work-1"]`,
			Resources: []*tfjson.StateResource{{
				Address: `module.nodes["k8s-work-1"].` + typ + ".vm", Type: typ, Mode: tfjson.ManagedResourceMode, AttributeValues: attrs,
			}},
		}}}}}
	}
	tests := []struct {
		name      string
		st        *tfjson.State
		wantVM    bool
		wantField string // "" for no mismatch
	}{
		{"its own VM", state(map[string]any{"vm_id": float64(8101), "name": "k8s-work-1", "node_name": "baldar"}), true, ""},
		{"another VM id", state(map[string]any{"vm_id": float64(8102), "name": "k8s-work-1", "node_name": "baldar"}), true, "vm_id"},
		{"another name", state(map[string]any{"vm_id": float64(8101), "name": "k8s-work-2", "node_name": "baldar"}), true, "name"},
		{"another host", state(map[string]any{"vm_id": float64(8101), "name": "k8s-work-1", "node_name": "odin"}), true, "node_name"},
		{"no VM in the state", &tfjson.State{Values: &tfjson.StateValues{RootModule: &tfjson.StateModule{}}}, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			exists, err := r.checkIdentity(tc.st, node)
			if exists != tc.wantVM {
				t.Fatalf("exists = %v, want %v", exists, tc.wantVM)
			}
			var mm *IdentityMismatchError
			switch {
			case tc.wantField == "" && err != nil:
				t.Fatalf("err = %v", err)
			case tc.wantField != "" && (!errors.As(err, &mm) || mm.Field != tc.wantField):
				t.Fatalf("err = %v, want a mismatch of %s", err, tc.wantField)
			}
		})
	}
}
