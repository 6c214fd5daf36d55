#!/usr/bin/env bash
# Builds the Terraform tests' stand-in for the bpg/proxmox provider
# (internal/terraform/testdata/provider, terraform-plugin-framework) into a
# filesystem mirror in the cache, keyed by its sources' hash, with the CLI
# configuration that installs it from there; testenv.TerraformProvider finds
# the same (this script only saves the build from the tests' time). Prints
# the configuration's path on its last line.
set -euo pipefail
exec go run ./hack/tf-provider
