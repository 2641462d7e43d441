//go:build !(cgo && seccomp)

package container

import (
	"fmt"

	"github.com/opencontainers/runc/libcontainer/configs"
)

// seccompProgram needs libseccomp (cgo and the seccomp build tag, as the
// agent's build has); without, libcontainer sets up containers with a
// filter, and fails them as it does.
func seccompProgram(*configs.Seccomp) (string, uint, error) {
	return "", 0, fmt.Errorf("seccomp without libseccomp: %w", errUnsupported)
}
