package secrets

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"net/url"
	"strings"
	"testing"
)

const canary = "canary-S3cr3t/+=value"

func TestMaskForms(t *testing.T) {
	m := New(canary)
	tests := []struct{ name, in string }{
		{"raw", "password is " + canary + "."},
		{"base64", "auth: " + base64.StdEncoding.EncodeToString([]byte(canary))},
		{"base64 url", "x=" + base64.RawURLEncoding.EncodeToString([]byte(canary))},
		{"query escaped", "https://example.invalid/?p=" + url.QueryEscape(canary)},
		{"path escaped", "https://example.invalid/" + url.PathEscape(canary)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := m.Mask(tc.in)
			if strings.Contains(got, canary) || !strings.Contains(got, Mask) {
				t.Fatalf("Mask(%q) = %q", tc.in, got)
			}
			for _, v := range m.values {
				if strings.Contains(got, v) {
					t.Fatalf("form %q survived in %q", v, got)
				}
			}
		})
	}
}

func TestShortValuesAreNotMasked(t *testing.T) {
	m := New("ab", "")
	if got := m.Mask("abc ab"); got != "abc ab" {
		t.Fatalf("got %q", got)
	}
}

func TestMultiLineSecretMaskedLineByLine(t *testing.T) {
	key := "-----BEGIN KEY-----\nAAAABBBBCCCCDDDD\n-----END KEY-----"
	m := New(key)
	if got := m.Mask("leaked: AAAABBBBCCCCDDDD"); strings.Contains(got, "AAAABBBB") {
		t.Fatalf("a line of a multi-line secret survived: %q", got)
	}
}

func TestWriterMasksAcrossWrites(t *testing.T) {
	var out bytes.Buffer
	w := New(canary).NewWriter(&out, "[tf k8s-work-1] ")
	half := len(canary) / 2
	for _, chunk := range []string{"first line\nsecret=" + canary[:half], canary[half:] + " end\n", "tail " + canary} {
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if strings.HasSuffix(got, "\n") {
		t.Errorf("Flush added a newline to an unfinished line: %q", got)
	}
	if strings.Contains(got, canary[:half]+canary[half:]) || strings.Count(got, Mask) != 2 {
		t.Fatalf("output %q", got)
	}
	for _, line := range strings.Split(strings.TrimSpace(got), "\n") {
		if !strings.HasPrefix(line, "[tf k8s-work-1] ") {
			t.Fatalf("line without prefix: %q", line)
		}
	}
}

func TestFromEnv(t *testing.T) {
	env := map[string]string{"A": canary, "B": ""}
	m := FromEnv(func(k string) string { return env[k] }, []string{"A", "B", "C"})
	if m.Mask(canary) != Mask {
		t.Fatal("value from the environment not masked")
	}
}

// TestEveryBase64FormIsMasked uses a secret whose four base64 forms all
// differ (padded, with '+' and '/'), so dropping any one of them from the
// masker leaves that form in the output.
func TestEveryBase64FormIsMasked(t *testing.T) {
	const secret = "token>>>???x"                      // 12 bytes: no padding; see padded below
	for _, v := range []string{secret, secret + "y"} { // 13 bytes: "==" padding
		m := New(v)
		forms := map[string]string{
			"std":     base64.StdEncoding.EncodeToString([]byte(v)),
			"raw std": base64.RawStdEncoding.EncodeToString([]byte(v)),
			"url":     base64.URLEncoding.EncodeToString([]byte(v)),
			"raw url": base64.RawURLEncoding.EncodeToString([]byte(v)),
		}
		if !strings.ContainsAny(forms["std"], "+/") {
			t.Fatalf("test secret %q: its base64 %q has no '+' or '/'", v, forms["std"])
		}
		for name, f := range forms {
			line := "Authorization: Basic " + f + " end"
			if got := m.Mask(line); got != "Authorization: Basic "+Mask+" end" {
				t.Errorf("%q, %s form %q: masked to %q", v, name, f, got)
			}
		}
	}
}

// TestTheShortestMaskedValue: a value of minLen characters is masked, one
// shorter is not.
func TestTheShortestMaskedValue(t *testing.T) {
	m := New("abcd", "xyz")
	if got := m.Mask("abcd xyz"); got != Mask+" xyz" {
		t.Fatalf("got %q", got)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

// TestWriterKeepsEmptyLinesAndReportsErrors: an empty line is written as
// it came; a writer that fails makes Write fail.
func TestWriterKeepsEmptyLinesAndReportsErrors(t *testing.T) {
	var b bytes.Buffer
	w := New(canary).NewWriter(&b, "> ")
	if _, err := w.Write([]byte("\n" + canary + "\n\n")); err != nil {
		t.Fatal(err)
	}
	if got := b.String(); got != "> \n> "+Mask+"\n> \n" {
		t.Fatalf("got %q", got)
	}
	if _, err := New(canary).NewWriter(failingWriter{}, "").Write([]byte("x\n")); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("err = %v", err)
	}
}
