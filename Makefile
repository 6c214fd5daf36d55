# drover's developer entry points. `make test` is the whole suite, exactly as CI runs it.
SHELL := /usr/bin/env bash
GO    ?= go
PKG   := github.com/prox-ops/drover
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo none)
LDFLAGS := -X $(PKG)/internal/cli.Version=$(VERSION) -X $(PKG)/internal/cli.Commit=$(COMMIT)

.PHONY: all build test vet lab bench

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/drover ./cmd/drover

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

# The whole test suite: vet, then every test, verbosely so the log shows what ran.
test: vet
	$(GO) test -count=1 -v ./...

# A full lab upgrade, as in the README.
lab:
	$(GO) run ./cmd/drover upgrade --lab --to-talos v1.12.0 --yes

bench:
	$(GO) test -run '^$$' -bench . -benchtime 3x ./...
