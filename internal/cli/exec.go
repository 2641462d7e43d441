package cli

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli"

	"github.com/hull-runtime/hull/internal/console"
	"github.com/hull-runtime/hull/internal/oci"
	"github.com/hull-runtime/hull/internal/state"
	"github.com/hull-runtime/hull/internal/supervisor"
)

var execCommand = cli.Command{
	Name:      "exec",
	Usage:     "run a process in a running container",
	ArgsUsage: "<container-id> [command [args...]]",
	Flags: []cli.Flag{
		cli.StringFlag{Name: "process, p", Usage: "process.json (the process object of the OCI spec)"},
		cli.BoolFlag{Name: "tty, t", Usage: "allocate a terminal"},
		cli.BoolFlag{Name: "detach, d", Usage: "do not wait for the process"},
		cli.StringFlag{Name: "pid-file", Usage: "file to write the pid of the host process that stands for the exec'd one (it exits with its status)"},
		cli.StringFlag{Name: "cwd", Usage: "working directory"},
		cli.StringSliceFlag{Name: "env, e", Usage: "environment variable (NAME=value)"},
		cli.StringFlag{Name: "user, u", Usage: "uid[:gid]"},
		cli.StringSliceFlag{Name: "additional-gids, g", Usage: "additional gids"},
		cli.StringFlag{Name: "console-socket", Usage: "unix socket that receives the pty master"},
		cli.BoolFlag{Name: "no-new-privs", Usage: "set no_new_privileges"},
		cli.StringSliceFlag{Name: "cap, c", Usage: "add a capability"},
		cli.StringFlag{Name: "apparmor", Usage: "AppArmor profile of the process (applied in the guest, as process.apparmorProfile)"},
		cli.StringFlag{Name: "process-label", Usage: "SELinux label of the process (applied in the guest, as process.selinuxLabel)"},
		cli.IntFlag{Name: "preserve-fds", Usage: "not supported: file descriptors cannot cross into the VM"},
		cli.StringFlag{Name: "cgroup", Usage: "not supported: an exec runs in the container's cgroup in the guest"},
		cli.BoolFlag{Name: "ignore-paused", Usage: "accepted for runc compatibility; an exec into a paused container is refused all the same, as its start would freeze"},
	},
	SkipArgReorder: true,
	Action: func(c *cli.Context) error {
		err := execAction(c)
		var status exitCoder
		if err != nil && !errors.As(err, &status) {
			// As runc's exec: its own failures exit 255, so that a caller
			// tells them from the process's status.
			return cli.NewExitError(err.Error(), 255)
		}
		return err
	},
}

func execAction(c *cli.Context) error {
	store, id, st, err := readContainer(c)
	if err != nil {
		return err
	}
	switch {
	case st.Status == state.Paused && !c.Bool("ignore-paused"):
		return fmt.Errorf("cannot exec in a paused container (use --ignore-paused to override): %w", errdefs.ErrFailedPrecondition)
	case st.Status == state.Paused:
		// runc's exec then starts a process that freezes as it joins
		// the cgroup, and waits on it for ever.
		return fmt.Errorf("cannot exec in a paused container, even with --ignore-paused: the process would freeze before it started; resume the container first: %w", errdefs.ErrFailedPrecondition)
	case st.Status != state.Running && st.Status != state.Created:
		// As runc: a created container takes execs too (its namespaces
		// exist; its own process waits for the start).
		return fmt.Errorf("cannot exec in a container that is %s: %w", st.Status, errdefs.ErrFailedPrecondition)
	}
	p, err := execProcess(c, st.Bundle)
	if err != nil {
		return err
	}
	standin := standinFD()
	detached := c.Bool("detach") || standin > 0
	if c.Bool("detach") && standin == 0 {
		if p.Terminal {
			if _, err := checkConsoleSocket(true, c.String("console-socket")); err != nil {
				return err
			}
		}
		return detachExec(c)
	}
	report := func(error) {}
	if standin > 0 {
		ready := os.NewFile(uintptr(standin), "ready")
		report = func(err error) {
			if err != nil {
				fmt.Fprintf(ready, "%v\n", err)
			} else {
				fmt.Fprintln(ready, "ok")
			}
			ready.Close()
			report = func(error) {}
		}
	}
	var b [6]byte
	rand.Read(b[:])
	req := supervisor.Request{ExecID: "exec-" + hex.EncodeToString(b[:]), Process: p}
	var files []*os.File
	if p.Terminal {
		// The terminal's master goes to the console socket, or, in
		// the foreground without one, to this command, which gives
		// the process the caller's terminal.
		files = nil
		socket := c.String("console-socket")
		if socket == "" && !detached {
			tty, err := newForegroundTTY()
			if err != nil {
				return err
			}
			defer tty.Close()
			socket = tty.Path()
			if p.ConsoleSize == nil {
				// The process starts with the caller's size; later
				// changes follow through the master.
				if ws, err := console.Size(os.Stdin); err == nil && ws.Row > 0 && ws.Col > 0 {
					p.ConsoleSize = &specs.Box{Height: uint(ws.Row), Width: uint(ws.Col)}
				}
			}
		}
		if req.ConsoleSocket, err = checkConsoleSocket(true, socket); err != nil {
			return err
		}
	} else {
		if _, err := checkConsoleSocket(false, c.String("console-socket")); err != nil {
			return err
		}
		// The process's stdin is a pipe this command feeds: the
		// caller's own stdin is never handed to the supervisor,
		// which would go on reading it (and swallow what the caller's
		// shell reads next) after the process ended.
		stdin, err := feedStdin()
		if err != nil {
			return err
		}
		defer stdin.Close()
		files = []*os.File{stdin, os.Stdout, os.Stderr}
	}
	// Signals for this command are for the process it stands for, as
	// runc's exec passes them on (to the stand-in's pid too, which
	// conmon and containerd signal to stop an exec).
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, supervisor.ForwardedSignals()...)
	defer signal.Stop(sigs)
	ctx, cancel := controlContext()
	defer cancel()
	status, err := supervisor.Exec(ctx, store.Dir(id), req, files, func(uint32) {
		// This process stands for the exec'd one on the host: it exits
		// with its status. The guest pid would mean nothing here.
		if f := c.String("pid-file"); f != "" && standin == 0 {
			if err := writePidFile(f, os.Getpid()); err != nil {
				// As runc's exec: no pid file, no exec. Leaving ends
				// the connection, and the supervisor kills the exec
				// whose caller went.
				fmt.Fprintf(os.Stderr, "hull: %v\n", err)
				os.Exit(255)
			}
		}
		report(nil)
		go forwardExecSignals(store.Dir(id), req.ExecID, sigs)
	})
	report(err)
	if err != nil {
		// As runc's exec when the process cannot be started.
		return cli.NewExitError(err.Error(), 255)
	}
	if status != 0 {
		return cli.NewExitError("", status)
	}
	return nil
}

// detachExec runs the exec in a stand-in process (this command without
// -d) and returns once the process runs. The stand-in's pid goes to
// --pid-file: it exits with the process's exit status, so a parent that
// waits on that pid (conmon is a subreaper and adopts it) gets the status,
// as it would from the process itself under runc.
func detachExec(c *cli.Context) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	// The same command line: the environment tells the stand-in what it
	// is (and that its -d is done with), so that the process's own
	// arguments are passed on untouched.
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Env = append(os.Environ(), standinEnv+"=3")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{w}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("exec: starting the stand-in: %w", err)
	}
	w.Close()
	msg, _ := io.ReadAll(io.LimitReader(r, 64<<10))
	if s := strings.TrimSpace(string(msg)); s != "ok" {
		cmd.Wait()
		if s == "" {
			s = "exec: the stand-in exited without a word"
		}
		return errors.New(s)
	}
	if f := c.String("pid-file"); f != "" {
		if err := writePidFile(f, cmd.Process.Pid); err != nil {
			cmd.Process.Kill()
			return err
		}
	}
	return cmd.Process.Release()
}

// execProcess builds the process from -p or from the container's own
// process with the command line's changes, as runc does.
func execProcess(c *cli.Context, bundle string) (*specs.Process, error) {
	if c.Int("preserve-fds") > 0 {
		return nil, fmt.Errorf("--preserve-fds: file descriptors cannot be passed into a VM: %w", errdefs.ErrNotImplemented)
	}
	if g := c.String("cgroup"); g != "" {
		return nil, fmt.Errorf("--cgroup %q: an exec cannot be put in a sub-cgroup of its container: %w", g, errdefs.ErrNotImplemented)
	}
	if path := c.String("process"); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("--process: %w", err)
		}
		var p specs.Process
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, fmt.Errorf("--process %s: malformed: %v: %w", path, err, errdefs.ErrInvalidArgument)
		}
		if len(p.Args) == 0 {
			return nil, fmt.Errorf("--process %s: args is empty: %w", path, errdefs.ErrInvalidArgument)
		}
		return &p, nil
	}
	if c.NArg() < 2 {
		return nil, fmt.Errorf("exec: missing command: %w", errdefs.ErrInvalidArgument)
	}
	spec, err := oci.LoadBundle(bundle)
	if err != nil {
		return nil, err
	}
	p := *spec.Process
	p.Args = c.Args()[1:]
	p.Terminal = c.Bool("tty")
	if cwd := c.String("cwd"); cwd != "" {
		p.Cwd = cwd
	}
	p.Env = append(p.Env, c.StringSlice("env")...)
	if u := c.String("user"); u != "" {
		uid, gid, _ := strings.Cut(u, ":")
		n, err := strconv.ParseUint(uid, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("--user %q: numeric uid[:gid] expected: %w", u, errdefs.ErrInvalidArgument)
		}
		p.User.UID = uint32(n)
		if gid != "" {
			g, err := strconv.ParseUint(gid, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("--user %q: numeric gid expected: %w", u, errdefs.ErrInvalidArgument)
			}
			p.User.GID = uint32(g)
		}
	}
	for _, g := range c.StringSlice("additional-gids") {
		n, err := strconv.ParseUint(g, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("--additional-gids %q: %w", g, errdefs.ErrInvalidArgument)
		}
		p.User.AdditionalGids = append(p.User.AdditionalGids, uint32(n))
	}
	if c.IsSet("no-new-privs") {
		// --no-new-privs=false lifts the spec's, as with runc.
		p.NoNewPrivileges = c.Bool("no-new-privs")
	}
	if a := c.String("apparmor"); a != "" {
		p.ApparmorProfile = a
	}
	if l := c.String("process-label"); l != "" {
		p.SelinuxLabel = l
	}
	if caps := c.StringSlice("cap"); len(caps) > 0 && p.Capabilities != nil {
		cp := *p.Capabilities
		cp.Bounding = append(cp.Bounding, caps...)
		cp.Effective = append(cp.Effective, caps...)
		cp.Permitted = append(cp.Permitted, caps...)
		p.Capabilities = &cp
	}
	return &p, nil
}

// standinEnv names the descriptor on which a stand-in started by `exec
// -d` reports that the process runs.
const standinEnv = "HULL_EXEC_STANDIN_FD"

// standinFD returns the stand-in's report descriptor, 0 in any other exec.
func standinFD() int {
	n, err := strconv.Atoi(os.Getenv(standinEnv))
	if err != nil || n < 3 {
		return 0
	}
	return n
}

// feedStdin returns a pipe that carries this command's stdin to the
// process until its EOF.
func feedStdin() (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("exec: stdin: %w", err)
	}
	go func() {
		_, _ = io.Copy(w, os.Stdin)
		w.Close()
	}()
	return r, nil
}

// forwardExecSignals passes the signals this command gets on to the exec
// execID, until sigs is stopped.
func forwardExecSignals(dir, execID string, sigs chan os.Signal) {
	for sig := range sigs {
		ctx, cancel := controlContext()
		err := supervisor.Call(ctx, dir, supervisor.Request{Op: "kill", ExecID: execID, Signal: int(sig.(syscall.Signal))})
		cancel()
		if err != nil {
			log.G(commandContext()).WithError(err).WithField("signal", sig).Debug("forwarding a signal to the exec")
		}
	}
}
