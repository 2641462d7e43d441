package container

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/capability"
	"github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"
)

// DefaultInitPath is where the image puts hull-init (cmd/hull-init), the
// small static program that sets up a container's init in place of
// libcontainer's re-executed agent.
const DefaultInitPath = "/hull-init"

// errUnsupported says that hull-init does not do what a config asks, so
// libcontainer creates that container.
var errUnsupported = errors.New("not done by hull-init")

// plan is the program hull-init carries out: records of NUL-terminated
// fields (see cmd/hull-init).
type plan struct {
	bytes.Buffer
	// err is the first field that held a NUL, which would end it early
	// and make the rest of it steps of their own.
	err error
}

func (p *plan) op(fields ...string) {
	for _, f := range fields {
		if strings.IndexByte(f, 0) >= 0 && p.err == nil {
			p.err = fmt.Errorf("%s: %q holds a NUL byte: %w", fields[0], f, errdefs.ErrInvalidArgument)
		}
		p.WriteString(f)
		p.WriteByte(0)
	}
}

func num[T ~int | ~int32 | ~int64 | ~uint | ~uint16 | ~uint32 | ~uint64](v T) string {
	return strconv.FormatUint(uint64(v), 10)
}

// leanPlan is what the agent does itself and what hull-init does for a
// container's init.
type leanPlan struct {
	// cloneflags are the namespaces the clone makes.
	cloneflags uintptr
	// steps are hull-init's.
	steps []byte
	// console tells that the init takes a terminal (fd 6).
	console bool
}

// supported tells whether hull-init does all that cfg and lp ask, and if
// not, names the first thing it does not.
func supported(cfg *configs.Config, lp *libcontainerProcess) error {
	unsupported := func(what string) error { return fmt.Errorf("%s: %w", what, errUnsupported) }
	switch {
	case len(cfg.UIDMappings) > 0 || len(cfg.GIDMappings) > 0:
		return unsupported("user namespace")
	case cfg.NoPivotRoot:
		return unsupported("no pivot_root")
	case !cfg.Namespaces.Contains(configs.NEWNS) || cfg.Namespaces.PathOf(configs.NEWNS) != "":
		return unsupported("no mount namespace of its own")
	case cfg.IntelRdt != nil, cfg.MemoryPolicy != nil, len(cfg.NetDevices) > 0, len(cfg.Routes) > 0:
		return unsupported("RDT, memory policy or network devices")
	case len(cfg.TimeOffsets) > 0, cfg.Scheduler != nil, cfg.Personality != nil, cfg.IOPriority != nil, cfg.ExecCPUAffinity != nil:
		return unsupported("time offsets, scheduler, personality, I/O priority or CPU affinity")
	case lp.Scheduler != nil, lp.IOPriority != nil, lp.CPUAffinity != nil:
		return unsupported("process scheduler, I/O priority or CPU affinity")
	case lp.Capabilities == nil:
		return unsupported("no capabilities given")
	case cfg.AppArmorProfile != "", lp.AppArmorProfile != "", cfg.ProcessLabel != "", lp.Label != "", cfg.MountLabel != "":
		// libcontainer applies them, or fails where the guest cannot.
		return unsupported("AppArmor profile or SELinux label")
	case len(lp.ExtraFiles) > 0:
		return unsupported("extra files")
	case len(cfg.Hooks[configs.StartContainer]) > 0:
		return unsupported("startContainer hooks")
	}
	for _, ns := range cfg.Namespaces {
		switch ns.Type {
		case configs.NEWUSER, configs.NEWTIME:
			return unsupported("namespace " + string(ns.Type))
		case configs.NEWPID:
			if ns.Path != "" {
				return unsupported("joining a pid namespace")
			}
		}
	}
	if len(cfg.Sysctl) > 0 {
		// hull-init writes them through the container's /proc.
		proc := false
		for _, m := range cfg.Mounts {
			proc = proc || (m.Device == "proc" && cleanDest(m.Destination) == "/proc" && m.Flags&unix.MS_RDONLY == 0)
		}
		if !proc {
			return unsupported("sysctls without a writable /proc")
		}
	}
	for _, n := range cfg.Networks {
		if n.Type != "loopback" {
			return unsupported("network " + n.Type)
		}
	}
	for _, m := range cfg.Mounts {
		switch {
		case m.Extensions&configs.EXT_COPYUP != 0:
			return unsupported("tmpcopyup mount " + m.Destination)
		case m.RecAttr != nil, m.IDMapping != nil:
			return unsupported("recursive attributes or id mapping of mount " + m.Destination)
		}
	}
	return nil
}

// buildPlan turns a container's config (libcontainer's conversion of the
// spec, so that both engines read the spec alike) into hull-init's plan.
// It follows libcontainer's order: namespaces, mounts, devices, pivot_root,
// console, read-only root, hostname, sysctls, read-only and masked paths,
// rlimits, no_new_privs, capabilities and user, then the program.
func buildPlan(id string, cfg *configs.Config, lp *libcontainerProcess, console bool) (*leanPlan, error) {
	if err := supported(cfg, lp); err != nil {
		return nil, err
	}
	lpl := &leanPlan{console: console}
	var p plan

	// The clone makes the new namespaces but the cgroup one, which must
	// start where the init is put, after the clone.
	for _, ns := range cfg.Namespaces {
		if ns.Path != "" {
			continue
		}
		if ns.Type == configs.NEWCGROUP {
			p.op("unshare", num(unix.CLONE_NEWCGROUP))
			continue
		}
		lpl.cloneflags |= uintptr(ns.Syscall())
	}
	for _, ns := range cfg.Namespaces {
		if ns.Path != "" {
			p.op("setns", ns.Path, num(ns.Syscall()))
		}
	}

	// A network namespace of its own has its loopback up, as
	// libcontainer's "loopback" network does.
	if len(cfg.Networks) > 0 {
		p.op("loopback")
	}

	prop := cfg.RootPropagation
	if prop == 0 {
		prop = unix.MS_SLAVE | unix.MS_REC
	}
	parent := uint(unix.MS_PRIVATE)
	if cfg.RootPropagation&unix.MS_SLAVE != 0 {
		parent = unix.MS_SLAVE
	}
	p.op("rootfs", cfg.Rootfs, num(uint(prop)), num(parent))

	setupDev := true
	for _, m := range cfg.Mounts {
		dst := cleanDest(m.Destination)
		if m.Device == "bind" && dst == "/dev" {
			setupDev = false
		}
		flags := uint(m.Flags)
		// As libcontainer: a tmpfs, and /dev, go read-only only once set
		// up (device nodes, mount points in them).
		if m.Device == "tmpfs" || dst == "/dev" {
			flags &^= unix.MS_RDONLY
		}
		kind, fstype, src, fallback := "d", m.Device, m.Source, ""
		switch m.Device {
		case "bind":
			kind, fstype = "b", ""
			flags |= unix.MS_BIND
		case "proc", "sysfs":
			// Only on a plain directory (CVE-2019-19921).
			kind = "p"
			if m.Device == "sysfs" {
				fallback = "/sys"
			}
		case "cgroup", "cgroup2":
			fstype, fallback = "cgroup2", "/sys/fs/cgroup"
		case "mqueue":
			fallback = "/dev/mqueue"
		}
		p.op("mount", src, dst, fstype, num(flags), m.Data, kind, fallback, num(uint(m.ClearedFlags)))
		for _, f := range m.PropagationFlags {
			p.op("propagate", dst, num(uint(f)))
		}
	}
	if setupDev {
		for _, d := range cfg.Devices {
			if d.Path == "" || cleanDest(d.Path) == "/dev/ptmx" {
				continue
			}
			var t string
			switch d.Type {
			case config.CharDevice:
				t = "c"
			case config.BlockDevice:
				t = "b"
			case config.FifoDevice:
				t = "p"
			default:
				return nil, fmt.Errorf("device %s: type %q: %w", d.Path, d.Type, errUnsupported)
			}
			p.op("mknod", cleanDest(d.Path), t, num(d.Major), num(d.Minor), num(uint32(d.FileMode.Perm()|d.FileMode&(os.ModeSetuid|os.ModeSetgid|os.ModeSticky))), num(d.Uid), num(d.Gid))
		}
		p.op("symlink", "pts/ptmx", "/dev/ptmx", "1")
		links := [][2]string{{"/proc/self/fd", "/dev/fd"}, {"/proc/self/fd/0", "/dev/stdin"}, {"/proc/self/fd/1", "/dev/stdout"}, {"/proc/self/fd/2", "/dev/stderr"}}
		if _, err := os.Stat("/proc/kcore"); err == nil {
			links = append(links, [2]string{"/proc/kcore", "/dev/core"})
		}
		for _, l := range links {
			p.op("symlink", l[0], l[1], "0")
		}
	}
	// The working directory is made if missing, as libcontainer does.
	p.op("mkdir", lp.Cwd)
	p.op("pivot")
	if cfg.RootPropagation != 0 && cfg.RootPropagation&(unix.MS_PRIVATE|unix.MS_SLAVE) == 0 {
		p.op("rootprop", num(uint(cfg.RootPropagation)))
	}
	if console {
		p.op("console", num(lp.ConsoleWidth), num(lp.ConsoleHeight))
	}
	for _, m := range cfg.Mounts {
		if (m.Device == "tmpfs" || cleanDest(m.Destination) == "/dev") && m.Flags&unix.MS_RDONLY != 0 {
			p.op("remountro", cleanDest(m.Destination), num(uint(m.Flags&^unix.MS_RDONLY)))
		}
	}
	if cfg.Readonlyfs {
		p.op("rootro")
	}
	umask := uint32(0o022)
	if cfg.Umask != nil {
		umask = *cfg.Umask
	}
	p.op("umask", num(umask))
	if cfg.Hostname != "" {
		p.op("hostname", cfg.Hostname)
	}
	if cfg.Domainname != "" {
		p.op("domainname", cfg.Domainname)
	}
	keys := make([]string, 0, len(cfg.Sysctl))
	for k := range cfg.Sysctl {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p.op("sysctl", k, cfg.Sysctl[k])
	}
	for _, r := range cfg.ReadonlyPaths {
		p.op("readonly", r)
	}
	for _, m := range cfg.MaskPaths {
		p.op("mask", m)
	}
	if !cfg.NoNewKeyring {
		p.op("keyring", "_ses."+id)
	}
	rlimits := lp.Rlimits
	if rlimits == nil {
		rlimits = cfg.Rlimits
	}
	for _, r := range rlimits {
		p.op("rlimit", num(r.Type), num(r.Soft), num(r.Hard))
	}
	if cfg.OomScoreAdj != nil {
		p.op("oom", strconv.Itoa(*cfg.OomScoreAdj))
	}
	nnp := cfg.NoNewPrivileges
	if lp.NoNewPrivileges != nil {
		nnp = *lp.NoNewPrivileges
	}
	if nnp {
		p.op("nnp")
	}
	var seccompStep []string
	if cfg.Seccomp != nil {
		prog, flags, err := seccompProgram(cfg.Seccomp)
		if err != nil {
			return nil, err
		}
		// As libcontainer: with no_new_privs the filter goes on last, after
		// the start, so that it need not allow the set-up; without, it
		// needs CAP_SYS_ADMIN, which the process may be about to drop.
		late := "0"
		if nnp {
			late = "1"
		}
		seccompStep = []string{"seccomp", late, num(flags), prog}
		if !nnp {
			p.op(seccompStep...)
		}
	}
	caps := lp.Capabilities
	fields := []string{"user", num(lp.UID), num(lp.GID), lp.Cwd,
		num(capMask(caps.Bounding)), num(capMask(caps.Effective)), num(capMask(caps.Permitted)),
		num(capMask(caps.Inheritable)), num(capMask(caps.Ambient)), num(len(lp.AdditionalGroups))}
	for _, g := range lp.AdditionalGroups {
		fields = append(fields, num(g))
	}
	p.op(fields...)
	if nnp && seccompStep != nil {
		p.op(seccompStep...)
	}
	env, needHome, err := processEnv(lp.Env)
	if err != nil {
		return nil, err
	}
	p.op(append([]string{"exec", num(len(lp.Args)), num(len(env)), boolNum(needHome)}, append(lp.Args, env...)...)...)
	if p.err != nil {
		return nil, p.err
	}
	lpl.steps = p.Bytes()
	return lpl, nil
}

// processEnv is the environment as libcontainer's prepareEnv makes it:
// the last of each name kept, an empty HOME dropped; needHome tells that
// HOME is to come from the container's /etc/passwd.
func processEnv(env []string) (out []string, needHome bool, err error) {
	seen := make(map[string]bool, len(env))
	needHome = true
	for i := len(env) - 1; i >= 0; i-- {
		kv := env[i]
		eq := strings.IndexByte(kv, '=')
		switch {
		case eq < 0:
			return nil, false, fmt.Errorf("invalid environment variable %q: missing '=': %w", kv, errdefs.ErrInvalidArgument)
		case eq == 0:
			return nil, false, fmt.Errorf("invalid environment variable %q: name cannot be empty: %w", kv, errdefs.ErrInvalidArgument)
		}
		key := kv[:eq]
		if seen[key] {
			continue
		}
		seen[key] = true
		if key == "HOME" {
			if kv[eq+1:] == "" {
				continue
			}
			needHome = false
		}
		out = append(out, kv)
	}
	slices.Reverse(out)
	return out, needHome, nil
}

func boolNum(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// cleanDest is a mount destination as libcontainer reads it.
func cleanDest(p string) string {
	return path.Clean("/" + filepath.ToSlash(p))
}

// capMask turns capability names into a mask; names this kernel's list
// does not know are left out, as libcontainer does.
func capMask(names []string) uint64 {
	known := capNames()
	var m uint64
	for _, n := range names {
		if c, ok := known[strings.ToUpper(n)]; ok && c < 64 {
			m |= 1 << c
		}
	}
	return m
}

var capNames = sync.OnceValue(func() map[string]uint {
	m := make(map[string]uint)
	for _, c := range capability.ListKnown() {
		m["CAP_"+strings.ToUpper(c.String())] = uint(c)
	}
	return m
})
