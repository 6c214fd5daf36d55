package config

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"reflect"
	"sort"
	"strings"
	"time"
)

// Field is one field of drover.yaml: its dotted path ([] for a list's
// items), its type, its default and its meaning.
type Field struct {
	Path, Type, Default, Doc string
}

// Fields lists every field of drover.yaml, in the order of the Go structs.
// docs are the doc comments of the package's struct fields, by
// "Type.Field" (FieldDocs reads them from the source).
func Fields(docs map[string]string) []Field {
	var out []Field
	walkFields(reflect.TypeOf(Config{}), reflect.ValueOf(Defaults()), "", docs, &out)
	return out
}

var durationType = reflect.TypeOf(Duration{})

func walkFields(t reflect.Type, def reflect.Value, prefix string, docs map[string]string, out *[]Field) {
	for i := range t.NumField() {
		sf := t.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		path := prefix + name
		ft := sf.Type
		var dv reflect.Value
		if def.IsValid() {
			dv = def.Field(i)
		}
		doc := docs[t.Name()+"."+sf.Name]
		if ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct {
			*out = append(*out, Field{Path: path, Type: "object", Doc: doc})
			walkFields(ft.Elem(), reflect.Value{}, path+".", docs, out)
			continue
		}
		switch {
		case ft == durationType:
		case ft.Kind() == reflect.Struct:
			if doc != "" {
				*out = append(*out, Field{Path: path, Type: "object", Doc: doc})
			}
			walkFields(ft, dv, path+".", docs, out)
			continue
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			*out = append(*out, Field{Path: path, Type: "list", Doc: doc})
			walkFields(ft.Elem(), reflect.Value{}, path+"[].", docs, out)
			continue
		}
		*out = append(*out, Field{Path: path, Type: typeName(ft), Default: defaultOf(dv), Doc: doc})
	}
}

func typeName(t reflect.Type) string {
	switch {
	case t == durationType:
		return "duration"
	case t.Kind() == reflect.Slice:
		return "list of " + typeName(t.Elem())
	case t.Kind() == reflect.Map:
		return "map of " + typeName(t.Elem())
	case t.Kind() == reflect.Int, t.Kind() == reflect.Int64:
		return "integer"
	case t.Kind() == reflect.Float32, t.Kind() == reflect.Float64:
		return "number"
	}
	return t.Kind().String()
}

func defaultOf(v reflect.Value) string {
	if !v.IsValid() || v.IsZero() {
		return ""
	}
	switch x := v.Interface().(type) {
	case Duration:
		return formatDuration(x.Duration)
	case []string:
		return "[" + strings.Join(x, ", ") + "]"
	}
	return fmt.Sprint(v.Interface())
}

// formatDuration writes 5m rather than 5m0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// FieldDocs reads the doc comments of the struct fields in the given Go
// sources (this package's), by "Type.Field", each on one line.
func FieldDocs(sources map[string][]byte) (map[string]string, error) {
	fset := token.NewFileSet()
	out := map[string]string{}
	names := make([]string, 0, len(sources))
	for n := range sources {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		f, err := parser.ParseFile(fset, n, sources[n], parser.ParseComments)
		if err != nil {
			return nil, err
		}
		ast.Inspect(f, func(node ast.Node) bool {
			ts, ok := node.(*ast.TypeSpec)
			if !ok {
				return true
			}
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				return true
			}
			for _, fl := range st.Fields.List {
				text := fl.Doc.Text()
				if text == "" {
					text = fl.Comment.Text()
				}
				for _, id := range fl.Names {
					out[ts.Name.Name+"."+id.Name] = strings.Join(strings.Fields(text), " ")
				}
			}
			return false
		})
	}
	return out, nil
}

// Reference is the field reference of docs/configuration.md: a Markdown
// table of every field.
func Reference(fields []Field) string {
	var b strings.Builder
	b.WriteString("| field | type | default | meaning |\n|---|---|---|---|\n")
	cell := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	for _, f := range fields {
		def := f.Default
		if def != "" {
			def = "`" + def + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", f.Path, f.Type, cell(def), cell(f.Doc))
	}
	return b.String()
}

// The markers around the reference in docs/configuration.md.
const (
	ReferenceBegin = "<!-- BEGIN field reference: go run ./hack/configdoc -->"
	ReferenceEnd   = "<!-- END field reference -->"
)

// ReplaceReference puts ref between the markers of page.
func ReplaceReference(page, ref string) (string, error) {
	i, j := strings.Index(page, ReferenceBegin), strings.Index(page, ReferenceEnd)
	if i < 0 || j < i {
		return "", fmt.Errorf("the page has no %q ... %q markers", ReferenceBegin, ReferenceEnd)
	}
	return page[:i+len(ReferenceBegin)] + "\n\n" + ref + "\n" + page[j:], nil
}
