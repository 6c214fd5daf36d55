// Package secrets masks secret values wherever text leaves drover. Secrets
// come only from environment variables; a Masker knows their values and
// the encoded forms they may appear in (base64, URL-encoded).
package secrets

import (
	"bytes"
	"encoding/base64"
	"io"
	"net/url"
	"sort"
	"strings"
	"sync"
)

// Mask is what a secret is replaced with.
const Mask = "***"

// minLen: shorter values are not masked; hiding every "1" or "ok" in the
// output would hide everything else too.
const minLen = 4

// Masker replaces secret values in text. It is safe for concurrent use,
// and values can be added as they become known (after the configuration
// names more secret variables).
type Masker struct {
	mu     sync.RWMutex
	values []string // longest first, so a value inside another is not half-masked
	seen   map[string]bool
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

// AddEnv adds the values of the named environment variables.
func (m *Masker) AddEnv(getenv func(string) string, names []string) {
	for _, n := range names {
		if v := getenv(n); v != "" {
			m.Add(v)
		}
	}
}

// Add adds secret values (and their encoded forms).
func (m *Masker) Add(values ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	add := func(s string) {
		if len(s) >= minLen && !m.seen[s] {
			m.seen[s] = true
			m.values = append(m.values, s)
		}
	}
	for _, v := range values {
		for _, line := range append([]string{v}, strings.Split(v, "\n")...) {
			line = strings.TrimSpace(line)
			add(line)
			add(base64.StdEncoding.EncodeToString([]byte(line)))
			add(base64.RawStdEncoding.EncodeToString([]byte(line)))
			add(base64.URLEncoding.EncodeToString([]byte(line)))
			add(base64.RawURLEncoding.EncodeToString([]byte(line)))
			add(url.QueryEscape(line))
			add(url.PathEscape(line))
		}
	}
	sort.Slice(m.values, func(i, j int) bool { return len(m.values[i]) > len(m.values[j]) })
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

// Mask replaces every secret in s.
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
	return s
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
