// Package journal records every state transition of a run, before the
// engine acts on it, as JSON lines chained by hashes.
package journal

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/prox-ops/drover/internal/config"
	"github.com/prox-ops/drover/internal/rollout"
)

// maxLine bounds one journal line.
const maxLine = 1 << 20

// File appends entries to a JSON-lines file and syncs each one to disk, so
// a crash loses nothing that was recorded.
type File struct {
	mu    sync.Mutex
	f     *os.File
	path  string
	chain *chain
	// Mask, when set, masks secrets in each entry.
	Mask func(string) string
	// Warnings say what OpenFile had to mend (a torn last line).
	Warnings []string
}

var _ rollout.Journal = (*File)(nil)

// OpenFile opens (creating or appending to) the journal at path. A last
// line torn by a crash mid-write is cut off, with a warning, so the next
// entry starts on a line of its own.
func OpenFile(path string) (*File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("read journal %s: %w", path, err)
	}
	j := &File{f: f, path: path, chain: newChain()}
	if n := len(data); n > 0 && data[n-1] != '\n' {
		keep := bytes.LastIndexByte(data, '\n') + 1
		if err := f.Truncate(int64(keep)); err != nil {
			f.Close()
			return nil, fmt.Errorf("mend journal %s: %w", path, err)
		}
		j.Warnings = append(j.Warnings, fmt.Sprintf("journal %s: its last line was incomplete (a crash while writing it) and was dropped", path))
		data = data[:keep]
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return nil, err
	}
	j.chain.seed(data)
	return j, nil
}

// Record appends one entry, masked and chained to the run's line before it.
func (j *File) Record(_ context.Context, e rollout.Entry) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	line, err := encode(&e, j.chain, j.Mask)
	if err != nil {
		return err
	}
	if _, err := j.f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("write journal %s: %w", j.path, err)
	}
	j.chain.add(e.RunID, line)
	return j.f.Sync()
}

// encode seals e into the chain and renders its line, masked.
func encode(e *rollout.Entry, c *chain, mask func(string) string) ([]byte, error) {
	if mask != nil {
		// The text fields only, before they are encoded (a secret in them
		// may be JSON-escaped after), and never the run, node, step or
		// status a resume reads back: a masked step name would be a
		// journal no run can resume.
		e.Detail = mask(e.Detail)
		if e.Header != nil {
			h := *e.Header
			h.Cluster = mask(h.Cluster)
			e.Header = &h
		}
	}
	c.seal(e)
	return json.Marshal(e)
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

// MaxSize bounds a journal file: a run writes a few hundred kilobytes.
const MaxSize = 64 << 20

// TooLargeError is a journal over MaxSize: it is refused, never cut (the
// cut would hide its last run).
type TooLargeError struct{ Size int64 }

func (e *TooLargeError) Error() string {
	size := "more than 64 MiB"
	if e.Size > 0 {
		size = fmt.Sprintf("%d MiB", e.Size>>20)
	}
	return fmt.Sprintf("the journal is %s, over the %d MiB drover reads: it is not a run's journal, or one kept too long (start a new file; keep the old one for the record)", size, MaxSize>>20)
}

// ReadFile reads the journal file at path: a regular file only (a FIFO or
// a device is refused before it is opened), at most MaxSize.
func ReadFile(path string) (Log, error) {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return Log{}, err
	case !fi.Mode().IsRegular():
		return Log{}, fmt.Errorf("%s: not a regular file (%s); a journal is a file drover wrote", path, config.DescribeMode(fi.Mode()))
	case fi.Size() > MaxSize:
		return Log{}, &TooLargeError{Size: fi.Size()}
	}
	f, err := os.Open(path)
	if err != nil {
		return Log{}, err
	}
	defer f.Close()
	return Read(f)
}

// Log is a journal read back.
type Log struct {
	Entries []rollout.Entry
	// Warnings say what was dropped: a torn last line.
	Warnings []string
}

// Read parses a JSON-lines journal and checks its chain. A line that is not
// an entry, or that breaks the chain, is an error that names the line: a
// journal is never guessed at. Only a last line without its newline that
// does not parse (a crash mid-write) is dropped, with a warning.
func Read(r io.Reader) (Log, error) {
	var out Log
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return out, err
	}
	if len(data) > MaxSize {
		return out, &TooLargeError{}
	}
	lines := bytes.Split(data, []byte("\n"))
	torn := len(data) > 0 && data[len(data)-1] != '\n'
	c := newChain()
	for i, line := range lines {
		n := i + 1
		if len(line) == 0 {
			continue
		}
		if len(line) > maxLine {
			return out, fmt.Errorf("journal line %d: longer than %d bytes; not a drover journal", n, maxLine)
		}
		e, err := decodeLine(line)
		if err != nil && torn && i == len(lines)-1 {
			out.Warnings = append(out.Warnings, fmt.Sprintf("journal line %d is incomplete (a crash while writing it): dropped", n))
			break
		}
		if err != nil {
			return out, fmt.Errorf("journal line %d: %w", n, err)
		}
		if err := c.verify(n, e, line); err != nil {
			return out, err
		}
		out.Entries = append(out.Entries, e)
	}
	return out, nil
}

func decodeLine(line []byte) (rollout.Entry, error) {
	var e rollout.Entry
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return e, err
	}
	if dec.More() {
		return e, fmt.Errorf("more than one JSON value on the line")
	}
	if e.RunID == "" || e.Step == "" || e.Status == "" {
		return e, fmt.Errorf("not a drover journal entry (run, step and status are required)")
	}
	return e, nil
}
