package journal

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/prox-ops/drover/internal/rollout"
)

// ConfigMapKey held the whole journal in one ConfigMap (drover before the
// chunked journal); such a ConfigMap is still read, never written.
const ConfigMapKey = "journal.jsonl"

// The chunked journal keeps each run in chunk ConfigMaps of its own, one
// data key per entry. An entry is appended with a merge patch that sends
// that entry only, on the condition that the chunk did not change since
// it was read; a full chunk is never written again. etcd keeps every
// revision of an object until it compacts, so a chunk is kept small: what
// one entry costs etcd is bounded by the chunk, never by the journal.
const (
	// ChunkBytes bounds a chunk's entries.
	ChunkBytes = 16 << 10
	// chunkEntries bounds a chunk's keys.
	chunkEntries = 64
	// MaxEntryBytes bounds what one entry sends to the API server; a
	// longer detail is cut to fit.
	MaxEntryBytes = 8 << 10
	// DefaultKeepRuns is how many runs the journal keeps.
	DefaultKeepRuns = 20
)

// Labels and annotations of the chunks.
const (
	LabelJournal   = "drover.prox-ops.io/journal"
	LabelRun       = "drover.prox-ops.io/run"
	LabelChunk     = "drover.prox-ops.io/chunk"
	AnnotationRun  = "drover.prox-ops.io/run-id"
	AnnotationTime = "drover.prox-ops.io/run-started"
	managedBy      = "app.kubernetes.io/managed-by"
)

// raceBackoff spaces the retries of writers that race on one chunk: with
// jitter, so that they stop colliding.
func raceBackoff() wait.Backoff {
	return wait.Backoff{Steps: 12, Duration: 5 * time.Millisecond, Factor: 1.6, Jitter: 1, Cap: time.Second}
}

// startedLayout is fixed-width, so that runs sort by it as text.
const startedLayout = "2006-01-02T15:04:05.000000000Z"

// chunkSuffix is what a chunk adds to the journal's name: "-", the run's
// key (10), "-", the chunk number (6).
const chunkSuffix = 1 + 10 + 1 + 6

// ConfigMap keeps the journal in the cluster, so a new runner pod can
// resume a run an earlier pod started.
type ConfigMap struct {
	Client    kubernetes.Interface
	Namespace string
	Name      string
	// Mask, when set, masks secrets in every entry.
	Mask func(string) string
	// KeepRuns is how many runs are kept (0: DefaultKeepRuns); older ones
	// are deleted whole when a run starts. The running run is never cut.
	KeepRuns int

	// mu serialises this process's writes (parallel nodes record at once);
	// conflicts with other writers are retried.
	mu   sync.Mutex
	runs map[string]*chunkWriter
	// Sent counts the bytes of the requests that wrote entries, Stored
	// the bytes of the chunk revisions they made etcd keep until it
	// compacts (a benchmark reads them).
	Sent, Stored int64
}

var _ rollout.Journal = (*ConfigMap)(nil)

// chunkWriter is where a run's next entry goes.
type chunkWriter struct {
	run     string
	started string // the run's first entry time, as the chunks carry it
	chain   *chain
	seq     int // the newest chunk's number; -1: none yet
	keys    int
	bytes   int
	version string // the newest chunk's resourceVersion
}

// ParseConfigMapRef reads "configmap", "configmap:NAME" or
// "configmap:NAMESPACE/NAME"; without a namespace the default one is used.
// ok says whether s names a ConfigMap at all (anything else is a file).
func ParseConfigMapRef(s, defaultNamespace string) (ns, name string, ok bool, err error) {
	if s != "configmap" && !strings.HasPrefix(s, "configmap:") {
		return "", "", false, nil
	}
	ns, name = defaultNamespace, "drover-journal"
	if ref, has := strings.CutPrefix(s, "configmap:"); has {
		n, m, cut := strings.Cut(ref, "/")
		if !cut {
			n, m = defaultNamespace, ref
		}
		ns, name = n, m
		bad := validation.IsDNS1123Subdomain(name)
		if cut {
			bad = append(bad, validation.IsDNS1123Label(ns)...)
		}
		if len(name) > validation.DNS1123SubdomainMaxLength-chunkSuffix {
			bad = append(bad, fmt.Sprintf("the name must be at most %d characters (its chunks add %d)", validation.DNS1123SubdomainMaxLength-chunkSuffix, chunkSuffix))
		}
		if len(bad) > 0 || name == "" {
			return "", "", true, fmt.Errorf("--journal %q: want configmap, configmap:NAME or configmap:NAMESPACE/NAME with DNS names (%s)", s, strings.Join(bad, "; "))
		}
	}
	return ns, name, true, nil
}

// runKey is a run's ID as a label value and a name part.
func runKey(run string) string {
	sum := sha256.Sum256([]byte(run))
	return hex.EncodeToString(sum[:5])
}

func (c *ConfigMap) chunkName(run string, seq int) string {
	return fmt.Sprintf("%s-%s-%06d", c.Name, runKey(run), seq)
}

func entryKey(i int) string { return fmt.Sprintf("e%05d", i) }

// Record appends one entry to its run's newest chunk, or starts the next
// chunk when that one is full. The first entry of a run also deletes the
// runs beyond KeepRuns, oldest first.
func (c *ConfigMap) Record(ctx context.Context, e rollout.Entry) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.runs[e.RunID]
	if w == nil {
		var err error
		if w, err = c.load(ctx, e.RunID); err != nil {
			return err
		}
		if w.seq < 0 && w.chain.last[e.RunID] == "" {
			w.started = e.Time.UTC().Format(startedLayout)
		}
		if c.runs == nil {
			c.runs = map[string]*chunkWriter{}
		}
		c.runs[e.RunID] = w
	}
	created := false
	err := retry.RetryOnConflict(raceBackoff(), func() error {
		entry := e
		line, err := encodeBounded(&entry, w.chain, c.Mask)
		if err != nil {
			return err
		}
		if w.seq < 0 || w.keys >= chunkEntries || w.bytes+len(line)+1 > ChunkBytes {
			err = c.create(ctx, w, line)
			created = created || err == nil
		} else {
			err = c.append(ctx, w, line)
		}
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			// Another writer went first: learn where the run stands now.
			fresh, lerr := c.load(ctx, e.RunID)
			if lerr != nil {
				return lerr
			}
			fresh.started = cmp.Or(fresh.started, w.started)
			*w = *fresh
			return apierrors.NewConflict(corev1.Resource("configmaps"), c.Name, err)
		}
		if err != nil {
			return fmt.Errorf("journal ConfigMap %s/%s: %w", c.Namespace, c.Name, err)
		}
		w.chain.add(e.RunID, line)
		return nil
	})
	if err != nil {
		return err
	}
	if created && w.seq == 0 {
		// A new run: the old ones beyond KeepRuns go, whole.
		return c.prune(ctx, e.RunID)
	}
	return nil
}

// encodeBounded encodes the entry, cutting its detail until the request
// that sends it stays within MaxEntryBytes.
func encodeBounded(e *rollout.Entry, ch *chain, mask func(string) string) ([]byte, error) {
	line, err := encode(e, ch, mask)
	if err != nil {
		return nil, err
	}
	for patchSize(line) > MaxEntryBytes && e.Detail != "" {
		cut := len(e.Detail) / 2
		for cut > 0 && !utf8Start(e.Detail[cut]) {
			cut--
		}
		e.Detail = e.Detail[:cut] + " [cut: the journal keeps at most 8 KiB per entry]"
		if cut == 0 {
			e.Detail = "[cut: the journal keeps at most 8 KiB per entry]"
		}
		// mask is not applied twice: the detail is masked already.
		if line, err = encode(e, ch, nil); err != nil {
			return nil, err
		}
		if cut == 0 {
			break
		}
	}
	return line, nil
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// patchSize is about what an append sends: the line as a JSON string, a
// key and the precondition.
func patchSize(line []byte) int {
	q, _ := json.Marshal(string(line))
	return len(q) + 96
}

// create starts the run's next chunk with line in it.
func (c *ConfigMap) create(ctx context.Context, w *chunkWriter, line []byte) error {
	seq := w.seq + 1
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name:      c.chunkName(w.run, seq),
			Namespace: c.Namespace,
			Labels: map[string]string{
				managedBy:    "drover",
				LabelJournal: c.Name,
				LabelRun:     runKey(w.run),
				LabelChunk:   strconv.Itoa(seq),
			},
			Annotations: map[string]string{AnnotationRun: w.run, AnnotationTime: w.started},
		},
		Data: map[string]string{entryKey(0): string(line)},
	}
	cms := c.Client.CoreV1().ConfigMaps(c.Namespace)
	got, err := cms.Create(ctx, cm, metav1.CreateOptions{})
	if apierrors.IsNotFound(err) {
		if err := ensureNamespace(ctx, c.Client, c.Namespace); err != nil {
			return err
		}
		got, err = cms.Create(ctx, cm, metav1.CreateOptions{})
	}
	if err != nil {
		return err
	}
	c.Sent += int64(len(line) + 512)
	w.seq, w.keys, w.bytes, w.version = seq, 1, len(line)+1, got.ResourceVersion
	c.Stored += int64(w.bytes)
	return nil
}

// append adds line to the newest chunk, on the condition that nobody
// wrote to it since: the patch carries the resourceVersion last seen.
func (c *ConfigMap) append(ctx context.Context, w *chunkWriter, line []byte) error {
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"resourceVersion": w.version},
		"data":     map[string]string{entryKey(w.keys): string(line)},
	})
	if err != nil {
		return err
	}
	got, err := c.Client.CoreV1().ConfigMaps(c.Namespace).Patch(ctx, c.chunkName(w.run, w.seq), types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		return err
	}
	c.Sent += int64(len(patch))
	w.keys, w.bytes, w.version = w.keys+1, w.bytes+len(line)+1, got.ResourceVersion
	c.Stored += int64(w.bytes)
	return nil
}

// load learns where run stands: its chunks (and its lines in a journal
// of the old format, which a resumed run continues), its chain.
func (c *ConfigMap) load(ctx context.Context, run string) (*chunkWriter, error) {
	w := &chunkWriter{run: run, chain: newChain(), seq: -1}
	legacy, err := c.legacy(ctx)
	if err != nil {
		return nil, err
	}
	w.chain.seed(legacy)
	chunks, err := c.list(ctx, LabelRun+"="+runKey(run))
	if err != nil {
		return nil, err
	}
	for _, ch := range chunks {
		if ch.run != run {
			continue
		}
		for _, l := range ch.lines {
			w.chain.add(run, l)
		}
		w.started = cmp.Or(w.started, ch.started)
		w.seq, w.keys, w.version = ch.seq, len(ch.lines), ch.version
		w.bytes = 0
		for _, l := range ch.lines {
			w.bytes += len(l) + 1
		}
	}
	return w, nil
}

// chunk is one chunk ConfigMap read back.
type chunk struct {
	name, run, started, version string
	seq                         int
	lines                       [][]byte
}

// list reads the journal's chunks that match selector, in order: runs by
// when they started, a run's chunks by number, a chunk's entries by key.
func (c *ConfigMap) list(ctx context.Context, selector string) ([]chunk, error) {
	sel := LabelJournal + "=" + c.Name
	if selector != "" {
		sel += "," + selector
	}
	var out []chunk
	opts := metav1.ListOptions{LabelSelector: sel, Limit: 200}
	for {
		l, err := c.Client.CoreV1().ConfigMaps(c.Namespace).List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("journal ConfigMap %s/%s: %w", c.Namespace, c.Name, err)
		}
		for _, cm := range l.Items {
			seq, err := strconv.Atoi(cm.Labels[LabelChunk])
			if err != nil || cm.Annotations[AnnotationRun] == "" {
				return nil, fmt.Errorf("journal ConfigMap %s/%s: chunk %s has no run or number: not a chunk drover wrote", c.Namespace, c.Name, cm.Name)
			}
			ch := chunk{name: cm.Name, run: cm.Annotations[AnnotationRun], started: cm.Annotations[AnnotationTime], version: cm.ResourceVersion, seq: seq}
			for _, k := range slices.Sorted(maps.Keys(cm.Data)) {
				ch.lines = append(ch.lines, []byte(cm.Data[k]))
			}
			out = append(out, ch)
		}
		if l.Continue == "" {
			break
		}
		opts.Continue = l.Continue
	}
	slices.SortFunc(out, func(a, b chunk) int {
		return cmp.Or(cmp.Compare(a.started, b.started), cmp.Compare(a.run, b.run), cmp.Compare(a.seq, b.seq))
	})
	return out, nil
}

// legacy is the journal of the old format (one ConfigMap named as the
// journal, every run in one key), or nothing.
func (c *ConfigMap) legacy(ctx context.Context) ([]byte, error) {
	cm, err := c.Client.CoreV1().ConfigMaps(c.Namespace).Get(ctx, c.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("journal ConfigMap %s/%s: %w", c.Namespace, c.Name, err)
	}
	return []byte(cm.Data[ConfigMapKey]), nil
}

// prune deletes the runs beyond KeepRuns, oldest first, never running.
// The old format's ConfigMap counts as the oldest runs and goes whole.
func (c *ConfigMap) prune(ctx context.Context, running string) error {
	keep := cmp.Or(c.KeepRuns, DefaultKeepRuns)
	chunks, err := c.list(ctx, "")
	if err != nil {
		return err
	}
	var runs []string
	byRun := map[string][]string{}
	for _, ch := range chunks {
		if _, ok := byRun[ch.run]; !ok {
			runs = append(runs, ch.run)
		}
		byRun[ch.run] = append(byRun[ch.run], ch.name)
	}
	cms := c.Client.CoreV1().ConfigMaps(c.Namespace)
	var errs []error
	for _, r := range runs[:max(0, len(runs)-keep)] {
		if r == running {
			continue
		}
		for _, name := range byRun[r] {
			if err := cms.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, err)
			}
		}
	}
	if len(runs) >= keep {
		legacy, err := c.legacy(ctx)
		if err != nil {
			return err
		}
		if len(legacy) > 0 && !bytes.Contains(legacy, []byte(`"run":`+strconv.Quote(running))) {
			if err := cms.Delete(ctx, c.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("journal ConfigMap %s/%s: deleting old runs: %w", c.Namespace, c.Name, err)
	}
	return nil
}

// Entries reads the whole journal back, every run in order, its chain
// checked across chunks.
func (c *ConfigMap) Entries(ctx context.Context) ([]rollout.Entry, error) {
	legacy, err := c.legacy(ctx)
	if err != nil {
		return nil, err
	}
	chunks, err := c.list(ctx, "")
	if err != nil {
		return nil, err
	}
	if legacy == nil && len(chunks) == 0 {
		return nil, fmt.Errorf("journal ConfigMap %s/%s: %w", c.Namespace, c.Name,
			apierrors.NewNotFound(corev1.Resource("configmaps"), c.Name))
	}
	var b bytes.Buffer
	b.Write(legacy)
	if len(legacy) > 0 && legacy[len(legacy)-1] != '\n' {
		b.WriteByte('\n')
	}
	for _, ch := range chunks {
		for _, l := range ch.lines {
			b.Write(l)
			b.WriteByte('\n')
		}
	}
	log, err := Read(&b)
	if err != nil {
		return nil, fmt.Errorf("journal ConfigMap %s/%s: %w", c.Namespace, c.Name, err)
	}
	return log.Entries, nil
}

func ensureNamespace(ctx context.Context, c kubernetes.Interface, ns string) error {
	l := &LeaseLock{Client: c, Namespace: ns}
	return l.ensureNamespace(ctx)
}
