package journal

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/prox-ops/drover/internal/rollout"
)

// chain links each run's entries: every entry carries the hash of the
// run's previous line and of its first line, as written (masked). A line
// edited, removed, inserted or moved from another journal breaks the chain,
// and Read refuses the journal naming the line. It guards against hand
// edits and splices, not against someone who recomputes the hashes.
type chain struct {
	last map[string]string // run id -> hash of its last line
	head map[string]string // run id -> hash of its first line
}

func newChain() *chain { return &chain{last: map[string]string{}, head: map[string]string{}} }

// lineHash is the hash of one journal line, without its newline.
func lineHash(line []byte) string {
	sum := sha256.Sum256(line)
	return hex.EncodeToString(sum[:16])
}

// seal sets the entry's links to the run's lines so far.
func (c *chain) seal(e *rollout.Entry) {
	e.Prev, e.Head = c.last[e.RunID], c.head[e.RunID]
}

// add records a line of run as written.
func (c *chain) add(run string, line []byte) {
	h := lineHash(line)
	if c.head[run] == "" {
		c.head[run] = h
	}
	c.last[run] = h
}

// verify checks an entry read from line number n against the run's lines so far.
func (c *chain) verify(n int, e rollout.Entry, line []byte) error {
	if e.Prev != c.last[e.RunID] || e.Head != c.head[e.RunID] {
		what := "does not follow the line before it in run " + e.RunID
		if c.last[e.RunID] == "" {
			what = "claims to follow a line that is not in the journal"
		}
		return fmt.Errorf("journal line %d %s: the journal was edited, cut or spliced; drover does not resume from it", n, what)
	}
	c.add(e.RunID, line)
	return nil
}

// seed learns the chain of existing journal content, leniently: lines that
// do not parse are skipped (Read refuses them when the journal is read).
func (c *chain) seed(data []byte) {
	for _, line := range bytes.Split(data, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var head struct {
			RunID string `json:"run"`
		}
		if json.Unmarshal(line, &head) == nil && head.RunID != "" {
			c.add(head.RunID, line)
		}
	}
}
