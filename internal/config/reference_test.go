package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func fieldsFromSource(t *testing.T) []Field {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	srcs := map[string][]byte{}
	for _, f := range files {
		if !strings.HasSuffix(f, "_test.go") {
			if srcs[f], err = os.ReadFile(f); err != nil {
				t.Fatal(err)
			}
		}
	}
	docs, err := FieldDocs(srcs)
	if err != nil {
		t.Fatal(err)
	}
	return Fields(docs)
}

// TestTheFieldReferenceIsTheStructs: docs/configuration.md lists every
// field of drover.yaml with its type, default and meaning, as the Go
// structs say (go run ./hack/configdoc writes it), and every field has a
// meaning.
func TestTheFieldReferenceIsTheStructs(t *testing.T) {
	fields := fieldsFromSource(t)
	page, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	want, err := ReplaceReference(string(page), Reference(fields))
	if err != nil {
		t.Fatal(err)
	}
	if want != string(page) {
		t.Error("docs/configuration.md's field reference is not the structs': run go run ./hack/configdoc")
	}
	for _, f := range fields {
		if f.Doc == "" {
			t.Errorf("%s has no doc comment: say what it means on its Go field", f.Path)
		}
	}
	if len(fields) < 100 {
		t.Errorf("only %d fields: the walk lost some", len(fields))
	}
}

// TestEveryDocumentedFieldExists: every drover.yaml field the README and
// docs/ name (`rollout.drainTimeout`, `health.alertmanager.silences[0]`)
// is a field of the configuration.
func TestEveryDocumentedFieldExists(t *testing.T) {
	known := map[string]bool{}
	for _, f := range fieldsFromSource(t) {
		// A field and every section above it.
		p := f.Path
		for {
			known[p] = true
			i := strings.LastIndexAny(p, ".")
			if i < 0 {
				break
			}
			p = strings.TrimSuffix(p[:i], "[]")
		}
	}
	tops := []string{"cluster", "nodes", "versions", "talos", "rollout", "approval", "notifications", "terraform", "health",
		"maintenanceWindow", "secrets", "metrics", "kubeClient", "journal", "hooks"}
	// A field ends where the code span does, or at its value (": 5m").
	ref := regexp.MustCompile("`((?:" + strings.Join(tops, "|") + `)(?:\[\d*\])?(?:\.[A-Za-z]+(?:\[\d*\])?)+)(?:` + "`" + `|:|=| )`)
	pages, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	runbooks, _ := filepath.Glob("../../docs/runbooks/*.md")
	pages = append(append(pages, runbooks...), "../../README.md")
	seen := 0
	for _, page := range pages {
		data, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ref.FindAllStringSubmatch(string(data), -1) {
			path := regexp.MustCompile(`\[\d*\]`).ReplaceAllString(m[1], "[]")
			path = strings.TrimSuffix(path, "[]")
			if ext := path[strings.LastIndex(path, ".")+1:]; ext == "jsonl" || ext == "tfstate" || ext == "json" || ext == "yaml" || ext == "tf" {
				continue // a file name, not a field
			}
			seen++
			if !known[path] {
				t.Errorf("%s names `%s`, which is no field of drover.yaml", filepath.Base(page), m[1])
			}
		}
	}
	if seen < 20 {
		t.Errorf("only %d field names found in the docs: the pattern lost them", seen)
	}
}
