package container

import (
	"fmt"
	"os"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hull-runtime/hull/internal/guest/names"
)

// applyVMNetSysctls handles the net.* sysctls of a container that shares
// the VM's network namespace (the host turns a pod's network namespace
// into the VM's own). libcontainer refuses net.* sysctls without a
// network namespace of the container's own, but the VM's namespace is the
// pod's: the agent applies them there and takes them out of the spec.
func (e *Engine) applyVMNetSysctls(spec *specs.Spec) error {
	if spec.Linux == nil || len(spec.Linux.Sysctl) == 0 {
		return nil
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			return nil // its own namespace: libcontainer applies them
		}
	}
	rest := map[string]string{}
	for k, v := range spec.Linux.Sysctl {
		if !strings.HasPrefix(k, "net.") {
			rest[k] = v
			continue
		}
		if !names.SysctlKey(k) || strings.Contains(k, "..") {
			return fmt.Errorf("sysctl %q: %w", k, errdefs.ErrInvalidArgument)
		}
		p := "/proc/sys/" + strings.ReplaceAll(k, ".", "/")
		if err := os.WriteFile(p, []byte(v), 0); err != nil {
			return fmt.Errorf("sysctl %s=%s in the VM's network namespace: %v: %w", k, v, err, errdefs.ErrInvalidArgument)
		}
	}
	spec.Linux.Sysctl = rest
	return nil
}
