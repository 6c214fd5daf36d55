// Command terraform-provider-proxmox is a stand-in for the bpg/proxmox
// provider in drover's Terraform tests (the real one cannot reach a Proxmox
// host here, and its source is not served). It offers the one resource
// drover reads, proxmox_virtual_environment_vm, with the attributes drover's
// identity check reads (vm_id, name, node_name) and a description; a VM is a
// file <name>.vm in the directory the provider's endpoint names
// (file:///path), holding the description, which the test's simulated
// hypervisor watches. Built by hack/tf-provider.sh and installed through a
// CLI configuration's dev_overrides.
package main

import (
	"context"
	"log"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"
)

func main() {
	err := providerserver.Serve(context.Background(), newProvider, providerserver.ServeOpts{Address: "registry.terraform.io/bpg/proxmox"})
	if err != nil {
		log.Fatal(err)
	}
}
