package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli"

	"github.com/hull-runtime/hull/internal/oci"
	"github.com/hull-runtime/hull/internal/state"
	"github.com/hull-runtime/hull/internal/storage"
	"github.com/hull-runtime/hull/internal/supervisor"
)

var createFlags = []cli.Flag{
	cli.StringFlag{Name: "bundle, b", Value: "", Usage: "path to the bundle (default: the current directory)"},
	cli.StringFlag{Name: "pid-file", Usage: "file to write the pid of the process that stands for the container"},
	cli.StringFlag{Name: "console-socket", Usage: "unix socket that receives the pty master of a terminal container"},
	cli.BoolFlag{Name: "no-pivot", Usage: "accepted for runc compatibility; the guest always pivots"},
	cli.BoolFlag{Name: "no-new-keyring", Usage: "accepted for runc compatibility"},
	cli.IntFlag{Name: "preserve-fds", Usage: "not supported: file descriptors cannot cross into the VM"},
}

var createCommand = cli.Command{
	Name:      "create",
	Usage:     "create a container in its own VM",
	ArgsUsage: "<container-id>",
	Flags:     createFlags,
	Action: func(c *cli.Context) error {
		sup, _, err := spawnSupervisor(c, c.String("console-socket"), false)
		if err != nil {
			return err
		}
		sup.Process.Release()
		return nil
	},
}

// maxArgs is how many arguments a verb takes at most, as runc counts
// them (exec and ps pass the rest on).
var maxArgs = map[string]int{"create": 1, "run": 1, "start": 1, "state": 1, "delete": 1, "kill": 2, "supervise": 1, "pause": 1, "resume": 1, "update": 1}

// containerID returns the one argument every container verb takes, and
// refuses more arguments than the verb takes, as runc does: an id too
// many would otherwise be silently ignored.
func containerID(c *cli.Context) (string, error) {
	if c.NArg() < 1 {
		return "", fmt.Errorf("%s: missing container id: %w", c.Command.Name, errdefs.ErrInvalidArgument)
	}
	if max, ok := maxArgs[c.Command.Name]; ok && c.NArg() > max {
		if max == 1 {
			return "", fmt.Errorf("%q requires exactly 1 argument(s), got %q: %w", c.Command.Name, []string(c.Args()), errdefs.ErrInvalidArgument)
		}
		return "", fmt.Errorf("%q requires a maximum of %d arguments, got %q: %w", c.Command.Name, max, []string(c.Args()), errdefs.ErrInvalidArgument)
	}
	id := c.Args().First()
	return id, state.ValidID(id)
}

// spawnSupervisor starts the container's supervisor, detached, with this
// process's stdio (or, for a terminal, with the console socket that gets
// the terminal's master), and returns once it reported that the container
// is created (or why not).
//
// With start (`hull run`) the supervisor also starts a container whose
// spec has no hooks before it reports, which saves the round trip of a
// separate start; started says it did.
func spawnSupervisor(c *cli.Context, consoleSocket string, start bool) (_ *exec.Cmd, started bool, _ error) {
	id, err := containerID(c)
	if err != nil {
		return nil, false, err
	}
	if c.Int("preserve-fds") > 0 {
		return nil, false, fmt.Errorf("--preserve-fds: file descriptors cannot be passed into a VM: %w", errdefs.ErrNotImplemented)
	}
	if n := socketActivation(); n > 0 {
		return nil, false, fmt.Errorf("socket activation (LISTEN_FDS=%d for this process): file descriptors cannot be passed into a VM: %w", n, errdefs.ErrNotImplemented)
	}
	cfg, err := loadConfig(c)
	if err != nil {
		return nil, false, err
	}
	bundle := c.String("bundle")
	if bundle == "" {
		bundle = "."
	}
	if bundle, err = filepath.Abs(bundle); err != nil {
		return nil, false, err
	}
	spec, err := oci.LoadBundle(bundle)
	if err != nil {
		return nil, false, err
	}
	// A VM cannot join the host's namespaces; only a network namespace's
	// path is used, and that by mirroring it into the VM.
	if spec.Linux != nil {
		for _, ns := range spec.Linux.Namespaces {
			if ns.Path != "" && ns.Type != specs.NetworkNamespace {
				return nil, false, fmt.Errorf("linux.namespaces: %s namespace path %s: a container in its own VM cannot join a host namespace: %w", ns.Type, ns.Path, errdefs.ErrNotImplemented)
			}
		}
	}
	// The cheap checks of the bundle come before a VM boots for it.
	if _, err := storage.ResolveInBundle(bundle, spec.Root.Path); err != nil {
		return nil, false, fmt.Errorf("root.path: %w", err)
	}
	if consoleSocket, err = checkConsoleSocket(spec.Process.Terminal, consoleSocket); err != nil {
		return nil, false, err
	}
	store, err := state.Open(cfg.Runtime.Root)
	if err != nil {
		return nil, false, err
	}
	if _, err := store.Read(id); err == nil {
		return nil, false, fmt.Errorf("container %q already exists: %w", id, errdefs.ErrAlreadyExists)
	}

	r, w, err := os.Pipe()
	if err != nil {
		return nil, false, err
	}
	defer r.Close()
	args := []string{"--root", cfg.Runtime.Root}
	if p := c.GlobalString("config"); p != "" {
		args = append(args, "--config", p)
	}
	if c.GlobalBool("debug") {
		args = append(args, "--debug")
	}
	if c.GlobalBool("systemd-cgroup") {
		args = append(args, "--systemd-cgroup")
	}
	if p := c.GlobalString("log"); p != "" {
		args = append(args, "--log", p, "--log-format", c.GlobalString("log-format"))
	}
	args = append(args, "_supervise", "--bundle", bundle)
	if supervisor.StacksView(spec) {
		// Its mount namespace must differ from this one (it checks).
		ns, err := storage.MountNamespace()
		if err != nil {
			return nil, false, err
		}
		args = append(args, "--parent-mnt-ns", ns)
	}
	if start && !supervisor.HasHooks(spec) {
		args = append(args, "--start")
		started = true
	}
	if consoleSocket != "" {
		args = append(args, "--console-socket", consoleSocket)
	}
	args = append(args, id)
	cmd := exec.Command("/proc/self/exe", args...)
	if consoleSocket == "" {
		// A terminal's IO goes through its pty; the supervisor keeps none
		// of this command's stdio then (it gets /dev/null).
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	}
	cmd.ExtraFiles = []*os.File{w}
	// Its own session: the supervisor outlives this command and must not
	// get the signals of this command's terminal. Its own mount namespace:
	// its pid stands for the container's, and the container's files are
	// stacked on its "/" (storage.StackView); its mounts stay out of the
	// host's and go with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if supervisor.StacksView(spec) {
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWNS
	}
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, false, fmt.Errorf("starting the supervisor: %w", err)
	}
	w.Close()
	msg, _ := io.ReadAll(io.LimitReader(r, 64<<10))
	if s := strings.TrimSpace(string(msg)); s != "ok" {
		if s == "" {
			// It died before it could report (killed, crashed): QEMU and
			// virtiofsd die with it, but its state, mounts and network
			// changes stay until removed here. A supervisor that reported
			// an error cleaned up itself.
			abandon(cmd, cfg.Runtime.Root, id)
			return nil, false, fmt.Errorf("the supervisor exited without a word (%v): %w", cmd.ProcessState, errdefs.ErrUnavailable)
		}
		cmd.Wait()
		return nil, false, errors.New(s)
	}
	if p := c.String("pid-file"); p != "" {
		if err := writePidFile(p, cmd.Process.Pid); err != nil {
			abandon(cmd, cfg.Runtime.Root, id)
			return nil, false, err
		}
	}
	return cmd, started, nil
}

// abandon ends a container that its command could not finish creating or
// starting, as runc destroys it: the supervisor goes (QEMU and virtiofsd
// die with it), then what it leaves (state, mounts, taps) goes as with
// delete --force.
func abandon(sup *exec.Cmd, root, id string) {
	sup.Process.Signal(syscall.SIGKILL)
	sup.Wait()
	store, err := state.Open(root)
	if err != nil {
		return
	}
	// Only what this supervisor made: the id may be another container's
	// by now if this one's went away. As delete --force: its poststop
	// hooks run too.
	if st, err := store.Read(id); err == nil && st.Supervisor == sup.Process.Pid {
		if err := deleteContainer(store, id, true); err != nil {
			log.G(commandContext()).WithError(err).Warn("cleaning up the abandoned container")
		}
	}
}

// checkConsoleSocket checks that a console socket comes with a terminal and
// only with one, as runc does, and returns its absolute path.
func checkConsoleSocket(terminal bool, socket string) (string, error) {
	switch {
	case terminal && socket == "":
		return "", fmt.Errorf("process.terminal is true: a terminal needs --console-socket, a unix socket that receives the pty master: %w", errdefs.ErrInvalidArgument)
	case !terminal && socket != "":
		return "", fmt.Errorf("--console-socket is only for a process with a terminal (process.terminal is false): %w", errdefs.ErrInvalidArgument)
	case socket == "":
		return "", nil
	}
	return filepath.Abs(socket)
}

// writePidFile writes pid atomically, as runc does: a reader never sees a
// partial file.
func writePidFile(path string, pid int) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return fmt.Errorf("--pid-file: %w", err)
	}
	return os.Rename(tmp, path)
}

func controlContext() (context.Context, context.CancelFunc) {
	return context.WithCancel(commandContext())
}

// socketActivation returns how many sockets systemd's socket activation
// hands this process: LISTEN_FDS, when LISTEN_PID names this process, as
// runc reads them (go-systemd's activation.Files) and passes them to the
// container. A VM cannot take them, and dropping them without a word
// would leave the service with no socket to serve.
func socketActivation() int {
	pid, err := strconv.Atoi(os.Getenv("LISTEN_PID"))
	if err != nil || pid != os.Getpid() {
		return 0
	}
	n, err := strconv.Atoi(os.Getenv("LISTEN_FDS"))
	if err != nil || n < 0 {
		return 0
	}
	return n
}
