package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"github.com/hashicorp/yamux"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	api "github.com/hull-runtime/hull/api/agent/v1"
	"github.com/hull-runtime/hull/internal/guest/agent"
)

// The end-to-end test runs the real agent binary, built static as the
// Makefile builds it, in test mode on this machine: containers from a
// busybox rootfs, their streams over a yamux session on a unix socket.

const busybox = "/bin/busybox"

// cgroupParent holds the test's containers' cgroups.
const cgroupParent = "/hull-e2e-test"

type e2e struct {
	t        *testing.T
	dir      string
	rootfs   string
	agent    *exec.Cmd
	client   api.AgentService
	sess     *yamux.Session
	ctx      context.Context
	agentPid int
	// apiSock is where the agent serves the API.
	apiSock string
}

func setupE2E(t *testing.T) *e2e {
	if os.Getuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := os.Stat(busybox); err != nil {
		t.Skip("needs busybox-static")
	}
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("needs gcc for the cgo agent build")
	}
	dir := t.TempDir()
	e := &e2e{t: t, dir: dir}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	e.ctx = ctx

	// The binaries `make build` made (HULL_AGENT_BIN, HULL_INIT_BIN; make
	// test passes them), which are what the image holds; else built here,
	// the agent against glibc.
	root, _ := filepath.Abs("../../..")
	bin := os.Getenv("HULL_AGENT_BIN")
	if bin == "" {
		bin = filepath.Join(dir, "hull-agent")
		build := exec.Command("go", "build", "-tags", "netgo osusergo seccomp", "-trimpath",
			"-ldflags", `-s -w -linkmode external -extldflags "-static"`, "-o", bin, "./cmd/hull-agent")
		build.Dir = root
		build.Env = append(os.Environ(), "CGO_ENABLED=1")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("building the agent: %v\n%s", err, out)
		}
	}

	// The containers' inits are hull-init's, as in the image.
	initBin := os.Getenv("HULL_INIT_BIN")
	if initBin == "" {
		initBin = filepath.Join(dir, "hull-init")
		cc := exec.Command("gcc", "-O2", "-static", "-Wall", "-Wextra", "-Werror", "-o", initBin, "cmd/hull-init/hull-init.c")
		cc.Dir = root
		if out, err := cc.CombinedOutput(); err != nil {
			t.Fatalf("building hull-init: %v\n%s", err, out)
		}
	}

	e.rootfs = filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp", "etc"} {
		must(t, os.MkdirAll(filepath.Join(e.rootfs, d), 0o755))
	}
	bb, err := os.ReadFile(busybox)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(e.rootfs, "bin/busybox"), bb, 0o755))
	for _, l := range []string{"sh", "echo", "cat", "sleep", "id", "stty", "head", "true", "read", "ps"} {
		must(t, os.Symlink("busybox", filepath.Join(e.rootfs, "bin", l)))
	}

	apiSock, ioSock := filepath.Join(dir, "api.sock"), filepath.Join(dir, "io.sock")
	e.apiSock = apiSock
	e.agent = exec.Command(bin)
	e.agent.Env = append(os.Environ(),
		agent.TestSocketEnv+"="+apiSock, agent.TestIOSocketEnv+"="+ioSock,
		agent.TestStateEnv+"="+filepath.Join(dir, "state"), agent.TestCmdlineEnv+"=hull.log=info",
		agent.TestInitEnv+"="+initBin)
	e.agent.Stderr = &logWriter{t: t}
	must(t, e.agent.Start())
	e.agentPid = e.agent.Process.Pid
	t.Cleanup(func() {
		e.agent.Process.Kill()
		e.agent.Wait()
		e.checkClean()
	})

	conn := dial(t, apiSock)
	tc := ttrpc.NewClient(conn)
	t.Cleanup(func() { tc.Close() })
	e.client = api.NewAgentClient(tc)

	cfg := yamux.DefaultConfig()
	cfg.EnableKeepAlive = false
	cfg.MaxStreamWindowSize = 1 << 20
	cfg.LogOutput = io.Discard
	e.sess, err = yamux.Client(dial(t, ioSock), cfg)
	must(t, err)
	t.Cleanup(func() { e.sess.Close() })
	return e
}

func dial(t *testing.T, path string) net.Conn {
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		c, err := net.Dial("unix", path)
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent does not listen on %s: %v", path, err)
		}
	}
}

// checkClean looks for what the test may leave: mounts under its
// directory, cgroups, zombies.
func (e *e2e) checkClean() {
	t := e.t
	b, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(b), e.dir) {
		t.Errorf("mounts left under %s", e.dir)
	}
	paths, _ := filepath.Glob("/sys/fs/cgroup/*" + cgroupParent)
	paths2, _ := filepath.Glob("/sys/fs/cgroup" + cgroupParent)
	for _, p := range append(paths, paths2...) {
		if err := os.Remove(p); err != nil {
			t.Errorf("cgroup left: %v", err)
		}
	}
}

// spec returns a spec for a container running args.
func (e *e2e) spec(id string, args ...string) []byte {
	return e.specWith(id, nil, args...)
}

// specWith returns a spec for a container running args, changed by mod
// when not nil.
func (e *e2e) specWith(id string, mod func(*specs.Spec), args ...string) []byte {
	s := specconv.Example()
	s.Root.Path = e.rootfs
	s.Process.Terminal = false
	s.Process.Args = args
	s.Hostname = id
	s.Linux.CgroupsPath = cgroupParent + "/" + id
	// A hook the guest must not run: hooks are the host's.
	s.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{Path: "/no/such/hook"}}}
	if mod != nil {
		mod(s)
	}
	b, err := json.Marshal(s)
	must(e.t, err)
	return b
}

func (e *e2e) process(terminal bool, args ...string) []byte {
	p := specconv.Example().Process
	p.Terminal = terminal
	p.Args = args
	b, err := json.Marshal(p)
	must(e.t, err)
	return b
}

// open opens the stream of fd of a process.
func (e *e2e) open(cid, eid string, fd api.StreamHeader_Fd) *yamux.Stream {
	st, err := e.sess.OpenStream()
	must(e.t, err)
	must(e.t, api.WriteStreamHeader(st, &api.StreamHeader{ContainerId: cid, ExecId: eid, Fd: fd}))
	return st
}

func (e *e2e) wait(cid, eid string) int {
	e.t.Helper()
	r, err := e.client.WaitProcess(e.ctx, &api.WaitProcessRequest{ContainerId: cid, ExecId: eid})
	if err != nil {
		e.t.Fatalf("WaitProcess %s/%s: %v", cid, eid, err)
	}
	return int(r.ExitStatus)
}

func (e *e2e) remove(cid string, force bool) {
	e.t.Helper()
	if _, err := e.client.RemoveContainer(e.ctx, &api.RemoveContainerRequest{ContainerId: cid, Force: force}); err != nil {
		e.t.Fatalf("RemoveContainer %s: %v", cid, err)
	}
}

func TestContainerEndToEnd(t *testing.T) {
	e := setupE2E(t)
	c := e.client
	ctx := e.ctx

	t.Run("run", func(t *testing.T) {
		out := e.open("run", "", api.StreamHeader_STDOUT)
		t0 := time.Now()
		r, err := c.CreateContainer(ctx, &api.CreateContainerRequest{ContainerId: "run",
			Spec: e.spec("run", "sh", "-c", "echo hi; exit 3"), Stdio: &api.Stdio{Stdout: true}})
		if err != nil {
			t.Fatal(err)
		}
		created := time.Since(t0)
		if r.Pid == 0 {
			t.Error("no pid")
		}
		if _, err := c.StartContainer(ctx, &api.StartContainerRequest{ContainerId: "run"}); err != nil {
			t.Fatal(err)
		}
		started := time.Since(t0) - created
		b, err := io.ReadAll(out)
		if err != nil || string(b) != "hi\n" {
			t.Errorf("stdout %q, %v", b, err)
		}
		if got := e.wait("run", ""); got != 3 {
			t.Errorf("exit status %d, want 3", got)
		}
		// A second waiter, after the exit, answers at once.
		if got := e.wait("run", ""); got != 3 {
			t.Errorf("exit status %d, want 3", got)
		}
		if _, err := c.StartContainer(ctx, &api.StartContainerRequest{ContainerId: "run"}); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("second start: %v", err)
		}
		e.remove("run", false)
		t.Logf("create %s, start %s", created, started)
	})

	// `hull run`'s call: the sandbox's set-up, the creation and the start
	// in one request. The sandbox is set up once only: a second request
	// that carries it fails and creates nothing.
	t.Run("create and start at once", func(t *testing.T) {
		out := e.open("fused", "", api.StreamHeader_STDOUT)
		if _, err := c.CreateContainer(ctx, &api.CreateContainerRequest{ContainerId: "fused",
			Spec: e.spec("fused", "sh", "-c", "echo hi; exit 4"), Stdio: &api.Stdio{Stdout: true},
			Sandbox: &api.CreateSandboxRequest{}, Start: true}); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(out)
		if err != nil || string(b) != "hi\n" {
			t.Errorf("stdout %q, %v", b, err)
		}
		if got := e.wait("fused", ""); got != 4 {
			t.Errorf("exit status %d, want 4", got)
		}
		if _, err := c.StartContainer(ctx, &api.StartContainerRequest{ContainerId: "fused"}); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("start after a create that started: %v", err)
		}
		e.remove("fused", false)

		_, err = c.CreateContainer(ctx, &api.CreateContainerRequest{ContainerId: "fused2",
			Spec: e.spec("fused2", "true"), Sandbox: &api.CreateSandboxRequest{}, Start: true})
		if status.Code(err) != codes.AlreadyExists {
			t.Errorf("second sandbox set-up: %v", err)
		}
		if _, err := c.StartContainer(ctx, &api.StartContainerRequest{ContainerId: "fused2"}); status.Code(err) != codes.NotFound {
			t.Errorf("the container of a failed set-up: %v", err)
		}
	})

	// Read-only remounts (readonlyPaths, the read-only root) keep each
	// mount's atime mode, strictatime included, as runc's do.
	t.Run("atime", func(t *testing.T) {
		out := e.open("atime", "", api.StreamHeader_STDOUT)
		spec := e.specWith("atime", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts,
				specs.Mount{Destination: "/strict", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime"}},
				specs.Mount{Destination: "/noatime", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "noatime"}})
			s.Linux.ReadonlyPaths = append(s.Linux.ReadonlyPaths, "/strict", "/noatime")
		}, "cat", "/proc/self/mounts")
		if _, err := c.CreateContainer(ctx, &api.CreateContainerRequest{ContainerId: "atime", Spec: spec, Stdio: &api.Stdio{Stdout: true}}); err != nil {
			t.Fatal(err)
		}
		defer e.remove("atime", false)
		if _, err := c.StartContainer(ctx, &api.StartContainerRequest{ContainerId: "atime"}); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(out)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.wait("atime", ""); got != 0 {
			t.Fatalf("exit status %d: %s", got, b)
		}
		opts := map[string][]string{}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 4 {
				opts[f[1]] = strings.Split(f[3], ",")
			}
		}
		for _, c := range []struct {
			dir        string
			want, none []string
		}{
			{"/strict", []string{"ro"}, []string{"relatime", "noatime"}},
			{"/noatime", []string{"ro", "noatime"}, []string{"relatime"}},
			{"/", []string{"ro"}, nil},
		} {
			o, ok := opts[c.dir]
			if !ok {
				t.Errorf("%s not mounted: %s", c.dir, b)
				continue
			}
			for _, w := range c.want {
				if !slices.Contains(o, w) {
					t.Errorf("%s: options %v lack %s", c.dir, o, w)
				}
			}
			for _, n := range c.none {
				if slices.Contains(o, n) {
					t.Errorf("%s: options %v have %s", c.dir, o, n)
				}
			}
		}
	})

	// The image's /etc/passwd, read for HOME as root before the
	// container's limits apply, is read only as a regular file: a FIFO
	// there must not hang the creation (nor a device feed it for ever).
	t.Run("passwd-fifo", func(t *testing.T) {
		passwd := filepath.Join(e.rootfs, "etc", "passwd")
		must(t, unix.Mkfifo(passwd, 0o644))
		defer os.Remove(passwd)
		out := e.open("pwfifo", "", api.StreamHeader_STDOUT)
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if _, err := c.CreateContainer(cctx, &api.CreateContainerRequest{ContainerId: "pwfifo",
			Spec: e.spec("pwfifo", "sh", "-c", "echo $HOME"), Stdio: &api.Stdio{Stdout: true}}); err != nil {
			t.Fatal(err)
		}
		defer e.remove("pwfifo", false)
		if _, err := c.StartContainer(ctx, &api.StartContainerRequest{ContainerId: "pwfifo"}); err != nil {
			t.Fatal(err)
		}
		if b, err := io.ReadAll(out); err != nil || string(b) != "/\n" {
			t.Errorf("HOME %q, %v; want /", b, err)
		}
		e.wait("pwfifo", "")
	})

	// Without a procfs in the spec, /proc/sys/kernel/cap_last_cap is the
	// image's file: it must not decide which capabilities leave the
	// bounding set.
	t.Run("bounding-without-proc", func(t *testing.T) {
		kernel := filepath.Join(e.rootfs, "proc", "sys", "kernel")
		must(t, os.MkdirAll(kernel, 0o755))
		defer os.RemoveAll(filepath.Join(e.rootfs, "proc", "sys"))
		must(t, os.WriteFile(filepath.Join(kernel, "cap_last_cap"), []byte("0\n"), 0o644))
		var want uint64
		spec := e.specWith("noproc", func(s *specs.Spec) {
			var ms []specs.Mount
			for _, m := range s.Mounts {
				if m.Destination != "/proc" {
					ms = append(ms, m)
				}
			}
			s.Mounts = ms
			s.Linux.MaskedPaths, s.Linux.ReadonlyPaths = nil, nil
			bits := map[string]uint{"CAP_KILL": 5, "CAP_NET_BIND_SERVICE": 10, "CAP_AUDIT_WRITE": 29}
			for _, name := range s.Process.Capabilities.Bounding {
				b, ok := bits[name]
				if !ok {
					t.Fatalf("the example spec's bounding set has %s: update the test", name)
				}
				want |= 1 << b
			}
		}, "sleep", "100")
		r, err := c.CreateContainer(ctx, &api.CreateContainerRequest{ContainerId: "noproc", Spec: spec})
		if err != nil {
			t.Fatal(err)
		}
		defer e.remove("noproc", true)
		if _, err := c.StartContainer(ctx, &api.StartContainerRequest{ContainerId: "noproc"}); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", r.Pid))
		must(t, err)
		var bnd uint64
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
				bnd, err = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
				must(t, err)
			}
		}
		if bnd != want {
			t.Errorf("bounding set %#x, want %#x", bnd, want)
		}
	})

	if _, err := c.CreateContainer(ctx, &api.CreateContainerRequest{ContainerId: "box", Spec: e.spec("box", "sleep", "100")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartContainer(ctx, &api.StartContainerRequest{ContainerId: "box"}); err != nil {
		t.Fatal(err)
	}

	t.Run("exec", func(t *testing.T) {
		in := e.open("box", "cat", api.StreamHeader_STDIN)
		out := e.open("box", "cat", api.StreamHeader_STDOUT)
		errs := e.open("box", "cat", api.StreamHeader_STDERR)
		if _, err := c.ExecProcess(ctx, &api.ExecProcessRequest{ContainerId: "box", ExecId: "cat",
			Process: e.process(false, "sh", "-c", "cat; echo oops >&2; exit 5"), Stdio: &api.Stdio{Stdin: true, Stdout: true, Stderr: true}}); err != nil {
			t.Fatal(err)
		}
		in.Write([]byte("data\n"))
		in.Close()
		b, _ := io.ReadAll(out)
		eb, _ := io.ReadAll(errs)
		if string(b) != "data\n" || string(eb) != "oops\n" {
			t.Errorf("stdout %q, stderr %q", b, eb)
		}
		if got := e.wait("box", "cat"); got != 5 {
			t.Errorf("exit status %d, want 5", got)
		}
		_, err := c.ExecProcess(ctx, &api.ExecProcessRequest{ContainerId: "box", ExecId: "cat", Process: e.process(false, "true")})
		if status.Code(err) != codes.AlreadyExists {
			t.Errorf("same exec id again: %v", err)
		}
	})

	t.Run("closestdin", func(t *testing.T) {
		in := e.open("box", "cs", api.StreamHeader_STDIN)
		out := e.open("box", "cs", api.StreamHeader_STDOUT)
		if _, err := c.ExecProcess(ctx, &api.ExecProcessRequest{ContainerId: "box", ExecId: "cs",
			Process: e.process(false, "cat"), Stdio: &api.Stdio{Stdin: true, Stdout: true}}); err != nil {
			t.Fatal(err)
		}
		in.Write([]byte("x"))
		buf := make([]byte, 1)
		io.ReadFull(out, buf)
		if _, err := c.CloseStdin(ctx, &api.CloseStdinRequest{ContainerId: "box", ExecId: "cs"}); err != nil {
			t.Fatal(err)
		}
		if got := e.wait("box", "cs"); got != 0 {
			t.Errorf("exit status %d, want 0", got)
		}
	})

	t.Run("signal", func(t *testing.T) {
		if _, err := c.ExecProcess(ctx, &api.ExecProcessRequest{ContainerId: "box", ExecId: "sleep",
			Process: e.process(false, "sleep", "100")}); err != nil {
			t.Fatal(err)
		}
		// Many waiters get the same answer.
		got := make(chan int, 3)
		for range 3 {
			go func() {
				r, err := c.WaitProcess(ctx, &api.WaitProcessRequest{ContainerId: "box", ExecId: "sleep"})
				if err != nil {
					t.Error(err)
				}
				got <- int(r.GetExitStatus())
			}()
		}
		time.Sleep(100 * time.Millisecond)
		if _, err := c.SignalProcess(ctx, &api.SignalProcessRequest{ContainerId: "box", ExecId: "sleep", Signal: uint32(unix.SIGTERM)}); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if s := <-got; s != 143 {
				t.Errorf("exit status %d, want 143", s)
			}
		}
		_, err := c.SignalProcess(ctx, &api.SignalProcessRequest{ContainerId: "box", ExecId: "sleep", Signal: uint32(unix.SIGTERM)})
		if status.Code(err) != codes.NotFound {
			t.Errorf("signal to an exited process: %v", err)
		}
	})

	t.Run("tty", func(t *testing.T) {
		in := e.open("box", "tty", api.StreamHeader_STDIN)
		out := e.open("box", "tty", api.StreamHeader_STDOUT)
		if _, err := c.ExecProcess(ctx, &api.ExecProcessRequest{ContainerId: "box", ExecId: "tty",
			Process: e.process(true, "sh", "-c", "read x; stty size; exit 7"), Stdio: &api.Stdio{Terminal: true, Stdin: true, Stdout: true}}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ResizePty(ctx, &api.ResizePtyRequest{ContainerId: "box", ExecId: "tty", Width: 123, Height: 45}); err != nil {
			t.Fatal(err)
		}
		in.Write([]byte("go\n"))
		b, _ := io.ReadAll(out)
		if !strings.Contains(string(b), "45 123") {
			t.Errorf("tty output %q, want the size 45 123", b)
		}
		if got := e.wait("box", "tty"); got != 7 {
			t.Errorf("exit status %d, want 7", got)
		}
		_, err := c.ResizePty(ctx, &api.ResizePtyRequest{ContainerId: "box", ExecId: "cat", Width: 1, Height: 1})
		if code := status.Code(err); code != codes.NotFound && code != codes.FailedPrecondition {
			t.Errorf("resize without a terminal: %v", err)
		}
	})

	t.Run("list", func(t *testing.T) {
		r, err := c.ListProcesses(ctx, &api.ListProcessesRequest{ContainerId: "box"})
		if err != nil || len(r.Pids) == 0 {
			t.Errorf("ListProcesses = %v, %v", r, err)
		}
	})

	t.Run("backpressure", func(t *testing.T) { e.backpressure() })

	t.Run("errors", func(t *testing.T) {
		for name, tc := range map[string]struct {
			req  *api.CreateContainerRequest
			code codes.Code
		}{
			"bad id":      {&api.CreateContainerRequest{ContainerId: "-x", Spec: e.spec("x", "true")}, codes.InvalidArgument},
			"long id":     {&api.CreateContainerRequest{ContainerId: strings.Repeat("a", 65), Spec: e.spec("x", "true")}, codes.InvalidArgument},
			"no args":     {&api.CreateContainerRequest{ContainerId: "x", Spec: e.spec("x")}, codes.InvalidArgument},
			"huge spec":   {&api.CreateContainerRequest{ContainerId: "x", Spec: bytes.Repeat([]byte(" "), 1<<20+1)}, codes.InvalidArgument},
			"bad json":    {&api.CreateContainerRequest{ContainerId: "x", Spec: []byte("{")}, codes.InvalidArgument},
			"exists":      {&api.CreateContainerRequest{ContainerId: "box", Spec: e.spec("box", "true")}, codes.AlreadyExists},
			"tty differs": {&api.CreateContainerRequest{ContainerId: "x", Spec: e.spec("x", "true"), Stdio: &api.Stdio{Terminal: true}}, codes.InvalidArgument},
		} {
			if _, err := c.CreateContainer(ctx, tc.req); status.Code(err) != tc.code {
				t.Errorf("%s: %v, want %s", name, err, tc.code)
			}
		}
		if _, err := c.StartContainer(ctx, &api.StartContainerRequest{ContainerId: "nope"}); status.Code(err) != codes.NotFound {
			t.Errorf("start unknown: %v", err)
		}
		if _, err := c.WaitProcess(ctx, &api.WaitProcessRequest{ContainerId: "box", ExecId: "nope"}); status.Code(err) != codes.NotFound {
			t.Errorf("wait unknown exec: %v", err)
		}
		if _, err := c.RemoveContainer(ctx, &api.RemoveContainerRequest{ContainerId: "box"}); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("remove running without force: %v", err)
		}
	})

	// hull-init words errno as Go does (callers match the words), also
	// where its C library's own text differs (musl: "Symbolic link loop").
	t.Run("errno words", func(t *testing.T) {
		must(t, os.Symlink("looping", filepath.Join(e.rootfs, "looping")))
		defer os.Remove(filepath.Join(e.rootfs, "looping"))
		spec := e.specWith("loop", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/looping/x", Type: "tmpfs", Source: "tmpfs"})
		}, "true")
		_, err := c.CreateContainer(ctx, &api.CreateContainerRequest{ContainerId: "loop", Spec: spec, Start: true})
		if err == nil {
			e.remove("loop", true)
			t.Fatal("a mount below a symlink loop was made")
		}
		if !strings.Contains(err.Error(), "too many levels of symbolic links") {
			t.Errorf("error %q does not say %q", err, "too many levels of symbolic links")
		}
		if _, err := c.StartContainer(ctx, &api.StartContainerRequest{ContainerId: "loop"}); status.Code(err) != codes.NotFound {
			t.Errorf("the container whose start failed is still there: %v", err)
		}
	})

	e.remove("box", true)
	if _, err := c.ListProcesses(ctx, &api.ListProcessesRequest{ContainerId: "box"}); status.Code(err) != codes.NotFound {
		t.Errorf("ListProcesses after remove: %v", err)
	}

	t.Run("created-then-removed", func(t *testing.T) {
		if _, err := c.CreateContainer(ctx, &api.CreateContainerRequest{ContainerId: "idle", Spec: e.spec("idle", "true")}); err != nil {
			t.Fatal(err)
		}
		e.remove("idle", false)
	})

	if z := zombies(e.agentPid); len(z) > 0 {
		t.Errorf("zombie children of the agent: %v", z)
	}
}

// backpressure: a process writes 64 MiB to a reader that is slow; the
// agent must hold no more than its windows, lose nothing, and answer
// WaitProcess only once the output is out.
func (e *e2e) backpressure() {
	t, c, ctx := e.t, e.client, e.ctx
	const total = 64 << 20
	out := e.open("box", "flood", api.StreamHeader_STDOUT)
	rss0 := vmRSS(t, e.agentPid)
	if _, err := c.ExecProcess(ctx, &api.ExecProcessRequest{ContainerId: "box", ExecId: "flood",
		Process: e.process(false, "head", "-c", strconv.Itoa(total), "/dev/zero"), Stdio: &api.Stdio{Stdout: true}}); err != nil {
		t.Fatal(err)
	}
	var read atomic.Int64
	waited := make(chan int64, 1)
	go func() {
		if got := e.wait("box", "flood"); got != 0 {
			t.Errorf("exit status %d", got)
		}
		waited <- read.Load()
	}()
	// Not reading: the process must block, and WaitProcess not answer.
	time.Sleep(time.Second)
	select {
	case <-waited:
		t.Fatal("WaitProcess answered before the output was read")
	default:
	}
	var maxRSS int64
	buf := make([]byte, 64<<10)
	r := bufio.NewReaderSize(out, 1)
	for i := 0; ; i++ {
		n, err := r.Read(buf)
		read.Add(int64(n))
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if i%64 == 0 {
			maxRSS = max(maxRSS, vmRSS(t, e.agentPid))
			time.Sleep(2 * time.Millisecond)
		}
	}
	if n := read.Load(); n != total {
		t.Errorf("read %d bytes, want %d", n, total)
	}
	select {
	case atWait := <-waited:
		// At the answer, what the host had not read yet was at most one
		// window in flight.
		if total-atWait > 1<<20+128<<10 {
			t.Errorf("WaitProcess answered with %d bytes not yet arrived", total-atWait)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitProcess did not answer after the output ended")
	}
	t.Logf("agent RSS %d KiB before, at most %d KiB while copying %d MiB", rss0>>10, maxRSS>>10, total>>20)
	if maxRSS-rss0 > 8<<20 {
		t.Errorf("agent RSS grew by %d KiB", (maxRSS-rss0)>>10)
	}
}

func vmRSS(t *testing.T, pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	must(t, err)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// zombies lists the children of pid that are zombies.
func zombies(pid int) []int {
	var z []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) > 1 && f[0] == "Z" && f[1] == strconv.Itoa(pid) {
			n, _ := strconv.Atoi(e.Name())
			z = append(z, n)
		}
	}
	return z
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

type logWriter struct{ t *testing.T }

func (w *logWriter) Write(b []byte) (int, error) {
	w.t.Logf("agent: %s", bytes.TrimRight(b, "\n"))
	return len(b), nil
}
