package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/prox-ops/drover/internal/rollout"
)

// outputFlag is the --output format.
type outputFlag struct{ format string }

func (o *outputFlag) register(fs *pflag.FlagSet) {
	fs.StringVarP(&o.format, "output", "o", "table", "output format: table or json")
}

func (o *outputFlag) validate() error {
	switch o.format {
	case "table", "json":
		return nil
	}
	return usage(fmt.Errorf("--output %q: want table or json", o.format))
}

// validateAlso also accepts the command's own extra formats.
func (o *outputFlag) validateAlso(extra ...string) error {
	for _, e := range extra {
		if o.format == e {
			return nil
		}
	}
	if err := o.validate(); err != nil {
		return usage(fmt.Errorf("--output %q: want table, json or %s", o.format, strings.Join(extra, ", ")))
	}
	return nil
}

func (o *outputFlag) json() bool { return o.format == "json" }

// writeJSON writes v as an indented JSON document.
func writeJSON(s Streams, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return s.writeJSONBytes(append(b, '\n'))
}

// writeJSONLine writes v as one compact JSON line.
func writeJSONLine(s Streams, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.writeJSONBytes(append(b, '\n'))
}

// writeJSONBytes masks a JSON document by its string values, never its
// syntax (a secret "true" must not turn "passed": true into invalid JSON),
// and writes it past the line masker, which knows no JSON.
func (s Streams) writeJSONBytes(b []byte) error {
	if s.rawOut == nil || s.Masker == nil {
		_, err := s.Out.Write(b)
		return err
	}
	if f, ok := s.Out.(interface{ Flush() error }); ok {
		if err := f.Flush(); err != nil {
			return err
		}
	}
	masked, err := s.Masker.MaskJSON(b)
	if err != nil {
		return err
	}
	_, err = s.rawOut.Write(masked)
	return err
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

func printError(w io.Writer, err error) {
	var cp *rollout.CanaryPausedError
	var ho *rollout.HandedOffError
	switch {
	case errors.As(err, &cp):
		// Nothing failed: the run stopped where it was asked to.
		fmt.Fprintf(w, "drover: paused: %s\n", err)
		return
	case errors.As(err, &ho):
		fmt.Fprintf(w, "drover: %s\n", err)
		return
	}
	fmt.Fprintf(w, "drover: error: %s\n", err)
}

// clockTime formats an elapsed duration as +HH:MM:SS.
func clockTime(d time.Duration) string {
	d = d.Round(time.Second)
	return fmt.Sprintf("+%02d:%02d:%02d", int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60)
}

// human formats a duration for people: 1h2m3s, 4m30s, 20s.
func human(d time.Duration) string {
	d = d.Round(time.Second)
	if d == 0 {
		return "0s"
	}
	s := d.String()
	s = strings.Replace(s, "m0s", "m", 1)
	s = strings.Replace(s, "h0m", "h", 1)
	return s
}
