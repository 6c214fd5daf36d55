// Package secrets masks secret values wherever text leaves drover. Secrets
// come only from environment variables; a Masker knows their values and
// the encoded forms they may appear in (base64, URL-encoded).
package secrets

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"html"
	"io"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/prox-ops/drover/internal/mdtext"
)

// Mask is what a secret is replaced with.
const Mask = "***"

// minLen: shorter values are not masked; hiding every "1" or "ok" in the
// output would hide everything else too. SafeLen: shorter values ("true",
// "admin") are masked only where they stand alone (a whole word, a whole
// JSON string), never inside other text, whose structure they would break.
const (
	minLen  = 4
	SafeLen = 8
)

// Masker replaces secret values in text. It is safe for concurrent use,
// and values can be added as they become known (after the configuration
// names more secret variables).
type Masker struct {
	mu     sync.RWMutex
	values []string // longest first, so a value inside another is not half-masked
	// short are values under SafeLen, masked only as whole words.
	short []*regexp.Regexp
	seen  map[string]bool
}

// FromEnv builds a Masker from the values of the named variables.
func FromEnv(getenv func(string) string, names []string) *Masker {
	m := New()
	m.AddEnv(getenv, names)
	return m
}

// New builds a Masker for the given values and their encoded forms.
func New(values ...string) *Masker {
	m := &Masker{seen: map[string]bool{}}
	m.Add(values...)
	return m
}

// AddEnv adds the values of the named environment variables. It returns
// the names whose values are new and too short to mask everywhere (see
// Short), for a warning.
func (m *Masker) AddEnv(getenv func(string) string, names []string) (short []string) {
	for _, n := range names {
		v := getenv(n)
		if v == "" {
			continue
		}
		m.mu.RLock()
		known := m.seen[strings.TrimSpace(v)]
		m.mu.RUnlock()
		if !known && Short(v) {
			short = append(short, n)
		}
		m.Add(v)
	}
	return short
}

// Add adds secret values (and the forms they take in output: encoded,
// JSON-escaped, and for a URL its credentials, its redacted form and the
// tokens of its path).
func (m *Masker) Add(values ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	add := func(s string) {
		switch {
		case len(s) < minLen || m.seen[s]:
		case len(s) < SafeLen:
			m.seen[s] = true
			re, err := regexp.Compile(`(^|[^A-Za-z0-9_.-])` + regexp.QuoteMeta(s) + `($|[^A-Za-z0-9_.-])`)
			if err != nil { // not UTF-8: no words to speak of, mask it everywhere
				m.values = append(m.values, s)
				break
			}
			m.short = append(m.short, re)
		default:
			m.seen[s] = true
			m.values = append(m.values, s)
		}
	}
	for _, v := range values {
		for _, line := range append([]string{v}, strings.Split(v, "\n")...) {
			line = strings.TrimSpace(line)
			for _, f := range forms(line) {
				add(f)
			}
		}
	}
	sort.Slice(m.values, func(i, j int) bool { return len(m.values[i]) > len(m.values[j]) })
}

// forms are the ways a secret appears in output.
func forms(v string) []string {
	out := []string{v,
		base64.StdEncoding.EncodeToString([]byte(v)), base64.RawStdEncoding.EncodeToString([]byte(v)),
		base64.URLEncoding.EncodeToString([]byte(v)), base64.RawURLEncoding.EncodeToString([]byte(v)),
		url.QueryEscape(v), url.PathEscape(v),
	}
	// JSON's escapes: "<" as \u003c, a quote as \", a backslash doubled.
	if b, err := json.Marshal(v); err == nil {
		out = append(out, strings.Trim(string(b), `"`))
	}
	var nb strings.Builder
	enc := json.NewEncoder(&nb)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) == nil {
		out = append(out, strings.Trim(strings.TrimSpace(nb.String()), `"`))
	}
	// Markdown and HTML escape a value before it is masked: their forms.
	out = append(out, mdtext.Text(v), html.EscapeString(v))
	// A URL: its password, its userinfo, its redacted form (Go prints
	// user:xxxxx@host), and every token-like segment of its path (a
	// webhook's token). Its host is no secret and stays readable.
	if u, err := url.Parse(v); err == nil && u.Host != "" && (u.Scheme == "http" || u.Scheme == "https") {
		if pw, ok := u.User.Password(); ok {
			out = append(out, pw, u.User.String())
		}
		if u.User != nil {
			out = append(out, u.Redacted())
		}
		for _, seg := range strings.Split(u.Path, "/") {
			if tokenLike(seg) {
				out = append(out, seg)
			}
		}
	}
	return out
}

// tokenLike: a path segment that may be a token (long, or with a digit),
// not a word of the API's path such as "webhooks".
func tokenLike(seg string) bool {
	return len(seg) >= 16 || len(seg) >= SafeLen && strings.ContainsAny(seg, "0123456789")
}

// Short says whether a value is too short to mask everywhere: it is
// masked only where it stands alone.
func Short(v string) bool {
	v = strings.TrimSpace(v)
	return len(v) >= minLen && len(v) < SafeLen
}

// Values returns every form to mask, longest first (for ::add-mask::).
func (m *Masker) Values() []string {
	if m == nil {
		return nil
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return append([]string(nil), m.values...)
}

// Mask replaces every secret in s: the long ones wherever they are, the
// short ones where they stand alone as a word.
func (m *Masker) Mask(s string) string {
	if m == nil {
		return s
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, v := range m.values {
		if strings.Contains(s, v) {
			s = strings.ReplaceAll(s, v, Mask)
		}
	}
	for _, re := range m.short {
		s = re.ReplaceAllString(s, "${1}"+Mask+"${2}")
	}
	return s
}

// maskValue masks a JSON string value: the long secrets inside it, and a
// short one when it is the whole value.
func (m *Masker) maskValue(s string) string {
	m.mu.RLock()
	for _, v := range m.values {
		if strings.Contains(s, v) {
			s = strings.ReplaceAll(s, v, Mask)
		}
	}
	short := m.short
	m.mu.RUnlock()
	for _, re := range short {
		if loc := re.FindStringIndex(s); loc != nil && loc[0] == 0 && loc[1] == len(s) {
			return Mask
		}
	}
	return s
}

// MaskJSON masks the string values (and keys) of a JSON document and
// nothing else, so it stays the same document: a secret cannot turn
// "passed": true into invalid JSON, nor an entry's step into another.
// Numbers and literals are syntax and stay. Indented input stays indented.
func (m *Masker) MaskJSON(data []byte) ([]byte, error) {
	if m == nil {
		return data, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var out bytes.Buffer
	// What each open container expects next: a key (object) or a value.
	type frame struct {
		object, key bool
		n           int
	}
	var stack []frame
	// done: a key or a value was written in the innermost container.
	done := func() {
		if len(stack) == 0 {
			return
		}
		top := &stack[len(stack)-1]
		if !top.object {
			top.n++
			return
		}
		if !top.key {
			top.n++
		}
		top.key = !top.key
	}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			out.WriteByte(byte(d))
			done()
			continue
		}
		if len(stack) > 0 {
			top := &stack[len(stack)-1]
			switch {
			case top.object && top.key && top.n > 0:
				out.WriteByte(',')
			case top.object && !top.key:
				out.WriteByte(':')
			case !top.object && top.n > 0:
				out.WriteByte(',')
			}
		}
		switch v := tok.(type) {
		case json.Delim:
			out.WriteByte(byte(v))
			stack = append(stack, frame{object: v == '{', key: true})
			continue
		case string:
			b, _ := json.Marshal(m.maskValue(v))
			out.Write(b)
		case json.Number:
			// Syntax, not text: numbers and literals stay as they are.
			out.WriteString(v.String())
		case bool:
			out.WriteString(strconv.FormatBool(v))
		case nil:
			out.WriteString("null")
		}
		done()
	}
	if bytes.Contains(data, []byte("\n  ")) {
		var ind bytes.Buffer
		if err := json.Indent(&ind, out.Bytes(), "", "  "); err == nil {
			if bytes.HasSuffix(data, []byte("\n")) {
				ind.WriteByte('\n')
			}
			return ind.Bytes(), nil
		}
	}
	if bytes.HasSuffix(data, []byte("\n")) {
		out.WriteByte('\n')
	}
	return out.Bytes(), nil
}

// Writer masks what is written to w, a line at a time so a secret split
// across two writes is still caught. Flush writes a last unfinished line.
type Writer struct {
	mu     sync.Mutex
	m      *Masker
	w      io.Writer
	prefix string
	buf    bytes.Buffer
}

// NewWriter masks lines written to w and starts each with prefix.
func (m *Masker) NewWriter(w io.Writer, prefix string) *Writer {
	return &Writer{m: m, w: w, prefix: prefix}
}

// Write buffers p and writes every complete line, masked.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		i := bytes.IndexByte(w.buf.Bytes(), '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(w.buf.Next(i + 1))
		if _, err := io.WriteString(w.w, w.prefix+w.m.Mask(line)); err != nil {
			return len(p), err
		}
	}
}

// Flush writes what is left of an unfinished line (a prompt, say).
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buf.Len() == 0 {
		return nil
	}
	line := w.buf.String()
	w.buf.Reset()
	_, err := io.WriteString(w.w, w.prefix+w.m.Mask(line))
	return err
}
