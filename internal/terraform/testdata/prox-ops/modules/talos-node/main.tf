variable "name" { type = string }
variable "vm_id" { type = number }
variable "host" { type = string }
variable "talos_version" { type = string }
variable "kubernetes_version" { type = string }
variable "dir" { type = string }
variable "drift" { type = bool }

terraform {
  required_providers {
    proxmox = {
      source = "bpg/proxmox"
    }
  }
}

# The node's VM, as bpg/proxmox names it: drover checks its vm_id, name and
# node_name before a destroy. The stand-in provider writes the VM's file,
# holding its description, in the simulated hypervisor's directory.
resource "proxmox_virtual_environment_vm" "vm" {
  vm_id       = var.vm_id
  name        = var.name
  node_name   = var.host
  description = "${var.talos_version} ${var.kubernetes_version}"
  # drift: every plan wants to replace the VM, as a provider bug would.
  tags = var.drift ? [timestamp()] : []

  provisioner "local-exec" {
    # The shell sees TF_VAR_proxmox_password like any provisioner would; a
    # careless script echoes it. drover must mask it.
    command = "echo \"cloned VM ${self.vm_id} on ${self.node_name} with password $TF_VAR_proxmox_password\""
  }
}
