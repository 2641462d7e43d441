package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// ConsoleLog is the name of the console log file in Config.RunDir.
const ConsoleLog = "console.log"

// maxStderr bounds what is kept of QEMU's own error output for messages.
const maxStderr = 16 << 10

// VM is a running QEMU process. Its methods are safe for concurrent use.
type VM struct {
	cfg   Config // immutable after Start
	cmd   *exec.Cmd
	qmp   *qmp
	ports map[string]net.Conn // immutable after Start

	done    chan struct{} // closed when QEMU has exited and been reaped
	waitErr error         // valid after done is closed
	stderr  *boundedBuffer
	console sync.WaitGroup // the console copier

	trimMu sync.Mutex // held by a trim and by the release of jit
	jit    *jitCache  // the translation cache, when in a memfd; set by Start

	stopOnce sync.Once
}

// Start runs QEMU with cfg and returns once QEMU answers QMP, that is once
// it has parsed its configuration and built the machine. On any error
// nothing is left: no process, no run directory.
func Start(ctx context.Context, cfg Config) (_ *VM, retErr error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	for _, f := range []string{cfg.Binary, cfg.Kernel, cfg.Initrd} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("vm %s: %w: %w", cfg.Name, err, errdefs.ErrNotFound)
		}
	}
	if err := os.Mkdir(cfg.RunDir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("vm %s: run dir: %w", cfg.Name, err)
	}
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
		if retErr != nil {
			removeRunDir(cfg.RunDir)
		}
	}()

	// Each channel is a socketpair: the host keeps one end, QEMU inherits
	// the other as a connected chardev socket.
	pair := func() (net.Conn, *os.File, error) {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, nil, fmt.Errorf("socketpair: %w", err)
		}
		host := os.NewFile(uintptr(fds[0]), "host")
		child := os.NewFile(uintptr(fds[1]), "qemu")
		conn, err := net.FileConn(host)
		host.Close()
		if err != nil {
			child.Close()
			return nil, nil, err
		}
		closers = append(closers, child)
		return conn, child, nil
	}
	vm := &VM{cfg: cfg, ports: map[string]net.Conn{}, done: make(chan struct{}), stderr: &boundedBuffer{max: maxStderr}}
	var hostConns []net.Conn
	defer func() {
		if retErr != nil {
			for _, c := range hostConns {
				c.Close()
			}
		}
	}()
	var extra []*os.File
	for range 2 + len(cfg.SerialPorts) {
		conn, child, err := pair()
		if err != nil {
			return nil, fmt.Errorf("vm %s: %w", cfg.Name, err)
		}
		hostConns = append(hostConns, conn)
		extra = append(extra, child)
	}
	for _, f := range cfg.FS {
		extra = append(extra, f.Conn)
	}
	for _, n := range cfg.Net {
		extra = append(extra, n.TapFile)
	}
	qmpConn, consoleConn := hostConns[0], hostConns[1]
	for i, name := range cfg.SerialPorts {
		vm.ports[name] = hostConns[2+i]
	}

	logFile, err := os.OpenFile(filepath.Join(cfg.RunDir, ConsoleLog), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("vm %s: console log: %w", cfg.Name, err)
	}

	cmd := exec.Command(cfg.Binary, cfg.Args()...)
	cmd.ExtraFiles = extra
	cmd.Env = qemuEnv(os.Environ())
	cmd.Stdin = nil
	cmd.Stdout = vm.stderr
	cmd.Stderr = vm.stderr
	// QEMU must not outlive the process that owns it: whoever cleans up
	// after a crash of that process finds no VM to chase.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	cmd.Dir = cfg.RunDir
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("vm %s: start %s: %w", cfg.Name, cfg.Binary, err)
	}
	vm.cmd = cmd
	noCore(cmd.Process.Pid)
	// QEMU holds its ends now; without closing ours, its death at start
	// would not show as EOF on the channels.
	for _, f := range extra {
		f.Close()
	}
	go func() {
		vm.waitErr = cmd.Wait()
		close(vm.done)
	}()
	vm.console.Add(1)
	go func() {
		defer vm.console.Done()
		defer logFile.Close()
		copyBounded(logFile, consoleConn, cfg.maxConsole())
	}()
	defer func() {
		if retErr != nil {
			vm.kill()
			consoleConn.Close()
			vm.console.Wait()
		}
	}()

	q, err := newQMP(ctx, qmpConn)
	if err != nil {
		select {
		case <-vm.done:
			return nil, fmt.Errorf("vm %s: qemu exited at start: %s: %w", cfg.Name, vm.stderrSummary(), errdefs.ErrFailedPrecondition)
		case <-time.After(200 * time.Millisecond):
		}
		return nil, fmt.Errorf("vm %s: %w", cfg.Name, err)
	}
	vm.qmp = q
	if cfg.Accel == TCG && cfg.TrimTCG && cfg.VCPUs == 1 {
		vm.startJIT(ctx)
	}
	return vm, nil
}

func (c *Config) maxConsole() int64 {
	if c.ConsoleLogMax > 0 {
		return c.ConsoleLogMax
	}
	return DefaultConsoleLogMax
}

// Pid returns QEMU's process id.
func (vm *VM) Pid() int { return vm.cmd.Process.Pid }

// Port returns the host end of a virtio-serial port named in Config.
func (vm *VM) Port(name string) (net.Conn, error) {
	c, ok := vm.ports[name]
	if !ok {
		return nil, fmt.Errorf("vm %s: no serial port %q: %w", vm.cfg.Name, name, errdefs.ErrNotFound)
	}
	return c, nil
}

// Done is closed when QEMU has exited.
func (vm *VM) Done() <-chan struct{} { return vm.done }

// ExitError describes how QEMU ended; only valid after Done is closed.
func (vm *VM) ExitError() error {
	select {
	case <-vm.done:
	default:
		return errors.New("still running")
	}
	if vm.waitErr != nil {
		return fmt.Errorf("%w: %s", vm.waitErr, vm.stderrSummary())
	}
	return nil
}

// ConsoleLogPath is the file that receives the guest console.
func (vm *VM) ConsoleLogPath() string { return filepath.Join(vm.cfg.RunDir, ConsoleLog) }

// Stop ends the VM in bounded steps: it waits up to grace for the VM to
// exit on its own (the caller has asked the guest to power off), then asks
// QEMU to quit, then kills it. It releases every host resource of the VM,
// including the run directory, and is safe to call more than once.
func (vm *VM) Stop(ctx context.Context, grace time.Duration) error {
	var err error
	vm.stopOnce.Do(func() { err = vm.stop(ctx, grace) })
	return err
}

// Kill ends the VM at once, for a guest with nothing left to lose (its
// agent has synced it): QEMU's orderly quit takes tens of milliseconds
// more. It releases what Stop releases.
func (vm *VM) Kill(ctx context.Context) error {
	var err error
	vm.stopOnce.Do(func() { err = vm.stop(ctx, -1) })
	return err
}

func (vm *VM) stop(ctx context.Context, grace time.Duration) error {
	logger := log.G(ctx).WithField("vm", vm.cfg.Name)
	how := "powered off"
	if grace < 0 {
		if !vm.waitFor(0) {
			how = "killed"
			vm.kill()
		}
	} else if !vm.waitFor(grace) {
		how = "quit"
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if _, err := vm.qmp.execute(qctx, "quit"); err != nil {
			logger.WithError(err).Debug("qmp quit")
		}
		cancel()
		if !vm.waitFor(3 * time.Second) {
			how = "killed"
			logger.Warn("qemu did not quit, killing it")
			vm.kill()
			<-vm.done
		}
	}
	logger.WithField("how", how).Debug("vm stopped")
	vm.qmp.conn.Close()
	for _, c := range vm.ports {
		c.Close()
	}
	vm.console.Wait()
	removeRunDir(vm.cfg.RunDir)
	return nil
}

func (vm *VM) waitFor(d time.Duration) bool {
	if d <= 0 {
		select {
		case <-vm.done:
			return true
		default:
			return false
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-vm.done:
		return true
	case <-t.C:
		return false
	}
}

func (vm *VM) kill() {
	_ = vm.cmd.Process.Signal(syscall.SIGKILL)
	<-vm.done
}

func (vm *VM) stderrSummary() string {
	s := strings.TrimSpace(vm.stderr.String())
	if s == "" {
		return "no error output"
	}
	return strings.ReplaceAll(s, "\n", "; ")
}

// removeRunDir removes only what the driver puts there, never a tree: a
// directory that unexpectedly holds something else is left for a human.
func removeRunDir(dir string) {
	_ = os.Remove(filepath.Join(dir, ConsoleLog))
	_ = os.Remove(filepath.Join(dir, GDBSocket))
	_ = os.Remove(dir)
}

// copyBounded drains r until EOF, keeping at most max bytes in w: the guest
// must never block on its console, nor fill the host's disk with it.
func copyBounded(w io.Writer, r io.Reader, max int64) {
	n, _ := io.Copy(w, io.LimitReader(r, max))
	if n >= max {
		fmt.Fprintf(w, "\n[hull: console log truncated at %d bytes]\n", max)
		_, _ = io.Copy(io.Discard, r)
	}
}

// boundedBuffer keeps the last max bytes written to it.
type boundedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if over := b.buf.Len() - b.max; over > 0 {
		b.buf.Next(over)
	}
	return len(p), nil
}

func (b *boundedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// qemuEnv is the environment QEMU runs with: the caller's, with glibc's
// malloc held to one arena. Each of QEMU's threads (main loop, vCPUs, RCU,
// I/O workers) otherwise gets an arena of its own whose freed pages stay
// resident: 0.3 to 1.3 MiB of every idle VM, with no loss in bench-run's
// latency or stdout throughput.
func qemuEnv(env []string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, "MALLOC_ARENA_MAX=") {
			out = append(out, kv)
		}
	}
	return append(out, "MALLOC_ARENA_MAX=1")
}

// noCore sets pid's core dump size to 0: QEMU maps the guest's memory, and
// a crash the guest may cause must not leave it on the host's disk (the
// machine's dump-guest-core=off covers the guest's RAM; this, all the
// rest). Best effort: a process already gone has nothing to dump.
func noCore(pid int) {
	_ = unix.Prlimit(pid, unix.RLIMIT_CORE, &unix.Rlimit{}, nil)
}
