// Package containerd runs private containerd daemons for tests: the
// Debian containerd (/usr/bin/containerd) with its CRI plugin, runtimes
// runc (io.containerd.runc.v2) and hull (io.containerd.hull.v2, the shim
// found first on containerd's PATH), and a CNI network of its own (a
// private bridge and subnet, Debian's plugins in /usr/lib/cni).
//
// Nothing is shared with a system containerd: config, root, state, sockets,
// CNI configuration and IPAM state all live in one directory per daemon,
// pod network namespaces included (netns_mounts_under_state_dir). Cleanup
// removes what is left: pods, containers and tasks (crictl, ctr), the
// daemon, stray shims of this daemon, mounts under its directory, the
// bridge, then the directory.
//
// Images come from Go, not a registry (images.go, testimages.go): an Image
// is written as an OCI image-layout tarball and imported with ctr under an
// exact reference, e.g. the names critest asks for.
//
// Start wraps Launch for tests (cleanup on t.Cleanup, the daemon's log on
// failure); Launch and Close serve callers without a testing.T.
package containerd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Binaries the harness drives.
const (
	ContainerdBin = "/usr/bin/containerd"
	CtrBin        = "/usr/bin/ctr"
	// K8sNamespace is the containerd namespace of the CRI plugin.
	K8sNamespace = "k8s.io"
)

// Options configure a daemon. The zero value is a daemon whose CRI default
// runtime is runc.
type Options struct {
	// DefaultRuntime is the CRI's default runtime handler: "runc" (the
	// default) or "hull". Either can be asked for per pod.
	DefaultRuntime string
	// ShimDir is put first on containerd's PATH, so that it finds
	// containerd-shim-hull-v2 there. Default: the directory of
	// $HULL_SHIM_BIN, else the repository's bin/.
	ShimDir string
	// SandboxImage is the CRI's pause image. Default PauseImage, which
	// the caller must import (Images, or Import).
	SandboxImage string
	// Images are imported into the k8s.io namespace once the daemon runs.
	Images []Image
	// Env is added to the environment of containerd, and so of its
	// shims (HULL_CONFIG=..., for one).
	Env []string
	// LogLevel of containerd: "info" by default, "debug" with
	// HULL_CONTAINERD_DEBUG=1.
	LogLevel string
	// HullRuntimeOptions become the hull runtime's options table (the
	// shim receives them with each create), values as TOML strings.
	HullRuntimeOptions map[string]string
	// ExtraConfig is TOML appended to the generated config.
	ExtraConfig string
	// Dir is the daemon's directory. Default: a fresh one under
	// os.TempDir(), short enough for unix socket paths.
	Dir string
}

// Daemon is one running (or stopped) private containerd.
type Daemon struct {
	// Address is containerd's gRPC socket (a path; unix://Address for CRI
	// clients).
	Address string
	// Dir holds everything of this daemon: Root, State, ConfigPath,
	// LogPath, the CNI config, IPAM state.
	Dir, Root, State, ConfigPath, LogPath string
	// Bridge, Network, Subnet, Gateway describe the pod network. Pods reach
	// the host at Gateway, the bridge's address.
	Bridge, Network string
	Subnet          *net.IPNet
	Gateway         net.IP
	// CrictlConfig is a crictl config file pointing at this daemon.
	CrictlConfig string

	opts       Options
	env        []string
	cniConfDir string
	madeDir    bool
	bridgeMade bool

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
}

// Launch starts a daemon and waits until its CRI plugin is up. On error
// nothing of it is left.
func Launch(ctx context.Context, opts Options) (d *Daemon, err error) {
	if opts.DefaultRuntime == "" {
		opts.DefaultRuntime = "runc"
	}
	if opts.SandboxImage == "" {
		opts.SandboxImage = PauseImage
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "info"
		if os.Getenv("HULL_CONTAINERD_DEBUG") == "1" {
			opts.LogLevel = "debug"
		}
	}
	if opts.ShimDir == "" {
		if opts.ShimDir, err = defaultShimDir(); err != nil {
			return nil, err
		}
	}
	d = &Daemon{opts: opts}
	if opts.Dir == "" {
		if d.Dir, err = os.MkdirTemp("", "hullctrd-"); err != nil {
			return nil, fmt.Errorf("daemon dir: %w", err)
		}
		d.madeDir = true
	} else {
		d.Dir = opts.Dir
		if err := os.MkdirAll(d.Dir, 0o711); err != nil {
			return nil, fmt.Errorf("daemon dir: %w", err)
		}
	}
	defer func() {
		if err != nil {
			if cerr := d.Close(); cerr != nil {
				err = fmt.Errorf("%w (and cleaning up: %v)", err, cerr)
			}
			d = nil
		}
	}()
	d.Root = filepath.Join(d.Dir, "root")
	d.State = filepath.Join(d.Dir, "state")
	d.Address = filepath.Join(d.Dir, "containerd.sock")
	d.ConfigPath = filepath.Join(d.Dir, "config.toml")
	d.LogPath = filepath.Join(d.Dir, "containerd.log")
	d.CrictlConfig = filepath.Join(d.Dir, "crictl.yaml")
	d.cniConfDir = filepath.Join(d.Dir, "cni")

	if err := d.setupBridge(); err != nil {
		return d, err
	}
	conflist, err := d.cniConflist()
	if err != nil {
		return d, err
	}
	if err := writeFile(filepath.Join(d.cniConfDir, "10-"+d.Network+".conflist"), conflist); err != nil {
		return d, fmt.Errorf("write cni config: %w", err)
	}
	if err := writeFile(d.ConfigPath, []byte(d.configTOML(opts))); err != nil {
		return d, fmt.Errorf("write containerd config: %w", err)
	}
	ep := "unix://" + d.Address
	crictlYAML := fmt.Sprintf("runtime-endpoint: %s\nimage-endpoint: %s\ntimeout: 60\n", ep, ep)
	if err := writeFile(d.CrictlConfig, []byte(crictlYAML)); err != nil {
		return d, fmt.Errorf("write crictl config: %w", err)
	}

	// The shim directory first: containerd resolves runtime type
	// io.containerd.hull.v2 to containerd-shim-hull-v2 on its PATH.
	d.env = append(withoutKey(os.Environ(), "PATH"),
		"PATH="+opts.ShimDir+":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	d.env = append(d.env, opts.Env...)

	if err := d.start(ctx); err != nil {
		return d, err
	}
	for _, img := range opts.Images {
		if err := d.ImportImage(ctx, img); err != nil {
			return d, err
		}
	}
	return d, nil
}

// Start is Launch for tests: it skips (fails under HULL_INTEGRATION=1)
// where the host cannot run it, fails the test on error, and registers
// Close as a cleanup, logging the daemon's log when the test failed.
func Start(t testing.TB, opts Options) *Daemon {
	t.Helper()
	Require(t)
	d, err := Launch(t.Context(), opts)
	if err != nil {
		t.Fatalf("start containerd: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("containerd log (%s), last lines:\n%s", d.LogPath, tail(d.LogPath, 60))
		}
		if err := d.Close(); err != nil {
			t.Errorf("containerd cleanup: %v", err)
		}
	})
	return d
}

// Require skips the test, or fails it under HULL_INTEGRATION=1, unless the
// host can run a daemon: root, containerd, ctr and the CNI plugins.
func Require(t testing.TB) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, p := range []string{ContainerdBin, CtrBin, filepath.Join(cniBinDir, "bridge"), filepath.Join(cniBinDir, "host-local"), filepath.Join(cniBinDir, "portmap"), filepath.Join(cniBinDir, "loopback")} {
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, p+" (apt-get install containerd containernetworking-plugins)")
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "containerd harness needs " + strings.Join(missing, ", ")
	if os.Getenv("HULL_INTEGRATION") == "1" {
		t.Fatalf("prerequisite missing: %s", msg)
	}
	t.Skip(msg)
}

// start runs containerd and waits until its CRI plugin has loaded.
func (d *Daemon) start(ctx context.Context) error {
	logf, err := os.OpenFile(d.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("containerd log: %w", err)
	}
	defer logf.Close() // the child has its own descriptor
	// Not CommandContext: the daemon outlives the context of the call
	// that starts it; Stop and Close end it.
	cmd := exec.Command(ContainerdBin, "--config", d.ConfigPath)
	cmd.Env = d.env
	cmd.Stdout = logf
	cmd.Stderr = logf
	// Its own process group: a ^C meant for the test does not kill it
	// before the cleanup that needs it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start containerd: %w", err)
	}
	exited := make(chan struct{})
	d.mu.Lock()
	d.cmd, d.exited, d.waitErr = cmd, exited, nil
	d.mu.Unlock()
	go func() {
		err := cmd.Wait()
		d.mu.Lock()
		d.waitErr = err
		d.mu.Unlock()
		close(exited)
	}()
	return d.waitReady(ctx, exited)
}

// waitReady polls until containerd answers and lists the CRI plugin as
// loaded: a config the CRI plugin rejects leaves containerd running
// without it.
func (d *Daemon) waitReady(ctx context.Context, exited chan struct{}) error {
	deadline := time.Now().Add(60 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("containerd exited at start (%v); log:\n%s", d.waitErr, tail(d.LogPath, 30))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if _, err := os.Stat(d.Address); err != nil {
			last = err
			continue
		}
		out, err := d.run(ctx, 10*time.Second, CtrBin, d.ctrArgs("plugins", "ls")...)
		if err != nil {
			last = err
			continue
		}
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && f[0] == "io.containerd.grpc.v1" && f[1] == "cri" {
				if f[len(f)-1] != "ok" {
					return fmt.Errorf("containerd's CRI plugin did not load (%s); log:\n%s", line, tail(d.LogPath, 30))
				}
				return nil
			}
		}
		last = errors.New("CRI plugin not listed yet")
	}
	return fmt.Errorf("containerd not ready after 60s: %v; log:\n%s", last, tail(d.LogPath, 30))
}

// Running reports whether the containerd process is alive.
func (d *Daemon) Running() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		return false
	}
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

// Pid is the containerd process's pid, 0 when it was never started.
func (d *Daemon) Pid() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil || d.cmd.Process == nil {
		return 0
	}
	return d.cmd.Process.Pid
}

// Stop ends containerd: SIGTERM, then SIGKILL after 10 s. Shims and their
// containers keep running, as they do when containerd restarts.
func (d *Daemon) Stop() error {
	d.mu.Lock()
	cmd, exited := d.cmd, d.exited
	d.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-exited:
		return nil
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return nil
	case <-time.After(10 * time.Second):
	}
	_ = cmd.Process.Kill()
	select {
	case <-exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("containerd (pid %d) did not exit after SIGKILL", cmd.Process.Pid)
	}
}

// Restart stops containerd and starts it again with the same config and
// state; running shims and their containers carry on, and containerd
// reconnects to them.
func (d *Daemon) Restart(t testing.TB) {
	t.Helper()
	if err := d.Stop(); err != nil {
		t.Fatalf("restart containerd: %v", err)
	}
	if err := d.start(t.Context()); err != nil {
		t.Fatalf("restart containerd: %v", err)
	}
}

func (d *Daemon) ctrArgs(args ...string) []string {
	return append([]string{"--address", d.Address}, args...)
}

// CtrContext runs ctr against this daemon and returns its stdout; a
// failure's error carries stderr. Name a namespace with "-n", k8s.io for
// what the CRI made (ctr's default namespace is "default").
func (d *Daemon) CtrContext(ctx context.Context, args ...string) (string, error) {
	return d.run(ctx, 2*time.Minute, CtrBin, d.ctrArgs(args...)...)
}

// Ctr is CtrContext for tests, logging the command.
func (d *Daemon) Ctr(t testing.TB, args ...string) (string, error) {
	t.Helper()
	t.Logf("ctr %s", strings.Join(args, " "))
	return d.CtrContext(t.Context(), args...)
}

// CrictlContext runs crictl (CrictlPath) against this daemon and returns
// its stdout; a failure's error carries stderr.
func (d *Daemon) CrictlContext(ctx context.Context, args ...string) (string, error) {
	crictl, err := CrictlPath(ctx)
	if err != nil {
		return "", err
	}
	return d.run(ctx, 3*time.Minute, crictl, append([]string{"--config", d.CrictlConfig}, args...)...)
}

// Crictl is CrictlContext for tests, logging the command.
func (d *Daemon) Crictl(t testing.TB, args ...string) (string, error) {
	t.Helper()
	t.Logf("crictl %s", strings.Join(args, " "))
	return d.CrictlContext(t.Context(), args...)
}

// run runs a client binary with a time limit.
func (d *Daemon) run(ctx context.Context, limit time.Duration, bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = d.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w: %s", filepath.Base(bin), strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Close removes everything of the daemon: pods, containers and tasks (when
// containerd still runs), containerd itself, shims of this daemon still
// running, mounts under Dir, the bridge, and Dir (if Launch made it). It
// goes on after errors and returns them all.
func (d *Daemon) Close() error {
	// A fresh context: the caller's (a test's) is often already done.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var errs []error
	if d.Running() {
		errs = append(errs, d.removeAll(ctx)...)
	}
	if err := d.Stop(); err != nil {
		errs = append(errs, err)
	}
	if pids := d.shimPids(); len(pids) > 0 {
		// A shim whose task could not be deleted: end it, and say so.
		for _, pid := range pids {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		errs = append(errs, fmt.Errorf("shims still running after cleanup, killed: %v", pids))
	}
	if err := d.unmountAll(); err != nil {
		errs = append(errs, err)
	}
	if err := d.removeBridge(); err != nil {
		errs = append(errs, err)
	}
	if d.madeDir && d.Dir != "" {
		if m := mountsUnder(d.Dir); len(m) > 0 {
			errs = append(errs, fmt.Errorf("not removing %s: still mounted: %v", d.Dir, m))
		} else if err := os.RemoveAll(d.Dir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", d.Dir, err))
		}
	}
	return errors.Join(errs...)
}

// removeAll deletes, through the APIs, every pod (with its containers),
// then every remaining task and container in every namespace.
func (d *Daemon) removeAll(ctx context.Context) []error {
	var errs []error
	if _, err := CrictlPath(ctx); err == nil {
		if out, err := d.CrictlContext(ctx, "pods", "-q"); err == nil && strings.TrimSpace(out) != "" {
			if _, err := d.CrictlContext(ctx, "rmp", "--force", "--all"); err != nil {
				errs = append(errs, err)
			}
		}
	}
	nsOut, err := d.CtrContext(ctx, "namespaces", "ls", "-q")
	if err != nil {
		return append(errs, err)
	}
	for _, ns := range strings.Fields(nsOut) {
		tasks, err := d.CtrContext(ctx, "-n", ns, "tasks", "ls", "-q")
		if err != nil {
			errs = append(errs, err)
		}
		for _, id := range strings.Fields(tasks) {
			_, _ = d.CtrContext(ctx, "-n", ns, "tasks", "kill", "-a", "-s", "SIGKILL", id)
			if _, err := d.CtrContext(ctx, "-n", ns, "tasks", "delete", "-f", id); err != nil {
				errs = append(errs, err)
			}
		}
		ctrs, err := d.CtrContext(ctx, "-n", ns, "containers", "ls", "-q")
		if err != nil {
			errs = append(errs, err)
		}
		for _, id := range strings.Fields(ctrs) {
			if _, err := d.CtrContext(ctx, "-n", ns, "containers", "delete", id); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errs
}

// shimPids lists the shims of this daemon still running: shims get
// containerd's address as -address.
func (d *Daemon) shimPids() []int {
	var pids []int
	for _, p := range Processes() {
		if addr, ok := p.Arg("-address"); ok && addr == d.Address && strings.HasPrefix(p.Name(), "containerd-shim") {
			pids = append(pids, p.Pid)
		}
	}
	return pids
}

// unmountAll unmounts everything under Dir, deepest first, without
// following symlinks (a container could have planted one), lazily if
// busy; mounts of pod network namespaces included.
func (d *Daemon) unmountAll() error {
	if d.Dir == "" {
		return nil
	}
	var errs []error
	for range 3 {
		mnts := mountsUnder(d.Dir)
		if len(mnts) == 0 {
			return nil
		}
		errs = errs[:0]
		for _, m := range mnts {
			if err := unix.Unmount(m, unix.UMOUNT_NOFOLLOW); err != nil {
				if err := unix.Unmount(m, unix.UMOUNT_NOFOLLOW|unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
					errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
				}
			}
		}
	}
	if m := mountsUnder(d.Dir); len(m) > 0 {
		return fmt.Errorf("still mounted under %s: %v (%w)", d.Dir, m, errors.Join(errs...))
	}
	return nil
}

// mountsUnder lists the mount points under dir in /proc/self/mounts,
// deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return nil
	}
	defer f.Close()
	prefix := strings.TrimSuffix(dir, "/") + "/"
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		// /proc/mounts escapes space, tab, newline and backslash as octal.
		mp := unescapeMount(fields[1])
		if strings.HasPrefix(mp, prefix) {
			out = append(out, mp)
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(out)))
	return out
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func withoutKey(env []string, key string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
