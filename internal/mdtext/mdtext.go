// Package mdtext keeps text from the cluster and the configuration (node
// names, check names, error messages) inert where drover writes Markdown:
// the report, the step summary, the Mermaid chart. A value can neither end
// its line, its table cell or its code span, nor start a heading, a list,
// a link, an HTML tag or a code fence.
package mdtext

import (
	"regexp"
	"strings"
	"unicode"
)

// breaks are the characters that end a line somewhere: CommonMark's CR
// and LF, and Unicode's line and paragraph separators.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\n' || r == '\r' || r == '\v' || r == '\f' || r == '\u0085' || r == '\u2028' || r == '\u2029' || r == '\t':
			return ' '
		case unicode.IsControl(r):
			return -1
		}
		return r
	}, s)
}

// inline escapes Markdown's ASCII punctuation that starts or ends
// something (a backslash escape works for each in GitHub Markdown) and
// HTML's <, > and & as entities.
var inline = strings.NewReplacer(
	`\`, `\\`, "`", "\\`", "*", `\*`, "_", `\_`, "[", `\[`, "]", `\]`, "|", `\|`,
	"#", `\#`, "~", `\~`, "!", `\!`, "$", `\$`,
	"<", "&lt;", ">", "&gt;", "&", "&amp;",
)

// leadingRE finds what starts a block when a value starts a line: a
// list item (-, +, 1. or 1)), a setext underline (=).
var leadingRE = regexp.MustCompile(`^([-+=]|[0-9]+[.)])`)

// Text is a value on one line of Markdown: a table cell, a list item, a
// quote, a sentence, or the start of a line (its leading spaces, which
// would make a code block, are dropped).
func Text(s string) string {
	s = inline.Replace(strings.TrimSpace(oneLine(s)))
	if m := leadingRE.FindString(s); m != "" {
		s = m[:len(m)-1] + `\` + s[len(m)-1:]
	}
	return s
}

// Cell is a value in a table cell: as Text, but a cell never starts a
// line, so a leading "-" or "1." stays as it is ("-" is how a report
// says "none").
func Cell(s string) string {
	return inline.Replace(strings.TrimSpace(oneLine(s)))
}

// Mermaid is a name on one line of a Mermaid chart inside a ```mermaid
// block: letters, digits, spaces and a few marks only. ':' ends a task
// name, '#' and ';' and "%%" start comments or entities, a backtick could
// close the fence.
func Mermaid(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == ' ' || r == '-' || r == '.' || r == '_' || r == '/' || r == '(' || r == ')' || r == '+':
			return r
		}
		return ' '
	}, oneLine(s))
	if s = strings.TrimSpace(s); s == "" {
		return "-" // an empty task name is a syntax error
	}
	return s
}

// Quote is a block quote of a value that may span lines (an error): each
// line is quoted and escaped, so none can leave the quote.
func Quote(s string) string {
	lines := strings.FieldsFunc(s, func(r rune) bool {
		return r == '\n' || r == '\r' || r == '\v' || r == '\f' || r == '\u0085' || r == '\u2028' || r == '\u2029'
	})
	var b strings.Builder
	for _, l := range lines {
		b.WriteString("> " + Text(l) + "\n")
	}
	return b.String()
}
