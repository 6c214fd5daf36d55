package testenv

import (
	"io"
	"log"
	"net/http/httptest"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Schematic is the tests' Image Factory schematic ID (a base image).
const Schematic = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"

// Registry is an OCI registry on 127.0.0.1 (go-containerregistry's
// in-process one), standing in for Image Factory: it holds the installer
// images a test pushes, and no other.
type Registry struct {
	// Host is host:port.
	Host string
}

// NewRegistry starts a registry for the test.
func NewRegistry(t testing.TB) *Registry {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return &Registry{Host: srv.Listener.Addr().String()}
}

// Installer is the installer image of a schematic at a version, in Image
// Factory's form, in this registry.
func (r *Registry) Installer(schematic, version string) string {
	return r.Host + "/nocloud-installer/" + schematic + ":" + version
}

// InstallerTemplate is the installer image with {version}, for
// talos.installerImage.
func (r *Registry) InstallerTemplate(schematic string) string {
	return r.Host + "/nocloud-installer/" + schematic + ":{version}"
}

// Push puts an image (random layers) at each reference.
func (r *Registry) Push(t testing.TB, refs ...string) {
	t.Helper()
	for _, ref := range refs {
		img, err := random.Image(512, 1)
		if err != nil {
			t.Fatal(err)
		}
		tag, err := name.ParseReference(ref)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(tag, img); err != nil {
			t.Fatalf("push %s: %v", ref, err)
		}
	}
}
