// Package mdtexttest checks that text put into Markdown stayed text.
package mdtexttest

import (
	"fmt"
	"regexp"
	"strings"
)

// Skeleton is a Markdown document's structure without its words: for
// each line outside block quotes, what starts it (a heading, a table row,
// a list item, a code fence), how many table cells it has, how many raw
// HTML tags could open in it, and, inside a code fence, how many ':' it
// has (Mermaid's separator). Two renderings of one report, one with
// hostile values, must have the same skeleton.
func Skeleton(doc string) []string {
	var out []string
	fenced := false
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, "> ") || line == ">" {
			continue // a quote's lines may be many; each is escaped
		}
		kind := "text"
		switch {
		case strings.HasPrefix(line, "```"):
			kind, fenced = "fence", !fenced
		case fenced:
			kind = "code"
		case strings.HasPrefix(line, "#"):
			kind = "heading " + strings.SplitN(line, " ", 2)[0]
		case strings.HasPrefix(line, "|"):
			kind = "row"
		case strings.HasPrefix(line, "- "), strings.HasPrefix(line, "* "), strings.HasPrefix(line, "+ "):
			kind = "item"
		case orderedRE.MatchString(line):
			kind = "ordered item"
		case underlineRE.MatchString(line):
			kind = "setext underline"
		case strings.HasPrefix(line, "    "), strings.HasPrefix(line, "\t"):
			kind = "indented code"
		case strings.TrimSpace(line) == "":
			kind = "blank"
		}
		colons := 0
		if fenced && kind == "code" {
			colons = strings.Count(line, ":")
		}
		out = append(out, fmt.Sprintf("%s cells=%d tags=%d colons=%d", kind, pipes(line), strings.Count(line, "<"), colons))
	}
	return out
}

var (
	orderedRE   = regexp.MustCompile(`^ {0,3}[0-9]+[.)]( |$)`)
	underlineRE = regexp.MustCompile(`^ {0,3}(=+|-+) *$`)
)

// pipes counts the '|' not escaped by a backslash.
func pipes(line string) int {
	n, bs := 0, 0
	for _, r := range line {
		switch {
		case r == '\\':
			bs++
			continue
		case r == '|' && bs%2 == 0:
			n++
		}
		bs = 0
	}
	return n
}

// Diff says where two skeletons differ, or "".
func Diff(want, got []string) string {
	if len(want) != len(got) {
		return fmt.Sprintf("%d lines, want %d", len(got), len(want))
	}
	for i := range want {
		if want[i] != got[i] {
			return fmt.Sprintf("line %d: %s, want %s", i+1, got[i], want[i])
		}
	}
	return ""
}
