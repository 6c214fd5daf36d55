package talos

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
)

// InPodConfig is where the Talos ServiceAccount (talos.dev/v1alpha1) mounts
// its talosconfig inside a pod.
const InPodConfig = "/var/run/secrets/talos.dev/config"

// ConfigSource says how to find the talosconfig.
type ConfigSource struct {
	// Flag is --talosconfig.
	Flag string
	// Getenv reads TALOSCONFIG.
	Getenv func(string) string
	// Home is the user's home directory, for ~/.talos/config.
	Home string
	// InPod overrides InPodConfig (tests).
	InPod string
	// TempDir is where a decoded TALOSCONFIG is written ("" = os.TempDir()).
	TempDir string
}

// ErrNoTalosconfig means no talosconfig was found.
var ErrNoTalosconfig = errors.New("no talosconfig: pass --talosconfig, set TALOSCONFIG (a path, or the file in base64), create ~/.talos/config, or run in a pod with a Talos ServiceAccount")

// Resolved is a talosconfig found on disk.
type Resolved struct {
	Path string
	// Source says where it came from, for the log; never the content.
	Source string
	// Cleanup removes a file drover wrote; call it on every exit path.
	Cleanup func()
}

// Resolve finds the talosconfig like talosctl: --talosconfig, then
// TALOSCONFIG, then ~/.talos/config, then the in-pod mount. TALOSCONFIG may
// hold a path or, as a GitHub secret usually does, the base64 of the file;
// the latter is decoded into a private (0600) temporary file that Cleanup
// removes.
func (s ConfigSource) Resolve() (Resolved, error) {
	none := func() {}
	if s.Flag != "" {
		if _, err := os.Stat(s.Flag); err != nil {
			return Resolved{}, fmt.Errorf("--talosconfig: %w", err)
		}
		return Resolved{Path: s.Flag, Source: "--talosconfig " + s.Flag, Cleanup: none}, nil
	}
	getenv := s.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	if v := strings.TrimSpace(getenv("TALOSCONFIG")); v != "" {
		if looksLikePath(v) {
			if _, err := os.Stat(v); err != nil {
				return Resolved{}, fmt.Errorf("TALOSCONFIG names a file that cannot be read: %w", err)
			}
			return Resolved{Path: v, Source: "TALOSCONFIG=" + v, Cleanup: none}, nil
		}
		return s.decode(v)
	}
	if s.Home != "" {
		p := filepath.Join(s.Home, ".talos", "config")
		if _, err := os.Stat(p); err == nil {
			return Resolved{Path: p, Source: p, Cleanup: none}, nil
		}
	}
	inPod := s.InPod
	if inPod == "" {
		inPod = InPodConfig
	}
	if _, err := os.Stat(inPod); err == nil {
		return Resolved{Path: inPod, Source: "Talos ServiceAccount mount " + inPod, Cleanup: none}, nil
	}
	return Resolved{}, ErrNoTalosconfig
}

// looksLikePath tells a path from base64 (which may contain '/' too): a
// path exists, or starts or ends like one.
func looksLikePath(v string) bool {
	if strings.ContainsAny(v, "\n") {
		return false
	}
	if _, err := os.Stat(v); err == nil {
		return true
	}
	return strings.HasPrefix(v, "/") || strings.HasPrefix(v, "./") || strings.HasPrefix(v, "~") || strings.HasSuffix(v, ".yaml") || strings.HasSuffix(v, "config")
}

func (s ConfigSource) decode(v string) (Resolved, error) {
	var data []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if data, err = enc.DecodeString(strings.Join(strings.Fields(v), "")); err == nil {
			break
		}
	}
	if err != nil {
		return Resolved{}, errors.New("TALOSCONFIG is neither a readable file nor base64 of a talosconfig")
	}
	// Never echo the content in an error: it holds the client key.
	cfg, err := clientconfig.FromBytes(data)
	if err != nil || cfg.Context == "" || cfg.Contexts[cfg.Context] == nil {
		return Resolved{}, errors.New("TALOSCONFIG decodes from base64, but not into a talosconfig with a current context")
	}
	f, err := os.CreateTemp(s.TempDir, "drover-talosconfig-*")
	if err != nil {
		return Resolved{}, fmt.Errorf("write the decoded TALOSCONFIG: %w", err)
	}
	path := f.Name()
	cleanup := func() { _ = os.Remove(path) }
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		cleanup()
		return Resolved{}, err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		cleanup()
		return Resolved{}, err
	}
	if err := f.Close(); err != nil {
		cleanup()
		return Resolved{}, err
	}
	return Resolved{Path: path, Source: "TALOSCONFIG (base64, decoded to a private temporary file)", Cleanup: cleanup}, nil
}
