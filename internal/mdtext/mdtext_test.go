package mdtext

import "testing"

func TestText(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"k8s-work-1", "k8s-work-1"},
		{"Ceph OK\r\r## done", "Ceph OK  \\#\\# done"},
		{"a|b", "a\\|b"},
		{"<script>&", "&lt;script&gt;&amp;"},
		{"`x` *y* _z_ [l](u)", "\\`x\\` \\*y\\* \\_z\\_ \\[l\\](u)"},
		{"- item", "\\- item"},
		{"+", "\\+"},
		{"12. twelve", "12\\. twelve"},
		{"===", "\\==="},
		{"    code", "code"},
		{"a\u2028b\x00c", "a bc"},
	} {
		if got := Text(tc.in); got != tc.want {
			t.Errorf("Text(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestMermaidAndQuote(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"drain", "drain"},
		{"a:b#c;d%%e`f", "a b c d  e f"},
		{"```\n## x", "x"},
		{":::", "-"},
	} {
		if got := Mermaid(tc.in); got != tc.want {
			t.Errorf("Mermaid(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got, want := Quote("one\r## two\n"), "> one\n> \\#\\# two\n"; got != want {
		t.Errorf("Quote = %q, want %q", got, want)
	}
}

func TestCell(t *testing.T) {
	for in, want := range map[string]string{
		"-":            "-",
		"1. first":     "1. first",
		"a | b":        `a \| b`,
		"line\nbreak":  "line break",
		"<b>bold</b>":  "&lt;b&gt;bold&lt;/b&gt;",
		"*not* `code`": "\\*not\\* \\`code\\`",
	} {
		if got := Cell(in); got != want {
			t.Errorf("Cell(%q) = %q, want %q", in, got, want)
		}
	}
}
