// Package oci reads and checks OCI bundles, and makes the default spec
// that `hull spec` writes (runc's, so that tools written for runc see what
// they expect).
package oci

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// maxConfig bounds config.json; real ones are a few KiB.
const maxConfig = 4 << 20

// LoadBundle reads and checks bundle/config.json.
func LoadBundle(bundle string) (*specs.Spec, error) {
	p := filepath.Join(bundle, "config.json")
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("bundle %s has no config.json: %w", bundle, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", bundle, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfig+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if len(b) > maxConfig {
		return nil, fmt.Errorf("%s: over %d bytes: %w", p, maxConfig, errdefs.ErrInvalidArgument)
	}
	var s specs.Spec
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%s: malformed: %v: %w", p, err, errdefs.ErrInvalidArgument)
	}
	if err := Validate(&s); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return &s, nil
}

// Validate checks what every container needs.
func Validate(s *specs.Spec) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf(format+": %w", append(args, errdefs.ErrInvalidArgument)...)
	}
	switch {
	case s.Root == nil || s.Root.Path == "":
		return bad("root.path is missing")
	case s.Process == nil:
		return bad("process is missing")
	case len(s.Process.Args) == 0:
		return bad("process.args is empty")
	case s.Process.Cwd == "" || !filepath.IsAbs(s.Process.Cwd):
		return bad("process.cwd %q is not an absolute path", s.Process.Cwd)
	}
	for i, m := range s.Mounts {
		if !filepath.IsAbs(m.Destination) {
			return bad("mounts[%d].destination %q is not an absolute path", i, m.Destination)
		}
	}
	return nil
}

// Default returns the spec `runc spec` writes: a shell as process, the
// usual mounts and namespaces, runc's default capabilities and masked
// paths.
func Default() *specs.Spec {
	caps := []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}
	return &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: "rootfs", Readonly: true},
		Process: &specs.Process{
			Terminal: true,
			User:     specs.User{},
			Args:     []string{"sh"},
			Env:      []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"},
			Cwd:      "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
			NoNewPrivileges: true,
		},
		Hostname: "hull",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
		},
		Linux: &specs.Linux{
			Resources: &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}},
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace}, {Type: specs.CgroupNamespace},
			},
			MaskedPaths: []string{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
				"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}

// Spec is the OCI runtime spec.
type Spec = specs.Spec
