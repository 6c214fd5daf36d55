// Command configdoc writes the field reference of drover.yaml into
// docs/configuration.md, between its BEGIN and END markers, from the
// config package's structs, defaults and doc comments. Run it from the
// repository's root after a change to internal/config:
//
//	go run ./hack/configdoc
//
// internal/config's tests fail while the page and the structs disagree.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/prox-ops/drover/internal/config"
)

const page = "docs/configuration.md"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "configdoc:", err)
		os.Exit(1)
	}
}

func run() error {
	srcs := map[string][]byte{}
	files, err := filepath.Glob("internal/config/*.go")
	if err != nil {
		return err
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		if srcs[f], err = os.ReadFile(f); err != nil {
			return err
		}
	}
	docs, err := config.FieldDocs(srcs)
	if err != nil {
		return err
	}
	text, err := os.ReadFile(page)
	if err != nil {
		return err
	}
	out, err := config.ReplaceReference(string(text), config.Reference(config.Fields(docs)))
	if err != nil {
		return err
	}
	return os.WriteFile(page, []byte(out), 0o644)
}
