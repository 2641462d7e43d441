// Package supervisor is the host process that stands for one container of
// the hull command line: it owns the sandbox VM, virtiofsd and the
// container's stdio, answers the commands that follow `hull create`
// through a unix socket, forwards the signals it receives to the
// container's init, and exits with the container's exit status once the VM
// is gone, which is what conmon and other parents of a runc container
// process expect.
package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/hull-runtime/hull/internal/agentclient"
	"github.com/hull-runtime/hull/internal/config"
	"github.com/hull-runtime/hull/internal/console"
	"github.com/hull-runtime/hull/internal/hooks"
	"github.com/hull-runtime/hull/internal/hostcgroup"
	"github.com/hull-runtime/hull/internal/procmem"
	"github.com/hull-runtime/hull/internal/sandbox"
	"github.com/hull-runtime/hull/internal/state"
	"github.com/hull-runtime/hull/internal/vmm/qemu"
)

// Options describes the container to supervise.
type Options struct {
	Store  *state.Store
	ID     string
	Bundle string
	Spec   *specs.Spec
	Config config.Config
	Accel  qemu.Accel
	Stdio  sandbox.Stdio
	// ConsoleSocket, for a spec with process.terminal, is the unix socket
	// that gets the master of the container's terminal; Stdio is unused.
	ConsoleSocket string
	// SystemdCgroup says cgroupsPath is systemd's slice:prefix:name; no
	// host cgroup is made then (there may be no systemd to ask).
	SystemdCgroup bool
	// Start starts the container once it is created, before the report
	// (`hull run`); only for a spec without hooks, whose start nothing
	// else has to see happen. Without a terminal the guest then creates
	// and starts it in one call.
	Start bool
}

// supervisor is one run; its fields are set before the control socket
// serves, except those guarded by mu.
type supervisor struct {
	opts Options
	h    *state.Handle
	sb   *sandbox.Sandbox
	ctr  *sandbox.Container
	// cg is the container's cgroup on the host (nil without cgroupsPath).
	cg *hostcgroup.Group
	// tty is the init's terminal (nil without one); it is the
	// supervisor's controlling terminal, and winch gets its SIGWINCH.
	tty   *terminal
	winch chan os.Signal

	mu      sync.Mutex
	st      state.State // guarded by mu
	started bool        // guarded by mu
	// startedAtCreate says the guest started the process in the same call
	// that created the container (Options.Start without a terminal).
	startedAtCreate bool
	// liveExecs counts the execs whose callers wait for their status
	// (guarded by mu); execs is done when they have it.
	liveExecs  int
	execs      sync.WaitGroup
	exited     chan struct{}
	finishOnce sync.Once
	finishing  atomic.Bool    // set once the container's end is being handled
	handlers   sync.WaitGroup // control requests being answered
	status     int            // valid once exited is closed
}

// Run boots the sandbox and creates the container (and, with
// Options.Start, starts it), then calls ready with nil (or with the error
// that stopped it, after cleaning up), then serves until the container
// exits and its VM is gone. It returns the exit status the process should
// exit with.
//
// ready returns an error when the report cannot be delivered: the command
// that asked for the container is gone (killed while the VM booted), so
// nobody knows the container exists, and it is torn down rather than
// left running unmanaged.
func Run(ctx context.Context, opts Options, ready func(error) error) int {
	s := &supervisor{opts: opts, exited: make(chan struct{})}
	if err := s.create(ctx); err != nil {
		ready(err)
		return 1
	}
	// The control socket listens before the container counts as created:
	// the command that created it (`hull run`) calls it at once.
	l, err := net.Listen("unix", filepath.Join(s.h.Dir(), state.SocketFile))
	if err != nil {
		s.teardown(context.WithoutCancel(ctx))
		s.h.Remove()
		ready(fmt.Errorf("control socket: %w", err))
		return 1
	}
	// Caught before the report: the command that waits for it forwards
	// the signals it got meanwhile as soon as it has it.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, ForwardedSignals()...)
	abort := func() {
		signal.Stop(sigs)
		l.Close()
		// finish, not teardown alone: the init may be watched already,
		// and its end would tear down too.
		s.finish(context.WithoutCancel(ctx), 128+int(syscall.SIGKILL))
		s.h.Remove()
	}
	if s.opts.Start {
		// As `hull start` would, before the report: `hull run` waits for
		// it, and learns of a failure from it.
		go s.wait(context.WithoutCancel(ctx))
		if err := s.do(ctx, Request{Op: "start"}); err != nil {
			abort()
			ready(err)
			return 1
		}
	}
	if err := ready(nil); err != nil {
		log.G(ctx).WithError(err).Warn("the command that created the container is gone: removing it")
		abort()
		return 1
	}
	if !s.opts.Start {
		// The init is watched from now on, not from the start: a signal
		// sent to a created container can end its init too (runc's shows
		// such a container stopped at once).
		go s.wait(context.WithoutCancel(ctx))
	}
	return s.serve(ctx, l, sigs)
}

func (s *supervisor) create(ctx context.Context) (retErr error) {
	h, err := s.opts.Store.Create(s.opts.ID)
	if err != nil {
		return err
	}
	s.h = h
	hooksRan := false
	defer func() {
		if retErr != nil {
			s.teardown(context.WithoutCancel(ctx))
			h.Remove()
			// The runtime spec: a creation that fails goes on to the
			// deletion, poststop hooks included, once creation hooks ran
			// (what they set up is theirs to undo).
			if hooksRan {
				st := s.hookState()
				st.Status, st.Pid = specs.StateStopped, 0
				if err := hooks.Poststop(context.WithoutCancel(ctx), s.opts.Spec, st); err != nil {
					log.G(ctx).WithError(err).Warn("poststop hook")
				}
			}
		}
	}()
	// Without its start time, a recorded pid could later name another
	// process (state, kill and delete --force check it).
	start, err := state.StartTime(os.Getpid())
	if err != nil {
		return fmt.Errorf("supervisor start time: %w", err)
	}
	s.st = state.State{
		ID: s.opts.ID, Bundle: s.opts.Bundle, Status: state.Creating, Created: time.Now().UTC(),
		Annotations: s.opts.Spec.Annotations, Supervisor: os.Getpid(), SupervisorStart: start, Owner: os.Geteuid(),
		OCIVersion: s.opts.Spec.Version, Rootfs: rootfsPath(s.opts.Bundle, s.opts.Spec),
	}
	if err := h.Save(&s.st); err != nil {
		return err
	}
	if err := h.SaveSpec(s.opts.Spec); err != nil {
		return fmt.Errorf("keeping the spec: %w", err)
	}
	if s.opts.ConsoleSocket != "" {
		if err := s.openTerminal(ctx); err != nil {
			return err
		}
	}
	// prestart (deprecated) and createRuntime hooks run before the VM
	// boots: they may prepare the network namespace the VM mirrors.
	if h := s.opts.Spec.Hooks; h != nil {
		hooksRan = len(h.Prestart)+len(h.CreateRuntime)+len(h.CreateContainer) > 0
		if err := hooks.Run(ctx, "prestart", h.Prestart, s.hookState()); err != nil {
			return err
		}
		if err := hooks.Run(ctx, "createRuntime", h.CreateRuntime, s.hookState()); err != nil {
			return err
		}
	}
	dir := h.Dir()
	shared := filepath.Join(dir, "shared")
	if err := os.Mkdir(shared, 0o700); err != nil {
		return err
	}
	cfg := s.opts.Config
	sandbox.SizeVM(&cfg, s.opts.Spec)
	hostname := s.opts.Spec.Hostname
	s.sb, err = sandbox.Boot(ctx, sandbox.Options{
		ID: sandboxID(s.opts.ID), Config: cfg, Accel: s.opts.Accel,
		RunDir: filepath.Join(dir, "vm"), SharedDir: shared, Hostname: hostname,
		NetNS: sandbox.NetworkNamespacePath(s.opts.Spec),
		// The VM's one container comes next: its creation carries the
		// sandbox's set-up.
		DeferSetup: true,
	})
	if err != nil {
		return err
	}
	s.st.QEMU, s.st.Virtiofsd = s.sb.VMPid(), s.sb.VirtiofsdPid()
	if !s.opts.SystemdCgroup {
		pids := append([]int{os.Getpid(), s.sb.VMPid()}, hostcgroup.WithChildren(s.sb.VirtiofsdPid())...)
		if s.cg, err = hostcgroup.Join(s.opts.Spec, pids...); errors.Is(err, hostcgroup.ErrNoHierarchy) {
			log.G(ctx).WithError(err).Warn("no host cgroup: the container's limits apply in the guest only")
		} else if err != nil {
			return err
		}
	}
	s.startedAtCreate = s.opts.Start && s.tty == nil && !HasHooks(s.opts.Spec)
	s.ctr, err = s.sb.CreateContainer(ctx, sandbox.ContainerConfig{
		ID: s.opts.ID, Bundle: s.opts.Bundle, Spec: s.opts.Spec, Stdio: s.opts.Stdio,
		Start: s.startedAtCreate,
	})
	if err != nil {
		return err
	}
	log.G(ctx).Debug("container created")
	// This process's pid is the container's on the host: podman cp and
	// nsenter -m join its mount namespace and must find the container's
	// files there, not the host's.
	if StacksView(s.opts.Spec) {
		if err := s.ctr.StackView(s.opts.Spec); err != nil {
			return err
		}
	}
	if s.tty != nil {
		s.tty.sync(ctx, s.ctr, "")
	}
	if h := s.opts.Spec.Hooks; h != nil {
		if err := hooks.Run(ctx, "createContainer", h.CreateContainer, s.hookState()); err != nil {
			return err
		}
	}
	s.st.Status = state.Created
	return h.Save(&s.st)
}

// ownPIDNamespace tells whether spec gives the container a new PID
// namespace, which ends with its init.
func ownPIDNamespace(spec *specs.Spec) bool {
	if spec.Linux == nil {
		return false
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.PIDNamespace {
			return ns.Path == ""
		}
	}
	return false
}

// StacksView tells whether the supervisor of a container of spec runs in
// a mount namespace of its own, with the container's files over its "/"
// (storage.StackView): when the container has a mount namespace of its
// own. One without stands, on the host, in the runtime's mount namespace,
// which its pid's must then be (runtime-tools' linux_ns_itype checks it).
func StacksView(spec *specs.Spec) bool {
	if spec.Linux == nil {
		return false
	}
	return slices.ContainsFunc(spec.Linux.Namespaces, func(ns specs.LinuxNamespace) bool {
		return ns.Type == specs.MountNamespace && ns.Path == ""
	})
}

// HasHooks tells whether spec names any hook: a container without any
// can be created and started in one go (Options.Start).
func HasHooks(spec *specs.Spec) bool {
	h := spec.Hooks
	return h != nil && len(h.Prestart)+len(h.CreateRuntime)+len(h.CreateContainer)+len(h.StartContainer)+len(h.Poststart)+len(h.Poststop) > 0
}

// hookState is the state hooks get on stdin. Called with mu held or
// before the control socket serves.
func (s *supervisor) hookState() specs.State {
	return specs.State{
		Version: specs.Version, ID: s.opts.ID, Status: specs.ContainerState(s.st.Status),
		Pid: os.Getpid(), Bundle: s.opts.Bundle, Annotations: s.opts.Spec.Annotations,
	}
}

// openTerminal gives the init a terminal whose master goes to the console
// socket, and makes its slave the supervisor's controlling terminal (the
// supervisor leads its own session) so that a new window size set on the
// master comes as SIGWINCH. Where that fails, the size is polled.
func (s *supervisor) openTerminal(ctx context.Context) error {
	t, err := openTerminal(s.opts.ConsoleSocket)
	if err != nil {
		return err
	}
	s.tty = t
	s.opts.Stdio = t.stdio()
	if err := console.SetControlling(t.slave); err != nil {
		log.G(ctx).WithError(err).Info("terminal is not the controlling one; polling its size")
		return nil
	}
	s.winch = make(chan os.Signal, 1)
	signal.Notify(s.winch, syscall.SIGWINCH)
	return nil
}

// watchSize passes the init's window size to the guest as it changes.
func (s *supervisor) watchSize(ctx context.Context) {
	if s.winch == nil {
		s.tty.poll(ctx, s.ctr, "", s.exited)
		return
	}
	for {
		select {
		case <-s.exited:
			signal.Stop(s.winch)
			return
		case <-s.winch:
			s.tty.sync(ctx, s.ctr, "")
		}
	}
}

// sandboxID derives a VM name from a container id, which may be longer
// than a sandbox id may be.
func sandboxID(id string) string {
	if len(id) > 60 {
		return id[:60]
	}
	return id
}

func (s *supervisor) serve(ctx context.Context, l net.Listener, sigs chan os.Signal) int {
	defer l.Close()
	s.h.Unlock()
	go s.accept(ctx, l)
	go s.forward(ctx, sigs)
	if s.tty != nil {
		go s.watchSize(ctx)
	}

	vmGone := s.sb.Done()
	select {
	case <-s.exited:
	case <-vmGone:
		if !s.finishing.Load() {
			log.G(ctx).Error("the sandbox VM exited under the container")
		}
		s.finish(ctx, 128+int(syscall.SIGKILL))
	}
	signal.Stop(sigs)
	// Answers in flight (a start whose process exited at once) still go
	// out before the process that stands for the container exits.
	done := make(chan struct{})
	go func() {
		s.handlers.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	return s.status
}

// forward passes signals sent to the supervisor on to the container's init.
func (s *supervisor) forward(ctx context.Context, sigs chan os.Signal) {
	for sig := range sigs {
		n := sig.(syscall.Signal)
		s.mu.Lock()
		started := s.started
		s.mu.Unlock()
		if !started {
			// Not running yet: a request to stop ends the container.
			if n == syscall.SIGTERM || n == syscall.SIGINT {
				s.finish(ctx, 128+int(n))
			}
			continue
		}
		if err := s.ctr.Signal(ctx, uint32(n), false); err != nil {
			log.G(ctx).WithError(err).WithField("signal", n).Warn("forwarding signal")
		}
	}
}

func (s *supervisor) accept(ctx context.Context, l net.Listener) {
	for {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		s.handlers.Add(1)
		go func() {
			defer s.handlers.Done()
			s.handle(ctx, conn)
		}()
	}
}

func (s *supervisor) handle(ctx context.Context, c net.Conn) {
	conn := c.(*net.UnixConn)
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Minute))
	req, files, err := readRequest(conn)
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	enc := json.NewEncoder(conn)
	if err == nil && req.Op == "exec" {
		err = s.exec(ctx, conn, enc, req, files)
	} else if err == nil && req.Op == "ps" {
		var procs []agentclient.Process
		if procs, err = s.ctr.ProcessInfo(ctx); err == nil {
			pids := make([]uint32, len(procs))
			for i, p := range procs {
				pids[i] = p.Pid
			}
			enc.Encode(Response{Pids: pids, Processes: fitAnswer(procs)})
			return
		}
	} else if err == nil {
		err = s.do(ctx, req)
	}
	var resp Response
	if err != nil {
		resp = Response{Error: err.Error(), Kind: kindOf(err)}
	}
	enc.Encode(resp)
}

// readRequest reads one request line and the files sent with it.
func readRequest(conn *net.UnixConn) (Request, []*os.File, error) {
	var req Request
	buf := make([]byte, maxMessage)
	oob := make([]byte, unix.CmsgSpace(3*4))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return req, nil, err
	}
	var files []*os.File
	if oobn > 0 {
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return req, nil, err
		}
		for _, m := range msgs {
			fds, err := unix.ParseUnixRights(&m)
			if err != nil {
				continue
			}
			for _, fd := range fds {
				files = append(files, os.NewFile(uintptr(fd), "exec-stdio"))
			}
		}
	}
	line := buf[:n]
	for !bytes.Contains(line, []byte{'\n'}) && len(line) < maxMessage {
		m, err := conn.Read(buf[n:])
		if err != nil {
			return req, files, err
		}
		n += m
		line = buf[:n]
	}
	if err := json.Unmarshal(bytes.TrimSpace(line), &req); err != nil {
		return req, files, fmt.Errorf("malformed request: %w", errdefs.ErrInvalidArgument)
	}
	return req, files, nil
}

// exec runs a process in the container with the files the caller sent as
// its stdio, answers with its pid, and then with its exit status.
func (s *supervisor) exec(ctx context.Context, conn *net.UnixConn, enc *json.Encoder, req Request, files []*os.File) error {
	// Registered under mu against finish's flag, so that the teardown
	// knows of every exec whose caller still waits.
	s.mu.Lock()
	// A created container takes execs, as runc's does.
	if (!s.started && s.st.Status != state.Created) || s.finishing.Load() {
		s.mu.Unlock()
		return fmt.Errorf("container %s is not running: %w", s.opts.ID, errdefs.ErrFailedPrecondition)
	}
	s.liveExecs++
	s.execs.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.liveExecs--
		s.mu.Unlock()
		s.execs.Done()
	}()
	var tty *terminal
	var stdio sandbox.Stdio
	if req.Process != nil && req.Process.Terminal {
		if req.ConsoleSocket == "" {
			return fmt.Errorf("exec with a terminal needs a console socket: %w", errdefs.ErrInvalidArgument)
		}
		t, err := openTerminal(req.ConsoleSocket)
		if err != nil {
			return err
		}
		defer t.close()
		tty, stdio = t, t.stdio()
	} else {
		if len(files) != 3 {
			return fmt.Errorf("exec needs stdin, stdout and stderr, got %d files: %w", len(files), errdefs.ErrInvalidArgument)
		}
		stdio = sandbox.Stdio{Stdin: files[0], Stdout: files[1], Stderr: files[2]}
	}
	p, err := s.ctr.Exec(ctx, req.ExecID, req.Process, stdio)
	if err != nil {
		return err
	}
	if tty != nil {
		tty.sync(ctx, s.ctr, req.ExecID)
		stop := make(chan struct{})
		defer close(stop)
		go tty.poll(context.WithoutCancel(ctx), s.ctr, req.ExecID, stop)
	}
	enc.Encode(Response{Pid: p.Pid()})
	conn.SetDeadline(time.Time{})
	waited := make(chan struct{})
	if !req.Detach {
		go s.killExecWhenCallerGoes(ctx, conn, req.ExecID, waited)
	}
	status, err := p.Wait(context.WithoutCancel(ctx))
	close(waited)
	if err != nil && status < 0 {
		return err
	}
	if err != nil {
		// The status is the process's; only its output's end is in doubt.
		log.G(ctx).WithError(err).WithField("exec", req.ExecID).Warn("exec's output")
	}
	if tty != nil {
		// All output is on the slave: closing it lets the master's reader
		// drain it and see the end before the exit status arrives.
		tty.close()
	}
	enc.Encode(Response{Exited: true, ExitStatus: int(status)})
	return nil
}

// killExecWhenCallerGoes kills exec execID if its caller (`hull exec`, or
// the stand-in of `exec -d`, whose pid stands for the process) goes before
// the process ended: killed with SIGKILL, which it cannot pass on, for
// one. The caller sends nothing after its request, so a read of conn ends
// at the caller's end, or at this side's once the exit status went out.
func (s *supervisor) killExecWhenCallerGoes(ctx context.Context, conn *net.UnixConn, execID string, waited chan struct{}) {
	gone := make(chan struct{})
	go func() {
		var b [1]byte
		conn.Read(b[:])
		close(gone)
	}()
	select {
	case <-waited:
	case <-gone:
		select {
		case <-waited:
			return
		default:
		}
		log.G(ctx).WithField("exec", execID).Info("the exec's caller is gone: killing the exec")
		if err := s.ctr.SignalProcess(context.WithoutCancel(ctx), execID, uint32(syscall.SIGKILL), false); err != nil && !errdefs.IsNotFound(err) {
			log.G(ctx).WithError(err).WithField("exec", execID).Warn("killing the exec whose caller went")
		}
	}
}

func (s *supervisor) do(ctx context.Context, req Request) error {
	switch req.Op {
	case "start":
		stop := false
		err := func() error {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.started {
				return fmt.Errorf("container %s is not created but %s: %w", s.opts.ID, s.st.Status, errdefs.ErrFailedPrecondition)
			}
			// startContainer hooks run in the container, in the guest, as
			// it starts: a failing one fails the start there.
			if !s.startedAtCreate {
				if err := s.ctr.Start(ctx); err != nil {
					// A startContainer hook that failed (the guest says
					// failed precondition) ends the container; a call that
					// did not get through leaves it created.
					stop = errdefs.IsFailedPrecondition(err)
					return err
				}
			}
			log.G(ctx).Debug("container started")
			s.started = true
			if s.tty != nil {
				s.tty.sync(ctx, s.ctr, "")
			}
			s.st.Status = state.Running
			if err := s.h.Save(&s.st); err != nil {
				return err
			}
			// A poststart hook that fails is logged; the container runs on.
			if h := s.opts.Spec.Hooks; h != nil {
				if err := hooks.RunAll(ctx, "poststart", h.Poststart, s.hookState()); err != nil {
					log.G(ctx).WithError(err).Warn("poststart hook")
				}
			}
			// Later, not now: the `hull start` that asked maps the same binary
			// until it has its answer, and shared pages are not paged out.
			time.AfterFunc(coldPagesDelay, func() { releaseColdPages(ctx) })
			return nil
		}()
		if stop {
			// The runtime spec: a failing startContainer hook stops the
			// container, which then goes on to its deletion. Done before
			// the answer (finish takes mu, free again here), as kill does,
			// so that a delete right after finds the container stopped.
			s.finish(context.WithoutCancel(ctx), 128+int(syscall.SIGKILL))
		}
		return err
	case "pause", "resume":
		s.mu.Lock()
		defer s.mu.Unlock()
		from, to, call := state.Running, state.Paused, s.ctr.Pause
		if req.Op == "resume" {
			from, to, call = state.Paused, state.Running, s.ctr.Resume
		}
		if s.st.Status != from {
			return fmt.Errorf("container %s is %s, not %s: %w", s.opts.ID, s.st.Status, from, errdefs.ErrFailedPrecondition)
		}
		if err := call(ctx); err != nil {
			return err
		}
		s.st.Status = to
		return s.h.Save(&s.st)
	case "update":
		if req.Resources == nil {
			return fmt.Errorf("update without resources: %w", errdefs.ErrInvalidArgument)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.st.Status == state.Stopped {
			return fmt.Errorf("container %s is stopped: %w", s.opts.ID, errdefs.ErrFailedPrecondition)
		}
		return s.ctr.Update(ctx, req.Resources)
	case "kill":
		if req.Signal <= 0 || req.Signal > 64 {
			return fmt.Errorf("signal %d: %w", req.Signal, errdefs.ErrInvalidArgument)
		}
		if req.ExecID != "" {
			// For an exec, from the command that stands for it.
			err := s.ctr.SignalProcess(ctx, req.ExecID, uint32(req.Signal), false)
			if errdefs.IsNotFound(err) {
				// Ended already: taken with nothing left to reach.
				return nil
			}
			return err
		}
		s.mu.Lock()
		started := s.started
		s.mu.Unlock()
		if !started && (req.Signal == int(syscall.SIGKILL) || req.Signal == int(syscall.SIGTERM)) {
			// Answered once the container is stopped, as runc's kill of a
			// created container leaves it: a `delete` right after must
			// find it stopped, not still going down.
			s.finish(context.WithoutCancel(ctx), 128+req.Signal)
			return nil
		}
		err := s.ctr.Signal(ctx, uint32(req.Signal), req.All)
		if errdefs.IsNotFound(err) || (err != nil && s.finishing.Load()) {
			// The process has exited and the supervisor has yet to record
			// it: `state` still says running, and, as kill(2) does for a
			// zombie, the signal is taken with nothing left to reach.
			log.G(ctx).WithError(err).Debug("signal after the container's process exited")
			return nil
		}
		return err
	}
	return fmt.Errorf("unknown request %q: %w", req.Op, errdefs.ErrInvalidArgument)
}

// execDrainTimeout bounds the teardown's wait for the execs' callers to
// have their status.
const execDrainTimeout = 5 * time.Second

// waitTimeout waits for wg, at most d.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// coldPagesDelay is how long after the start the supervisor pages out its
// binary: time for the command that started it to exit.
const coldPagesDelay = 2 * time.Second

// releaseColdPages pages out the supervisor's own binary once its container
// runs: what is left to do (wait, relay signals and IO, tear down) runs a
// small part of it, and the rest is start-up code (9 of its 13 MiB, for
// every running container). What runs again comes back from the file. The
// heap the start-up left free goes back too: the Go runtime would keep it
// for minutes.
func releaseColdPages(ctx context.Context) {
	debug.FreeOSMemory()
	if n, err := procmem.PageOutFiles(os.Getpid()); err != nil {
		log.G(ctx).WithError(err).Debug("supervisor's cold pages stay")
	} else {
		log.G(ctx).Debugf("paged out %d bytes of the supervisor's files", n)
	}
}

func (s *supervisor) wait(ctx context.Context) {
	wait := s.ctr.Init().Wait
	if ownPIDNamespace(s.opts.Spec) {
		// The init's exit ends every process of the container, and with it
		// the VM: the guest flushes before it answers, and the VM's end
		// needs no further call into it. Without a PID namespace of its
		// own, processes may outlive the init and write on until the VM
		// ends, so the teardown asks the guest to flush then.
		wait = s.ctr.Init().WaitLast
	}
	status, err := wait(ctx)
	log.G(ctx).WithField("status", status).Debug("container exited")
	if err != nil {
		log.G(ctx).WithError(err).Warn("waiting for the container")
		if status < 0 {
			status = 255
		}
	}
	s.finish(ctx, int(status))
}

// finish tears the sandbox down, records the exit status and releases Run.
func (s *supervisor) finish(ctx context.Context, status int) {
	s.finishing.Store(true)
	s.finishOnce.Do(func() {
		s.teardown(ctx)
		s.mu.Lock()
		s.st.Status = state.Stopped
		s.st.ExitStatus = &status
		s.st.QEMU, s.st.Virtiofsd = 0, 0
		s.h.Save(&s.st)
		s.mu.Unlock()
		s.status = status
		close(s.exited)
	})
}

// teardown removes the container from the guest and the VM from the host.
func (s *supervisor) teardown(ctx context.Context) {
	var errs []error
	s.mu.Lock()
	execs := s.liveExecs
	s.mu.Unlock()
	switch {
	case s.ctr != nil && s.sb != nil && execs == 0:
		// The container is the VM's only one: ending the VM ends it, and
		// removing it in the guest first would only delay that.
		s.sb.Shutdown(ctx)
		errs = append(errs, s.ctr.Release())
	case s.ctr != nil:
		// Removing it in the guest kills the execs there; their callers
		// get their status and output before the VM goes.
		errs = append(errs, s.ctr.Delete(ctx, true))
		waitTimeout(&s.execs, execDrainTimeout)
	}
	if s.sb != nil {
		errs = append(errs, s.sb.Destroy(ctx))
	}
	errs = append(errs, s.cg.Destroy())
	if s.tty != nil {
		s.tty.close()
	}
	if err := errors.Join(errs...); err != nil {
		log.G(ctx).WithError(err).Warn("teardown")
	}
	log.G(ctx).Debug("torn down")
}

// rootfsPath is the spec's root path, relative to the bundle unless it is
// absolute.
func rootfsPath(bundle string, spec *specs.Spec) string {
	if spec.Root == nil {
		return ""
	}
	if filepath.IsAbs(spec.Root.Path) {
		return filepath.Clean(spec.Root.Path)
	}
	return filepath.Join(bundle, spec.Root.Path)
}

// Bounds on the process details in an answer to "ps", which must stay
// within maxAnswer beside up to 65,536 pids (some 720 KB of JSON): past
// maxDetailed processes only the pids go, and the details, as JSON,
// within detailBudget, command lines cut shorter until they fit (JSON
// escapes can make a byte of the guest's six).
const (
	maxDetailed  = 2048
	detailBudget = 256 << 10
)

func fitAnswer(procs []agentclient.Process) []agentclient.Process {
	if len(procs) == 0 || len(procs) > maxDetailed {
		return nil
	}
	for limit := 4096; limit >= 0; limit /= 4 {
		for i := range procs {
			if len(procs[i].Cmd) > limit {
				procs[i].Cmd = procs[i].Cmd[:limit]
			}
		}
		if b, err := json.Marshal(procs); err == nil && len(b) <= detailBudget {
			return procs
		}
		if limit == 0 {
			break
		}
	}
	return nil
}
