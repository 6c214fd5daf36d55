# A fixture shaped like prox-ops: module "templates" and module "nodes" with
# for_each. Proxmox cannot run here: each VM is a
# proxmox_virtual_environment_vm of a stand-in for the bpg/proxmox provider
# (testdata/provider, installed through dev_overrides; nothing is
# downloaded), whose VMs are <node>.vm files in the test's simulated
# hypervisor directory. The templates are terraform_data.
terraform {
  required_providers {
    proxmox = {
      source = "bpg/proxmox"
    }
  }
  backend "local" {}
}

provider "proxmox" {
  endpoint = "file://${var.vm_dir}"
}

variable "talos_version" {
  type = string
}

variable "kubernetes_version" {
  type    = string
  default = "v1.34.1"
}

variable "vm_dir" {
  type        = string
  description = "where the simulated hypervisor keeps its VMs (set with TF_VAR_vm_dir)"
}

variable "drift" {
  type    = bool
  default = false
}

variable "slow_seconds" {
  type    = number
  default = 0
}

variable "slow_token" {
  type    = string
  default = ""
}

variable "nodes" {
  type = map(object({ vm_id = number, host = string }))
  default = {
    "k8s-ctrl-1" = { vm_id = 8001, host = "baldar" }
    "k8s-work-1" = { vm_id = 8101, host = "baldar" }
    "k8s-work-2" = { vm_id = 8102, host = "heimdall" }
    "k8s-work-3" = { vm_id = 8103, host = "odin" }
    "k8s-work-4" = { vm_id = 8104, host = "thor" }
  }
}

module "templates" {
  source   = "./modules/talos-template"
  versions = ["v1.11.3", "v1.12.0"]
  dir      = var.vm_dir
}

# The same at a fixed VM id, for terraform.templates: rebuild.
module "fixed_templates" {
  source        = "./modules/talos-template-fixed"
  talos_version = var.talos_version
  dir           = var.vm_dir
}

module "nodes" {
  source             = "./modules/talos-node"
  for_each           = var.nodes
  name               = each.key
  vm_id              = each.value.vm_id
  host               = each.value.host
  talos_version      = var.talos_version
  kubernetes_version = var.kubernetes_version
  dir                = var.vm_dir
  drift              = var.drift
}

# Lets a test hold the state lock: an apply with slow_seconds > 0 sleeps.
resource "terraform_data" "slow" {
  triggers_replace = var.slow_token
  provisioner "local-exec" {
    command = "sleep ${var.slow_seconds}"
  }
}
