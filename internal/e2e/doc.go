// Package e2e runs the production path as it runs: the GitOps kit's
// workflows, rendered by `drover init`, executed by a real workflow runner
// (nektos/act, jobs on the host as on the self-hosted runners), installing
// a released drover, OpenTofu and talosctl from a release mirror with their
// checksums checked, and upgrading a cluster made of the real control plane
// (as the runner's ServiceAccount), a real Terraform and the in-test Talos
// API. It has no code of its own.
package e2e
