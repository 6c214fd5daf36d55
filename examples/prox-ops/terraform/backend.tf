# Remote state for prox-ops in an S3-compatible bucket (AWS S3, MinIO, Ceph
# RGW, Cloudflare R2...). Credentials come only from the environment
# (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), never from this file.
#
# Locking is S3-native (use_lockfile = true): a .tflock object next to the
# state, no DynamoDB table. It needs Terraform >= 1.10 or OpenTofu >= 1.10.
#
# Turn on versioning on the bucket and keep at least 30 noncurrent versions:
# that is what lets you restore an earlier state (see
# docs/runbooks/terraform-state-migration.md). Versioning is a bucket
# setting, not a backend argument.
terraform {
  required_version = ">= 1.10.0"

  backend "s3" {
    bucket       = "prox-ops-terraform-state"
    key          = "prox-ops/terraform.tfstate"
    region       = "us-east-1"
    encrypt      = true
    use_lockfile = true

    # S3-compatible endpoint (here an in-cluster Ceph RGW or MinIO). Remove
    # these five settings for AWS S3 itself.
    endpoints = {
      s3 = "https://s3.prox-ops.example"
    }
    use_path_style              = true
    skip_credentials_validation = true
    skip_region_validation      = true
    skip_requesting_account_id  = true
    skip_metadata_api_check     = true
  }
}
