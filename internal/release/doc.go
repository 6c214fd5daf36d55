// Package release holds the tests of drover's own release process: the
// goreleaser configuration (.goreleaser.yaml) and the release and CI
// workflows (.github/workflows), run with the real goreleaser and
// cyclonedx-gomod. It has no code of its own.
package release
