package container

import (
	"bytes"
	"errors"
	"os"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"golang.org/x/sys/unix"

	"github.com/hull-runtime/hull/internal/oci"
)

// steps splits a plan into its records' first fields, in order.
func stepNames(t *testing.T, steps []byte) (names []string, fields [][]string) {
	t.Helper()
	arity := map[string]int{"setns": 2, "unshare": 1, "rootfs": 3, "mount": 8, "propagate": 2, "mkdir": 1, "rootprop": 1, "remountro": 2, "mknod": 7, "symlink": 3,
		"pivot": 0, "console": 2, "rootro": 0, "readonly": 1, "mask": 1, "sysctl": 2, "hostname": 1,
		"domainname": 1, "keyring": 1, "rlimit": 3, "oom": 1, "umask": 1, "nnp": 0, "seccomp": 3, "loopback": 0}
	parts := bytes.Split(bytes.TrimSuffix(steps, []byte{0}), []byte{0})
	for i := 0; i < len(parts); {
		op := string(parts[i])
		n, ok := arity[op]
		switch op {
		case "user":
			n = 9 + atoi(t, parts[i+9])
			ok = true
		case "exec":
			n = 3 + atoi(t, parts[i+1]) + atoi(t, parts[i+2])
			ok = true
		}
		if !ok || i+1+n > len(parts) {
			t.Fatalf("step %d: %q with %d fields left", i, op, len(parts)-i-1)
		}
		var f []string
		for _, p := range parts[i+1 : i+1+n] {
			f = append(f, string(p))
		}
		names, fields = append(names, op), append(fields, f)
		i += 1 + n
	}
	return names, fields
}

func atoi(t *testing.T, b []byte) int {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			t.Fatalf("not a number: %q", b)
		}
		n = n*10 + int(c-'0')
	}
	return n
}

func defaultConfig(t *testing.T) (*configs.Config, *libcontainerProcess) {
	t.Helper()
	s := oci.Default()
	s.Root.Path = "/run/test/rootfs"
	s.Linux.CgroupsPath = "/hull/c1"
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: "c1", Spec: s})
	if err != nil {
		t.Fatal(err)
	}
	lp, err := processConfig(s.Process, true)
	if err != nil {
		t.Fatal(err)
	}
	return cfg, lp
}

func TestBuildPlanOrder(t *testing.T) {
	cfg, lp := defaultConfig(t)
	nnp := true
	lp.NoNewPrivileges = &nnp
	lpl, err := buildPlan("c1", cfg, lp, false)
	if err != nil {
		t.Fatal(err)
	}
	names, fields := stepNames(t, lpl.steps)
	// The order libcontainer's init keeps: namespaces, the rootfs and its
	// mounts, devices, pivot_root, then the process.
	var order []string
	for _, n := range names {
		if len(order) == 0 || order[len(order)-1] != n {
			order = append(order, n)
		}
	}
	want := []string{"unshare", "loopback", "rootfs", "mount", "mknod", "symlink", "mkdir", "pivot", "rootro", "umask", "hostname",
		"readonly", "mask", "keyring", "rlimit", "nnp", "user", "exec"}
	if !slices.Equal(order, want) {
		t.Errorf("steps %v, want %v", order, want)
	}
	if lpl.cloneflags&unix.CLONE_NEWCGROUP != 0 {
		t.Error("the clone makes the cgroup namespace, before the init is in its cgroup")
	}
	for _, f := range []uintptr{unix.CLONE_NEWNS, unix.CLONE_NEWPID, unix.CLONE_NEWIPC, unix.CLONE_NEWUTS} {
		if lpl.cloneflags&f == 0 {
			t.Errorf("clone flags %#x lack %#x", lpl.cloneflags, f)
		}
	}
	exec := fields[len(fields)-1]
	if exec[3] != "sh" {
		t.Errorf("exec step %q", exec)
	}
	for i, n := range names {
		if n == "mount" && fields[i][1] == "/proc" && fields[i][5] != "p" {
			t.Errorf("/proc is not mounted as a plain directory only: %q", fields[i])
		}
	}
}

func TestBuildPlanConsoleAfterPivot(t *testing.T) {
	cfg, lp := defaultConfig(t)
	lpl, err := buildPlan("c1", cfg, lp, true)
	if err != nil {
		t.Fatal(err)
	}
	names, _ := stepNames(t, lpl.steps)
	pivot, console := slices.Index(names, "pivot"), slices.Index(names, "console")
	if console < 0 || console < pivot {
		t.Errorf("console at %d, pivot at %d: the pty must come from the container's devpts", console, pivot)
	}
}

func TestBuildPlanUnsupported(t *testing.T) {
	for name, change := range map[string]func(*configs.Config, *libcontainerProcess){
		"user namespace": func(c *configs.Config, _ *libcontainerProcess) {
			c.Namespaces = append(c.Namespaces, configs.Namespace{Type: configs.NEWUSER})
			c.UIDMappings = []configs.IDMap{{ContainerID: 0, HostID: 1000, Size: 1}}
		},
		"pid namespace path": func(c *configs.Config, _ *libcontainerProcess) {
			c.Namespaces.Remove(configs.NEWPID)
			c.Namespaces.Add(configs.NEWPID, "/proc/1/ns/pid")
		},
		"tmpcopyup": func(c *configs.Config, _ *libcontainerProcess) {
			c.Mounts = append(c.Mounts, &configs.Mount{Device: "tmpfs", Destination: "/x", Extensions: configs.EXT_COPYUP})
		},
		"no capabilities": func(_ *configs.Config, p *libcontainerProcess) { p.Capabilities = nil },
		"seccomp notify": func(c *configs.Config, _ *libcontainerProcess) {
			c.Seccomp = &configs.Seccomp{DefaultAction: configs.Allow, ListenerPath: "/run/agent.sock",
				Syscalls: []*configs.Syscall{{Name: "mkdir", Action: configs.Notify}}}
		},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, lp := defaultConfig(t)
			change(cfg, lp)
			if _, err := buildPlan("c1", cfg, lp, false); !errors.Is(err, errUnsupported) {
				t.Errorf("err %v, want errUnsupported", err)
			}
		})
	}
}

func TestCapMask(t *testing.T) {
	got := capMask([]string{"CAP_CHOWN", "CAP_KILL", "CAP_NO_SUCH", "cap_sys_admin"})
	want := uint64(1<<unix.CAP_CHOWN | 1<<unix.CAP_KILL | 1<<unix.CAP_SYS_ADMIN)
	if got != want {
		t.Errorf("mask %#x, want %#x", got, want)
	}
}

// A NUL in any string of the spec would end its field early and turn the
// rest into steps of the plan (an injected exec, say): refused.
func TestBuildPlanRefusesNUL(t *testing.T) {
	for name, change := range map[string]func(*configs.Config, *libcontainerProcess){
		"cwd":      func(_ *configs.Config, p *libcontainerProcess) { p.Cwd = "/\x000\x00exec\x001\x000\x000\x00/bin/sh" },
		"argument": func(_ *configs.Config, p *libcontainerProcess) { p.Args = append(p.Args, "a\x00b") },
		"hostname": func(c *configs.Config, _ *libcontainerProcess) { c.Hostname = "h\x00" },
		"sysctl":   func(c *configs.Config, _ *libcontainerProcess) { c.Sysctl = map[string]string{"net.x": "1\x00"} },
	} {
		t.Run(name, func(t *testing.T) {
			cfg, lp := defaultConfig(t)
			change(cfg, lp)
			if _, err := buildPlan("c1", cfg, lp, false); !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("err %v, want ErrInvalidArgument", err)
			}
		})
	}
}

func TestProcessEnv(t *testing.T) {
	env, needHome, err := processEnv([]string{"A=1", "HOME=", "B=2", "A=3"})
	if err != nil || needHome != true || !slices.Equal(env, []string{"B=2", "A=3"}) {
		t.Errorf("env %q, needHome %v, err %v", env, needHome, err)
	}
	if _, needHome, _ := processEnv([]string{"HOME=/root"}); needHome {
		t.Error("HOME given, still looked up")
	}
	for _, bad := range []string{"NOEQUALS", "=value"} {
		if _, _, err := processEnv([]string{bad}); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%q: err %v", bad, err)
		}
	}
}

// rshared root propagation goes on "/" after pivot_root, which a shared
// parent of the rootfs would fail.
func TestBuildPlanSharedRoot(t *testing.T) {
	cfg, lp := defaultConfig(t)
	cfg.RootPropagation = unix.MS_SHARED | unix.MS_REC
	lpl, err := buildPlan("c1", cfg, lp, false)
	if err != nil {
		t.Fatal(err)
	}
	names, fields := stepNames(t, lpl.steps)
	pivot, rootprop := slices.Index(names, "pivot"), slices.Index(names, "rootprop")
	if rootprop < pivot {
		t.Fatalf("rootprop at %d, pivot at %d", rootprop, pivot)
	}
	if root := fields[slices.Index(names, "rootfs")]; root[2] != "262144" { // MS_PRIVATE
		t.Errorf("rootfs step %q: its parent must become private", root)
	}
}

// A clone3 that the kernel or a seccomp profile refuses falls back to a
// plain clone and a move into the cgroup; other failures do not.
func TestCloneIntoCgroupUnsupported(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&os.SyscallError{Syscall: "clone3", Err: unix.ENOSYS}, true},
		{&os.SyscallError{Syscall: "clone3", Err: unix.EPERM}, true},
		{&os.SyscallError{Syscall: "clone3", Err: unix.EINVAL}, true},
		{&os.PathError{Op: "fork/exec", Path: "/init", Err: unix.ENOENT}, false},
		{&os.SyscallError{Syscall: "clone3", Err: unix.ENOMEM}, false},
	} {
		if got := cloneIntoCgroupUnsupported(c.err); got != c.want {
			t.Errorf("%v: %v, want %v", c.err, got, c.want)
		}
	}
}
