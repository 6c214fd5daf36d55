package secrets

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/url"
	"sort"
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

// TestURLCredentialsInEveryForm: a webhook URL with a userinfo part is a
// secret as a whole, by its password, its userinfo, Go's redacted form
// (user:xxxxx@), and the token in its path.
func TestURLCredentialsInEveryForm(t *testing.T) {
	const hook = "https://bot:hunter2-pass@discord.example.invalid/api/webhooks/123456789012/TOKENabcdefghijklmnop"
	u, _ := url.Parse(hook)
	m := New(hook)
	for _, tc := range []struct{ name, in, leak string }{
		{"whole", "POST " + hook + ": 400", "TOKENabcdef"},
		{"redacted by Go", "Post \"" + u.Redacted() + "\": dial tcp", "TOKENabcdef"},
		{"password", "password hunter2-pass rejected", "hunter2-pass"},
		{"path in a body", `{"message": "Unknown Webhook", "path": "/api/webhooks/123456789012/TOKENabcdefghijklmnop"}`, "TOKENabcdef"},
		{"token alone", "token TOKENabcdefghijklmnop", "TOKENabcdef"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := m.Mask(tc.in); strings.Contains(got, tc.leak) {
				t.Fatalf("Mask(%q) = %q", tc.in, got)
			}
		})
	}
	// The words of the API's path are not secrets: "webhooks" stays.
	if got := m.Mask("see the webhooks page"); got != "see the webhooks page" {
		t.Errorf("a word of the path was masked: %q", got)
	}
}

// TestJSONEscapedFormsAreMasked: a secret with <, > or & reaches a JSON
// document as \u003c... unless masked before or by value.
func TestJSONEscapedFormsAreMasked(t *testing.T) {
	const v = "a<b>&c\"quoted\"-long"
	m := New(v)
	doc, _ := json.Marshal(map[string]string{"cluster": "prox " + v})
	if got := m.Mask(string(doc)); strings.Contains(got, `a\u003cb`) || strings.Contains(got, "quoted") {
		t.Errorf("Mask left the escaped form: %s", got)
	}
	got, err := m.MaskJSON(doc)
	if err != nil || bytes.Contains(got, []byte("quoted")) || !json.Valid(got) {
		t.Errorf("MaskJSON = %s, %v", got, err)
	}
}

// TestShortSecretsKeepStructure: a short value ("true", "drain") is
// masked where it stands alone, and MaskJSON keeps the document and its
// syntax: literals, numbers and keys' structure.
func TestShortSecretsKeepStructure(t *testing.T) {
	m := New("true", "drain")
	if !Short("true") || Short("long-enough") {
		t.Fatal("Short is wrong")
	}
	for _, tc := range []struct{ in, want string }{
		{"secret is true", "secret is ***"},
		{"construed", "construed"},
		{"step drain-wait", "step drain-wait"},
		{"value=drain", "value=***"},
	} {
		if got := m.Mask(tc.in); got != tc.want {
			t.Errorf("Mask(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	doc := []byte("{\n  \"passed\": true,\n  \"step\": \"drain\",\n  \"detail\": \"the key is true\",\n  \"n\": [1, 2.5, null, false],\n  \"note\": \"construed\"\n}\n")
	got, err := m.MaskJSON(doc)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatalf("MaskJSON broke the document: %v\n%s", err, got)
	}
	if back["passed"] != true || back["step"] != Mask || back["note"] != "construed" || back["detail"] != "the key is true" {
		t.Errorf("MaskJSON = %s", got)
	}
	if !bytes.HasPrefix(got, []byte("{\n  \"passed\"")) || !bytes.HasSuffix(got, []byte("}\n")) {
		t.Errorf("indentation lost: %q", got)
	}
}

// TestAddEnvNamesShortSecrets: AddEnv says which new values are too short
// to be masked everywhere, once.
func TestAddEnvNamesShortSecrets(t *testing.T) {
	env := map[string]string{"A": "true", "B": "a-long-secret-value", "C": "true"}
	m := New()
	if got := m.AddEnv(func(k string) string { return env[k] }, []string{"A", "B"}); len(got) != 1 || got[0] != "A" {
		t.Errorf("AddEnv = %v, want [A]", got)
	}
	if got := m.AddEnv(func(k string) string { return env[k] }, []string{"C"}); len(got) != 0 {
		t.Errorf("a known value warned again: %v", got)
	}
}

// FuzzMaskJSON: whatever the secrets, a valid JSON document stays valid,
// with the same shape, and no long secret survives in it.
func FuzzMaskJSON(f *testing.F) {
	f.Add("true", `{"passed": true, "step": "drain"}`)
	f.Add("a<b>&c-long-value", `{"cluster": "a<b>&c-long-value", "n": [1,2]}`)
	f.Add("\"},{", `["\"},{", {"k": "v"}]`)
	f.Add("12345678", `{"id": 12345678, "s": "12345678"}`)
	f.Fuzz(func(t *testing.T, secret, doc string) {
		if !json.Valid([]byte(doc)) {
			return
		}
		m := New(secret)
		got, err := m.MaskJSON([]byte(doc))
		if err != nil {
			t.Fatalf("MaskJSON(%q): %v", doc, err)
		}
		var before, after any
		_ = decodeNumbers([]byte(doc), &before)
		if err := decodeNumbers(got, &after); err != nil {
			t.Fatalf("MaskJSON broke %q into %q: %v", doc, got, err)
		}
		if shape(before) != shape(after) {
			t.Fatalf("shape changed: %q -> %q", doc, got)
		}
		s := strings.TrimSpace(secret)
		if len(s) >= SafeLen && !strings.Contains(Mask, s) && strings.Contains(stringsOf(after), s) {
			t.Fatalf("secret %q survived in %q", s, got)
		}
	})
}

// FuzzMask: a long secret never survives Mask, whatever surrounds it.
func FuzzMask(f *testing.F) {
	f.Add("canary-S3cr3t/+=value", "before ", " after")
	f.Add("https://u:p4ssword@h.invalid/api/webhooks/1/tok", "Post \"", "\"")
	f.Fuzz(func(t *testing.T, secret, pre, post string) {
		s := strings.TrimSpace(secret)
		if len(s) < SafeLen || strings.Contains(s, "\n") || strings.Contains(Mask, s) {
			return
		}
		got := New(secret).Mask(pre + s + post)
		// The secret may reappear only if the surroundings spell it again.
		if strings.Count(got, s) > strings.Count(pre+post, s) {
			t.Fatalf("Mask(%q) = %q", pre+s+post, got)
		}
	})
}

func decodeNumbers(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	return d.Decode(v)
}

// shape is a document's structure without its string values.
func shape(v any) string {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		b.WriteString("{")
		for _, k := range keys {
			b.WriteString(shape(x[k]) + ",")
		}
		return b.String() + "}"
	case []any:
		var b strings.Builder
		b.WriteString("[")
		for _, e := range x {
			b.WriteString(shape(e) + ",")
		}
		return b.String() + "]"
	case string:
		return "s"
	default:
		b, _ := json.Marshal(x)
		return string(b)
	}
}

// stringsOf joins every string (keys and values) in a document.
func stringsOf(v any) string {
	switch x := v.(type) {
	case map[string]any:
		var b strings.Builder
		for k, e := range x {
			b.WriteString(k + "\x00" + stringsOf(e) + "\x00")
		}
		return b.String()
	case []any:
		var b strings.Builder
		for _, e := range x {
			b.WriteString(stringsOf(e) + "\x00")
		}
		return b.String()
	case string:
		return x
	}
	return ""
}
