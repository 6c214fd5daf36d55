package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// providerFiles are the stand-in provider's sources, in the order
// hack/tf-provider.sh hashes them.
var providerFiles = []string{"go.mod", "go.sum", "main.go", "provider.go"}

// providerVersion is the stand-in's version in the mirror.
const providerVersion = "0.1.0"

// providerRC is the CLI configuration that installs bpg/proxmox from the
// mirror and nothing else from anywhere.
func providerRC(mirror string) string {
	return `provider_installation {
  filesystem_mirror {
    path    = "` + mirror + `"
    include = ["registry.terraform.io/bpg/proxmox", "registry.opentofu.org/bpg/proxmox"]
  }
  direct {
    exclude = ["registry.terraform.io/bpg/proxmox", "registry.opentofu.org/bpg/proxmox"]
  }
}
`
}

var providerOnce struct {
	sync.Once
	rc  string
	err error
}

// TerraformProvider makes the Terraform this test runs use the stand-in for
// the bpg/proxmox provider (internal/terraform/testdata/provider, at dir):
// it sets TF_CLI_CONFIG_FILE to a CLI configuration that installs it from a
// filesystem mirror, built once into the cache, keyed by its sources' hash
// (hack/tf-provider.sh builds the same before make test).
func TerraformProvider(t testing.TB, dir string) {
	t.Helper()
	providerOnce.Do(func() { providerOnce.rc, providerOnce.err = BuildTerraformProvider(dir) })
	if providerOnce.err != nil {
		t.Fatalf("build the stand-in Terraform provider: %v", providerOnce.err)
	}
	t.Setenv("TF_CLI_CONFIG_FILE", providerOnce.rc)
}

// BuildTerraformProvider builds the stand-in provider whose sources are in
// dir into the cache, once per version of its sources, and returns the
// path of the CLI configuration that installs it.
func BuildTerraformProvider(dir string) (string, error) {
	h := sha256.New()
	for _, f := range providerFiles {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return "", err
		}
		h.Write(data)
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		cache = filepath.Join(home, ".cache")
	}
	out := filepath.Join(cache, "drover", "tf-provider-"+hex.EncodeToString(h.Sum(nil))[:16])
	rc := filepath.Join(out, "terraformrc")
	if _, err := os.Stat(rc); err == nil {
		return rc, nil
	}
	// A filesystem mirror in the unpacked layout, for Terraform's registry
	// and OpenTofu's: init installs from it, offline, and locks its hash.
	var first string
	for _, host := range []string{"registry.terraform.io", "registry.opentofu.org"} {
		target := filepath.Join(out, "mirror", host, "bpg", "proxmox", providerVersion, runtime.GOOS+"_"+runtime.GOARCH)
		if err := os.MkdirAll(target, 0o755); err != nil {
			return "", err
		}
		bin := filepath.Join(target, "terraform-provider-proxmox_v"+providerVersion)
		if first == "" {
			cmd := exec.Command("go", "build", "-trimpath", "-o", bin, ".")
			cmd.Dir = dir
			if b, err := cmd.CombinedOutput(); err != nil {
				return "", fmt.Errorf("%w\n%s", err, b)
			}
			first = bin
			continue
		}
		data, err := os.ReadFile(first)
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(bin, data, 0o755); err != nil {
			return "", err
		}
	}
	if err := os.WriteFile(rc, []byte(providerRC(filepath.Join(out, "mirror"))), 0o644); err != nil {
		return "", err
	}
	return rc, nil
}

// Terraform is the Terraform (or OpenTofu) binary the tests run, set up
// with the stand-in provider whose sources are at providerDir (see
// TerraformProvider): $DROVER_TF_BIN, else the kit's OpenTofu in the cache
// (hack/tofu-binary.sh), else tofu or terraform on PATH. Without one the
// test skips, or fails when the tier is required.
func Terraform(t testing.TB, providerDir string) string {
	t.Helper()
	TerraformProvider(t, providerDir)
	if b, ok := TofuTool.Path(); ok {
		return b
	}
	for _, b := range []string{"tofu", "terraform"} {
		if p, err := exec.LookPath(b); err == nil {
			return p
		}
	}
	if required() {
		t.Fatalf("no terraform or tofu binary, and the integration tier is required: run %s (make test does)", TofuTool.Build)
	}
	t.Skip("no terraform or tofu binary; make test provides one")
	return ""
}
