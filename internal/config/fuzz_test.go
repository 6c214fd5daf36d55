package config

import (
	"errors"
	"testing"
)

// FuzzParse: any input either parses into a valid configuration or is a
// *config.Error; it never panics.
func FuzzParse(f *testing.F) {
	f.Add([]byte(validYAML))
	f.Add([]byte("cluster: {name: x}\nnodes: []\n"))
	f.Add([]byte("rollout:\n  drainTimeout: 5 minutes\n"))
	f.Add([]byte("\x00\xff: ["))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data)
		var ce *Error
		switch {
		case err == nil && c == nil:
			t.Fatal("no config and no error")
		case err != nil && !errors.As(err, &ce):
			t.Fatalf("error of type %T: %v", err, err)
		case err == nil && (c.ControlPlaneCount()%2 == 0 || c.Cluster.Name == ""):
			t.Fatalf("an invalid configuration was accepted: %+v", c)
		}
	})
}
