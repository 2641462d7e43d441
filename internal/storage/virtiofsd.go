// Package storage shares host directories with a sandbox VM: one virtiofsd
// per sandbox serves a per-sandbox directory, and each container's rootfs
// and bind mounts are mounted below it (read-only where the spec says so,
// enforced on the host). It knows nothing of QEMU beyond handing over the
// connected vhost-user socket.
package storage

import (
	"context"
	"fmt"
	"golang.org/x/sys/unix"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
)

// DefaultVirtiofsd is Debian's virtiofsd (package qemu-system-common).
const DefaultVirtiofsd = "/usr/lib/qemu/virtiofsd"

// VirtiofsdSocket is the name, in VirtiofsdConfig.RunDir, of the
// vhost-user socket for the moment StartVirtiofsd needs it.
const VirtiofsdSocket = "virtiofsd.sock"

// VirtiofsdConfig describes one virtiofsd.
type VirtiofsdConfig struct {
	// Binary is virtiofsd's absolute path.
	Binary string
	// SharedDir is the directory the guest sees.
	SharedDir string
	// RunDir is a private directory where the vhost-user socket exists for
	// the moment it takes to connect to it.
	RunDir string
	// ThreadPoolSize bounds virtiofsd's worker threads; 0 means its default.
	ThreadPoolSize int
}

// Virtiofsd is a running virtiofsd and the connection QEMU uses to reach it.
type Virtiofsd struct {
	cmd  *exec.Cmd
	conn *os.File // QEMU's end of the vhost-user connection
	done chan struct{}
	err  error // valid once done is closed
}

// StartVirtiofsd starts virtiofsd serving cfg.SharedDir. The vhost-user
// socket is listened on, connected to and unlinked before virtiofsd runs:
// it inherits the listening socket, accepts the one connection already
// waiting, and QEMU inherits that connection. No socket file remains that
// another process could connect to.
func StartVirtiofsd(ctx context.Context, cfg VirtiofsdConfig) (_ *Virtiofsd, retErr error) {
	if !filepath.IsAbs(cfg.Binary) {
		return nil, fmt.Errorf("virtiofsd %q is not an absolute path: %w", cfg.Binary, errdefs.ErrInvalidArgument)
	}
	if _, err := os.Stat(cfg.Binary); err != nil {
		return nil, fmt.Errorf("virtiofsd (apt-get install qemu-system-common): %w: %w", err, errdefs.ErrNotFound)
	}
	if st, err := os.Stat(cfg.SharedDir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("shared directory %s: %w", cfg.SharedDir, errdefs.ErrNotFound)
	}
	sock := filepath.Join(cfg.RunDir, VirtiofsdSocket)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("virtiofsd socket: %w", err)
	}
	l.SetUnlinkOnClose(false)
	defer l.Close()
	client, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
	os.Remove(sock)
	if err != nil {
		return nil, fmt.Errorf("virtiofsd socket: %w", err)
	}
	defer client.Close()
	lf, err := l.File()
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	conn, err := client.File()
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			conn.Close()
		}
	}()

	args := []string{
		"--fd=3",
		"-o", "source=" + cfg.SharedDir,
		"-o", "cache=auto",
		"-o", "no_posix_lock",
		"-o", "announce_submounts",
		"-o", "log_level=warn",
	}
	if cfg.ThreadPoolSize > 0 {
		args = append(args, fmt.Sprintf("--thread-pool-size=%d", cfg.ThreadPoolSize))
	}
	cmd := exec.Command(cfg.Binary, args...)
	cmd.ExtraFiles = []*os.File{lf}
	stderr := &tail{max: 4096}
	cmd.Stdout, cmd.Stderr = stderr, stderr
	// virtiofsd must not outlive the process that owns the sandbox.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start virtiofsd: %w", err)
	}
	// virtiofsd maps the guest's memory too: no core dump of it.
	_ = unix.Prlimit(cmd.Process.Pid, unix.RLIMIT_CORE, &unix.Rlimit{}, nil)
	v := &Virtiofsd{cmd: cmd, conn: conn, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		if err != nil {
			err = fmt.Errorf("virtiofsd: %w: %s", err, strings.TrimSpace(stderr.String()))
		}
		v.err = err
		close(v.done)
	}()
	// virtiofsd exits at once on bad options or an unusable directory.
	// Waiting here to see that would cost every start; QEMU then fails to
	// connect instead, and the caller asks ExitedAtStart for the reason.
	log.G(ctx).WithField("pid", cmd.Process.Pid).Debug("virtiofsd started")
	return v, nil
}

// ExitedAtStart returns virtiofsd's error if it fails within wait, nil if
// it still runs or ended cleanly: for a caller whose QEMU failed to start,
// to report the cause rather than QEMU's failure to reach it. A virtiofsd
// that QEMU left (QEMU failed on another device) exits with status 0.
func (v *Virtiofsd) ExitedAtStart(wait time.Duration) error {
	select {
	case <-v.done:
		if v.err == nil {
			return nil
		}
		return fmt.Errorf("virtiofsd exited at start: %w", v.err)
	case <-time.After(wait):
		return nil
	}
}

// QEMUConn returns the connected vhost-user socket to hand to QEMU. The
// caller may close it once QEMU has inherited it.
func (v *Virtiofsd) QEMUConn() *os.File { return v.conn }

// ReleaseQEMUConn closes this process's copy of QEMU's end once QEMU has
// inherited it, so that virtiofsd sees the connection end when QEMU does.
func (v *Virtiofsd) ReleaseQEMUConn() { v.conn.Close() }

// Pid returns virtiofsd's pid.
func (v *Virtiofsd) Pid() int { return v.cmd.Process.Pid }

// Done is closed when virtiofsd has exited.
func (v *Virtiofsd) Done() <-chan struct{} { return v.done }

// Stop ends virtiofsd: it exits by itself when QEMU disconnects; otherwise
// SIGTERM, then SIGKILL, each bounded.
func (v *Virtiofsd) Stop() error {
	v.conn.Close()
	for _, step := range []struct {
		sig  syscall.Signal
		wait time.Duration
	}{{0, time.Second}, {syscall.SIGTERM, 2 * time.Second}, {syscall.SIGKILL, 5 * time.Second}} {
		if step.sig != 0 {
			_ = v.cmd.Process.Signal(step.sig)
		}
		select {
		case <-v.done:
			return nil
		case <-time.After(step.wait):
		}
	}
	return fmt.Errorf("virtiofsd pid %d did not exit", v.cmd.Process.Pid)
}

// tail keeps the last max bytes written.
type tail struct {
	buf []byte
	max int
}

func (t *tail) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	return len(p), nil
}

func (t *tail) String() string { return string(t.buf) }
