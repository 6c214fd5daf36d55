package run

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"

	"github.com/prox-ops/drover/internal/journal"
	"github.com/prox-ops/drover/internal/rollout"
)

// readResume reads the journal of the run to continue and checks it is
// this cluster's.
func (p *Planned) readResume(ctx context.Context) error {
	ri := p.in.Resume
	var entries []rollout.Entry
	var err error
	if ri.read != nil {
		entries, err = ri.read(ctx)
	} else {
		path := ri.Journal
		if path == "" {
			path = p.Site.Defaults().Journal
		}
		if path == "" {
			return Usage(errors.New("--resume needs --journal: the journal of the run to continue"))
		}
		p.ResumeJournal = path
		entries, err = p.journalEntries(ctx, path)
	}
	if err != nil {
		return err
	}
	st, err := rollout.ReadResume(rollout.LastRun(entries))
	if err != nil {
		return Usage(err)
	}
	// The journal is written masked: compare what it could hold.
	if want := p.env.mask(p.Config.Cluster.Name); st.Header.Cluster != want {
		return Usage(&rollout.JournalError{Why: fmt.Sprintf("the journal is for cluster %s, this configuration is %s", st.Header.Cluster, want)})
	}
	for _, n := range ri.RetryNodes {
		ns, ok := st.Nodes[n]
		if !ok || !ns.Halted {
			return Usage(fmt.Errorf("--retry-node %s: the journal has no halted node of that name", n))
		}
		delete(st.Nodes, n)
	}
	// A halted node stops the run until it is retried: a resume that went
	// on with the other nodes would change them under a failure no one
	// has looked at.
	var halted, retry []string
	for _, n := range slices.Sorted(maps.Keys(st.Nodes)) {
		if ns := st.Nodes[n]; ns.Halted {
			halted = append(halted, fmt.Sprintf("%s (%s)", n, ns.Reason))
			retry = append(retry, "--retry-node "+n)
		}
	}
	if len(halted) > 0 {
		return Usage(fmt.Errorf("the run halted at %s: a resume changes nothing until the halted node is tried again; "+
			"look at it, then resume with %s", strings.Join(halted, ", "), strings.Join(retry, " ")))
	}
	p.Resume = st
	return nil
}

// configMapJournal is the journal in a ConfigMap that path names
// (configmap[:[NS/]NAME]), or nil when path names a file.
func (p *Planned) configMapJournal(path string) (*journal.ConfigMap, error) {
	ns, name, ok, err := journal.ParseConfigMapRef(path, p.lockNamespace())
	switch {
	case !ok:
		return nil, nil
	case err != nil:
		return nil, Usage(err)
	case p.Site.Client() == nil:
		return nil, Usage(fmt.Errorf("--journal %s needs cluster access", path))
	}
	return &journal.ConfigMap{Client: p.Site.Client(), Namespace: ns, Name: name, Mask: p.env.mask, KeepRuns: p.Config.Journal.KeepRuns}, nil
}

// journalEntries reads the journal at path (a file or a ConfigMap).
func (p *Planned) journalEntries(ctx context.Context, path string) ([]rollout.Entry, error) {
	cm, err := p.configMapJournal(path)
	if err != nil {
		return nil, err
	}
	if cm != nil {
		entries, err := cm.Entries(ctx)
		if err != nil {
			return nil, Usage(&rollout.JournalError{Why: err.Error()})
		}
		return entries, nil
	}
	log, err := journal.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, Usage(fmt.Errorf("--resume: %w", err))
	}
	if err != nil {
		return nil, Usage(&rollout.JournalError{Why: err.Error()})
	}
	for _, w := range log.Warnings {
		p.env.warn("%s", w)
	}
	return log.Entries, nil
}

// openJournal opens the run's journal: a ConfigMap, a file, or memory;
// the site may wrap it (the lab keeps its state with it).
func (u *Upgrade) openJournal() (rollout.Journal, func(), error) {
	p, o := u.planned, u.opts
	none := func() {}
	path := o.Journal
	if p.ResumeJournal != "" {
		path = p.ResumeJournal
	}
	if path == "" {
		path = p.Site.Defaults().Journal
	}
	if path == "" && o.NeedsJournal {
		return nil, none, Usage(errors.New("--lab-state and --lab-crash-at need --journal, to resume from"))
	}
	mem := &journal.Memory{}
	var j rollout.Journal = mem
	u.readBack = func(context.Context) ([]rollout.Entry, error) { return mem.Entries(), nil }
	closeJ := none
	cm, err := p.configMapJournal(path)
	switch {
	case err != nil:
		return nil, none, err
	case cm != nil:
		j = cm
		u.readBack = func(ctx context.Context) ([]rollout.Entry, error) { return cm.Entries(ctx) }
	case path != "":
		fj, err := journal.OpenFile(path)
		if err != nil {
			return nil, none, Usage(err)
		}
		for _, w := range fj.Warnings {
			p.env.warn("%s", w)
		}
		fj.Mask = p.env.mask
		j, closeJ = fj, func() { _ = fj.Close() }
		u.readBack = func(ctx context.Context) ([]rollout.Entry, error) { return p.journalEntries(ctx, path) }
	}
	return p.Site.Journal(j, p), closeJ, nil
}
