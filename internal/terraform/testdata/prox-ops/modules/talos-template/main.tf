variable "versions" {
  type = list(string)
}

variable "dir" {
  type = string
}

# One template per version; none is destroyed when a new one is added.
resource "terraform_data" "template" {
  for_each = toset(var.versions)
  input    = each.key
  provisioner "local-exec" {
    command = "touch '${var.dir}/template-${each.key}'"
  }
}
