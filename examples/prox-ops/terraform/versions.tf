# The version variables Renovate bumps and drover reads (with the HCL
# parser) from the merged pull request's base and merge commits.
variable "talos_version" {
  description = "Talos Linux version of the node templates"
  type        = string
  default     = "v1.11.3"
}

variable "kubernetes_version" {
  description = "Kubernetes version the nodes run"
  type        = string
  default     = "v1.34.1"
}
