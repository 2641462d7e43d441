// Package version holds the build's version, set by the linker from the
// Makefile (-X), so that hull, its agent and its image manifest agree.
package version

// Set by -ldflags "-X github.com/hull-runtime/hull/internal/version.Version=...".
var (
	Version = "dev"
	Commit  = ""
)
