package run

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/prox-ops/drover/internal/journal"
)

// runFile is a file a run reads or writes, and the flag that names it.
type runFile struct {
	flag, path string
	output     bool
}

// checkFiles checks, before anything is changed, that every file the run
// writes can be written, and that no two of its files are one: a report
// written over the journal would leave a run that cannot resume, over the
// configuration a cluster description lost. Bad paths are usage errors.
func (u *Upgrade) checkFiles() error {
	p := u.planned
	defaults := p.Site.Defaults()
	files := []runFile{{flag: "--config", path: p.in.ConfigPath}}
	j := u.opts.Journal
	if j == "" {
		j = defaults.Journal
	}
	if _, _, isCM, _ := journal.ParseConfigMapRef(j, p.lockNamespace()); !isCM {
		files = append(files, runFile{flag: "--journal", path: j, output: true})
	}
	r := u.opts.Report
	if r == "" {
		r = defaults.Report
	}
	files = append(files, runFile{flag: "--report", path: r, output: true})
	if ls, ok := p.Site.(*labSite); ok {
		files = append(files, runFile{flag: "--lab-state", path: ls.spec.StatePath, output: true})
	}
	for i, a := range files {
		if a.path == "" {
			continue
		}
		for _, b := range files[i+1:] {
			if b.path != "" && sameFile(a.path, b.path) {
				return Usage(fmt.Errorf("%s and %s both name %s: each file of a run must be its own", a.flag, b.flag, a.path))
			}
		}
		if a.output {
			if err := writable(a.path); err != nil {
				return Usage(fmt.Errorf("%s %s: %w", a.flag, a.path, err))
			}
		}
	}
	return nil
}

// sameFile reports whether two paths name one file (or would).
func sameFile(a, b string) bool {
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	if errA == nil && errB == nil {
		return os.SameFile(fa, fb)
	}
	absA, _ := filepath.Abs(a)
	absB, _ := filepath.Abs(b)
	return absA == absB
}

// writable checks that path can be written without writing it: an
// existing regular file opens for writing (not truncated), a new one's
// directory takes a file.
func writable(path string) error {
	fi, err := os.Stat(path)
	switch {
	case err == nil && !fi.Mode().IsRegular():
		return fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	case err == nil:
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("cannot be written: %w", unwrapPath(err))
		}
		return f.Close()
	case !os.IsNotExist(err):
		return err
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".drover-probe-*")
	if err != nil {
		return fmt.Errorf("cannot be created in %s: %w", dir, unwrapPath(err))
	}
	name := f.Name()
	_ = f.Close()
	return os.Remove(name)
}

// unwrapPath drops an os.PathError's repetition of the path.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
