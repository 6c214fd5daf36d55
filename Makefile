# drover's developer entry points. `make test` is the whole suite, exactly as CI runs it.
SHELL := /usr/bin/env bash
GO    ?= go
PKG   := github.com/prox-ops/drover
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo none)
LDFLAGS := -X $(PKG)/internal/cli.Version=$(VERSION) -X $(PKG)/internal/cli.Commit=$(COMMIT)

.PHONY: all build test test-unit vet lab bench bench-go mutate testenv fuzz release-check

# drover's release, without publishing: what the release workflow builds.
release-check:
	@gr="$$(hack/go-tool.sh goreleaser | tail -n 1)" && cdx="$$(hack/go-tool.sh cyclonedx-gomod | tail -n 1)" && \
	  PATH="$$(dirname "$$cdx"):$$PATH" "$$gr" release --snapshot --clean --skip=publish

# Real control-plane binaries for the integration tier (built once, cached
# in $${XDG_CACHE_HOME:-~/.cache}/drover, keyed by version).
testenv:
	@hack/testenv-binaries.sh >/dev/null

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/drover ./cmd/drover

# gofmt, go vet, and golangci-lint pinned (built once into the cache) with
# the linters .golangci.yml lists and defends.
vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	@lint="$$(hack/go-tool.sh golangci-lint | tail -n 1)" && "$$lint" run ./...

# The whole test suite: vet, the control-plane binaries (built or reused
# from the cache before go test, whose 10-minute timeout a build would hit),
# then every test, verbosely so the log shows what ran. The integration tier
# is required here: if it cannot start, the tests fail rather than skip.
test: vet
	@vars="$$(hack/tools.sh env test)" && \
	  echo "the tools (internal/testenv/tools.tsv):" && echo "$$vars" | sed 's/^/  /' && \
	  env $$vars DROVER_TESTENV_REQUIRED=1 $(GO) test -count=1 -timeout 20m -v ./...
	@$(MAKE) --no-print-directory fuzz FUZZTIME=20000x

# The tests that need no control plane and no tool (the engine, the lab,
# the parsers, the CLI on the lab), with the integration tier off: its
# tests say they skip, and why. -short leaves out the thousand-node lab
# and plays 6 of the crash matrix's 37 points; make test runs them all.
test-unit:
	DROVER_TESTENV=off $(GO) test -short -count=1 ./...

# Short fuzzing of the parsers (config, versions, journal), the masker and
# the Markdown renderers (report, step summary); longer with FUZZTIME=10m.
# `make test` gives each target a count (20000x), not a duration: Go 1.26's
# fuzz coordinator can report "context deadline exceeded" as a failure when
# a duration ends while a worker is busy (go.dev/issue/75804, fixed in 1.27);
# a count has no deadline to race.
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./internal/config
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./internal/version
	$(GO) test -run '^$$' -fuzz '^FuzzRead$$' -fuzztime $(FUZZTIME) ./internal/journal
	$(GO) test -run '^$$' -fuzz '^FuzzMask$$' -fuzztime $(FUZZTIME) ./internal/secrets
	$(GO) test -run '^$$' -fuzz '^FuzzMaskJSON$$' -fuzztime $(FUZZTIME) ./internal/secrets
	$(GO) test -run '^$$' -fuzz '^FuzzMarkdown$$' -fuzztime $(FUZZTIME) ./internal/runreport
	$(GO) test -run '^$$' -fuzz '^FuzzStepSummary$$' -fuzztime $(FUZZTIME) ./internal/notify

# A full lab upgrade, as in the README.
lab:
	$(GO) run ./cmd/drover upgrade --lab --to-talos v1.12.0 --yes

# Speed and scale, each figure beside a reference measured in the same run
# (README, "Performance"): drain against kubectl drain, the gate on the real
# API server at 15/300 and 1000/30,000, the lab at 15 and 1000 nodes, the
# whole reference cluster's simulated time. About ten minutes; the Go
# micro-benchmarks are `make bench-go`.
bench:
	@bin="$$(hack/testenv-binaries.sh | tail -n 1)" && kubectl="$$(hack/kubectl-binary.sh | tail -n 1)" && \
	  DROVER_TESTENV_BIN="$$bin" DROVER_KUBECTL_BIN="$$kubectl" $(GO) run ./hack/bench

# Mutation testing of the packages whose tests need no control plane
# (hack/mutate.sh; about ten minutes on 2 cores, so not part of make test).
mutate:
	@hack/mutate.sh

bench-go:
	$(GO) test -run '^$$' -bench . -benchtime 3x ./...
