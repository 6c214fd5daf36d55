package journal

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/prox-ops/drover/internal/rollout"
)

// FuzzRead: reading any bytes gives entries or an error, never a panic, and
// every entry it returns is a drover entry.
func FuzzRead(f *testing.F) {
	var good bytes.Buffer
	m := &Memory{}
	_ = m.Record(context.Background(), rollout.Entry{Time: time.Unix(0, 0), RunID: "r", Node: "n", Step: rollout.StepDrain, Status: rollout.StatusStarted})
	for _, e := range m.Entries() {
		b, _ := jsonLine(e)
		good.Write(b)
	}
	f.Add(good.Bytes())
	f.Add([]byte(`{"run":"r","step":"drain"}` + "\n"))
	f.Add([]byte("not json\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		log, err := Read(bytes.NewReader(data))
		if err != nil {
			return
		}
		for _, e := range log.Entries {
			if e.RunID == "" || e.Step == "" || e.Status == "" {
				t.Fatalf("an incomplete entry was accepted: %+v", e)
			}
		}
	})
}
