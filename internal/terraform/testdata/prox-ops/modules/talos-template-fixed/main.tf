variable "talos_version" {
  type = string
}

variable "dir" {
  type = string
}

# One template at a fixed VM id (as prox-ops keeps its templates at
# 9000-9007): a new version replaces it in place, so the old one is gone.
resource "terraform_data" "template" {
  input            = var.talos_version
  triggers_replace = var.talos_version
  provisioner "local-exec" {
    command = "printf '%s' '${self.input}' > '${var.dir}/template-fixed'"
  }
}
