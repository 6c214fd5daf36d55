// Package journal records every state transition of a run, before the
// engine acts on it, as JSON lines.
package journal

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/prox-ops/drover/internal/rollout"
)

// File appends entries to a JSON-lines file and syncs each one to disk, so
// a crash loses nothing that was recorded.
type File struct {
	mu   sync.Mutex
	f    *os.File
	path string
	// Mask, when set, masks secrets in each entry's detail.
	Mask func(string) string
}

var _ rollout.Journal = (*File)(nil)

// OpenFile opens (creating or appending to) the journal at path.
func OpenFile(path string) (*File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	return &File{f: f, path: path}, nil
}

// Record appends one entry.
func (j *File) Record(_ context.Context, e rollout.Entry) error {
	if j.Mask != nil {
		e.Detail = j.Mask(e.Detail)
	}
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if j.Mask != nil {
		// Any other field (the run header names the cluster) too.
		line = []byte(j.Mask(string(line)))
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, err := j.f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("write journal %s: %w", j.path, err)
	}
	return j.f.Sync()
}

// Close closes the file.
func (j *File) Close() error { return j.f.Close() }

// Memory keeps entries in memory (the lab's default and tests).
type Memory struct {
	mu      sync.Mutex
	entries []rollout.Entry
}

var _ rollout.Journal = (*Memory)(nil)

// Record appends one entry.
func (m *Memory) Record(_ context.Context, e rollout.Entry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.entries = append(m.entries, e)
	return nil
}

// Entries returns a copy of the entries.
func (m *Memory) Entries() []rollout.Entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]rollout.Entry(nil), m.entries...)
}

// Read parses a JSON-lines journal. A line that is not an entry is an error
// that names the line: a journal is never guessed at.
func Read(r io.Reader) ([]rollout.Entry, error) {
	var out []rollout.Entry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for line := 1; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var e rollout.Entry
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			return nil, fmt.Errorf("journal line %d: %w", line, err)
		}
		if e.RunID == "" || e.Step == "" || e.Status == "" {
			return nil, fmt.Errorf("journal line %d: not a drover journal entry (run, step and status are required)", line)
		}
		out = append(out, e)
	}
	return out, sc.Err()
}
