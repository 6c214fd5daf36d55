variable "name" { type = string }
variable "vm_id" { type = number }
variable "host" { type = string }
variable "talos_version" { type = string }
variable "kubernetes_version" { type = string }
variable "dir" { type = string }
variable "drift" { type = bool }

# Stands in for proxmox_virtual_environment_vm: the output map carries the
# same vm_id, name and node_name attributes drover checks before a destroy.
resource "terraform_data" "vm" {
  input = {
    vm_id              = var.vm_id
    name               = var.name
    node_name          = var.host
    talos_version      = var.talos_version
    kubernetes_version = var.kubernetes_version
    dir                = var.dir
  }
  triggers_replace = var.drift ? timestamp() : null

  provisioner "local-exec" {
    # The shell sees TF_VAR_proxmox_password like any provider would; a
    # careless script echoes it. drover must mask it.
    # DROVER_FIXTURE_CLONE_SECONDS makes the clone take that long (only
    # DROVER_FIXTURE_SLOW_NODE's, when set), for the tests that stop a run
    # while Terraform is creating a VM.
    command = "case \"$${DROVER_FIXTURE_SLOW_NODE:-${self.input.name}}\" in '${self.input.name}') sleep $${DROVER_FIXTURE_CLONE_SECONDS:-0} ;; esac && echo \"cloning VM ${self.input.vm_id} on ${self.input.node_name} with password $TF_VAR_proxmox_password\" && printf '%s %s' '${self.input.talos_version}' '${self.input.kubernetes_version}' > '${self.input.dir}/${self.input.name}.vm'"
  }

  provisioner "local-exec" {
    when    = destroy
    command = "rm -f '${self.input.dir}/${self.input.name}.vm'"
  }
}
