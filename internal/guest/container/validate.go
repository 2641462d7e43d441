package container

import (
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runc/libcontainer/configs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/hull-runtime/hull/internal/guest/names"
)

// MaxSpecSize bounds the OCI spec of CreateContainer and the process of
// ExecProcess.
const MaxSpecSize = 1 << 20

// ValidateID checks a container or exec id: a letter or digit, then up to
// 63 letters, digits, '_', '.' or '-'. It keeps ids usable as file and
// cgroup names.
func ValidateID(kind, id string) error {
	if !names.ID(id) {
		return fmt.Errorf("%s id %q: must match %s: %w", kind, id, names.IDPattern, errdefs.ErrInvalidArgument)
	}
	return nil
}

// parseSpec decodes and checks an OCI spec whose paths are guest paths.
func parseSpec(b []byte) (*specs.Spec, error) {
	if len(b) > MaxSpecSize {
		return nil, fmt.Errorf("spec of %d bytes, at most %d: %w", len(b), MaxSpecSize, errdefs.ErrInvalidArgument)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("spec: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	if s.Root == nil || !filepath.IsAbs(s.Root.Path) {
		return nil, fmt.Errorf("spec: root.path must be an absolute guest path: %w", errdefs.ErrInvalidArgument)
	}
	if s.Linux == nil {
		return nil, fmt.Errorf("spec: no linux section: %w", errdefs.ErrInvalidArgument)
	}
	if err := checkProcess(s.Process); err != nil {
		return nil, err
	}
	return &s, nil
}

// parseProcess decodes and checks the process of an exec.
func parseProcess(b []byte) (*specs.Process, error) {
	if len(b) > MaxSpecSize {
		return nil, fmt.Errorf("process of %d bytes, at most %d: %w", len(b), MaxSpecSize, errdefs.ErrInvalidArgument)
	}
	var p specs.Process
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("process: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	if err := checkProcess(&p); err != nil {
		return nil, err
	}
	return &p, nil
}

func checkProcess(p *specs.Process) error {
	if p == nil {
		return fmt.Errorf("spec: no process: %w", errdefs.ErrInvalidArgument)
	}
	if len(p.Args) == 0 || p.Args[0] == "" {
		return fmt.Errorf("process: args must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	if p.Cwd != "" && !filepath.IsAbs(p.Cwd) {
		return fmt.Errorf("process: cwd %q is not absolute: %w", p.Cwd, errdefs.ErrInvalidArgument)
	}
	for _, r := range p.Rlimits {
		if _, ok := rlimits[r.Type]; !ok {
			return fmt.Errorf("process: unknown rlimit %q: %w", r.Type, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

var rlimits = map[string]int{
	"RLIMIT_CPU":        unix.RLIMIT_CPU,
	"RLIMIT_FSIZE":      unix.RLIMIT_FSIZE,
	"RLIMIT_DATA":       unix.RLIMIT_DATA,
	"RLIMIT_STACK":      unix.RLIMIT_STACK,
	"RLIMIT_CORE":       unix.RLIMIT_CORE,
	"RLIMIT_RSS":        unix.RLIMIT_RSS,
	"RLIMIT_NPROC":      unix.RLIMIT_NPROC,
	"RLIMIT_NOFILE":     unix.RLIMIT_NOFILE,
	"RLIMIT_MEMLOCK":    unix.RLIMIT_MEMLOCK,
	"RLIMIT_AS":         unix.RLIMIT_AS,
	"RLIMIT_LOCKS":      unix.RLIMIT_LOCKS,
	"RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_MSGQUEUE":   unix.RLIMIT_MSGQUEUE,
	"RLIMIT_NICE":       unix.RLIMIT_NICE,
	"RLIMIT_RTPRIO":     unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME":     unix.RLIMIT_RTTIME,
}

// processConfig turns an OCI process into what libcontainer runs, as
// runc does (runc's newProcess); IO is set up by the caller.
func processConfig(p *specs.Process, init bool) (*libcontainerProcess, error) {
	lp := &libcontainerProcess{
		Args:            p.Args,
		Env:             p.Env,
		UID:             int(p.User.UID),
		GID:             int(p.User.GID),
		Cwd:             p.Cwd,
		Label:           p.SelinuxLabel,
		NoNewPrivileges: &p.NoNewPrivileges,
		AppArmorProfile: p.ApparmorProfile,
		Scheduler:       p.Scheduler,
		IOPriority:      p.IOPriority,
		Init:            init,
	}
	if lp.Cwd == "" {
		lp.Cwd = "/"
	}
	if p.ConsoleSize != nil {
		lp.ConsoleWidth = uint16(p.ConsoleSize.Width)
		lp.ConsoleHeight = uint16(p.ConsoleSize.Height)
	}
	if c := p.Capabilities; c != nil {
		lp.Capabilities = &configs.Capabilities{
			Bounding:    c.Bounding,
			Effective:   c.Effective,
			Inheritable: c.Inheritable,
			Permitted:   c.Permitted,
			Ambient:     c.Ambient,
		}
	}
	for _, g := range p.User.AdditionalGids {
		lp.AdditionalGroups = append(lp.AdditionalGroups, int(g))
	}
	for _, r := range p.Rlimits {
		lp.Rlimits = append(lp.Rlimits, configs.Rlimit{Type: rlimits[r.Type], Hard: r.Hard, Soft: r.Soft})
	}
	aff, err := configs.ConvertCPUAffinity(p.ExecCPUAffinity)
	if err != nil {
		return nil, fmt.Errorf("process: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	lp.CPUAffinity = aff
	return lp, nil
}
