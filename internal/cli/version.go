package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// buildVersion is drover's version and commit: the ldflags a release sets,
// else what `go install module@version` records in the build info.
func buildVersion() (version, commit string) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return versionFrom(Version, Commit, bi)
}

// versionFrom prefers what the ldflags set and falls back on the build info.
func versionFrom(version, commit string, bi *debug.BuildInfo) (string, string) {
	if bi == nil {
		return version, commit
	}
	if version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && commit == "none" && len(s.Value) >= 7 {
			commit = s.Value[:7]
		}
	}
	return version, commit
}

func newVersionCmd(s Streams) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print drover's version and commit",
		Long: `Print drover's version and commit: those a release build sets, or, for a
binary built with go install github.com/prox-ops/drover/cmd/drover@VERSION,
the module version recorded in the binary.`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			v, c := buildVersion()
			_, err := fmt.Fprintf(s.Out, "drover %s (commit %s, %s, %s/%s)\n", v, c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return err
		},
	}
}
