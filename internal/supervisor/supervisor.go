// Package supervisor is the host process that stands for one container of
// the hull command line: it owns the sandbox VM, virtiofsd and the
// container's stdio, answers the commands that follow `hull create`
// through a unix socket, forwards the signals it receives to the
// container's init, and exits with the container's exit status once the VM
// is gone, which is what conmon and other parents of a runc container
// process expect.
package supervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hull-runtime/hull/internal/config"
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
}

// supervisor is one run; its fields are set before the control socket
// serves, except those guarded by mu.
type supervisor struct {
	opts Options
	h    *state.Handle
	sb   *sandbox.Sandbox
	ctr  *sandbox.Container

	mu         sync.Mutex
	st         state.State // guarded by mu
	started    bool        // guarded by mu
	exited     chan struct{}
	finishOnce sync.Once
	status     int // valid once exited is closed
}

// Run boots the sandbox and creates the container, then calls ready with
// nil (or with the error that stopped it, after cleaning up), then serves
// until the container exits and its VM is gone. It returns the exit
// status the process should exit with.
func Run(ctx context.Context, opts Options, ready func(error)) int {
	s := &supervisor{opts: opts, exited: make(chan struct{})}
	if err := s.create(ctx); err != nil {
		ready(err)
		return 1
	}
	ready(nil)
	return s.serve(ctx)
}

func (s *supervisor) create(ctx context.Context) (retErr error) {
	h, err := s.opts.Store.Create(s.opts.ID)
	if err != nil {
		return err
	}
	s.h = h
	defer func() {
		if retErr != nil {
			s.teardown(context.WithoutCancel(ctx))
			h.Remove()
		}
	}()
	start, _ := state.StartTime(os.Getpid())
	s.st = state.State{
		ID: s.opts.ID, Bundle: s.opts.Bundle, Status: state.Creating, Created: time.Now().UTC(),
		Annotations: s.opts.Spec.Annotations, Supervisor: os.Getpid(), SupervisorStart: start, Owner: os.Geteuid(),
	}
	if err := h.Save(&s.st); err != nil {
		return err
	}
	dir := h.Dir()
	shared := filepath.Join(dir, "shared")
	if err := os.Mkdir(shared, 0o700); err != nil {
		return err
	}
	cfg := s.opts.Config
	sizeVM(&cfg, s.opts.Spec)
	hostname := s.opts.Spec.Hostname
	s.sb, err = sandbox.Boot(ctx, sandbox.Options{
		ID: sandboxID(s.opts.ID), Config: cfg, Accel: s.opts.Accel,
		RunDir: filepath.Join(dir, "vm"), SharedDir: shared, Hostname: hostname,
	})
	if err != nil {
		return err
	}
	s.st.QEMU, s.st.Virtiofsd = s.sb.VMPid(), s.sb.VirtiofsdPid()
	s.ctr, err = s.sb.CreateContainer(ctx, sandbox.ContainerConfig{
		ID: s.opts.ID, Bundle: s.opts.Bundle, Spec: s.opts.Spec, Stdio: s.opts.Stdio,
	})
	if err != nil {
		return err
	}
	s.st.Status = state.Created
	return h.Save(&s.st)
}

// sandboxID derives a VM name from a container id, which may be longer
// than a sandbox id may be.
func sandboxID(id string) string {
	if len(id) > 60 {
		return id[:60]
	}
	return id
}

// sizeVM sets vCPUs and memory from the spec's limits: the quota over the
// period gives CPUs, the memory limit plus the configured guest default
// gives memory (the guest's own kernel and agent need their share).
func sizeVM(cfg *config.Config, spec *specs.Spec) {
	if spec.Linux == nil || spec.Linux.Resources == nil {
		return
	}
	r := spec.Linux.Resources
	if r.CPU != nil && r.CPU.Quota != nil && *r.CPU.Quota > 0 && r.CPU.Period != nil && *r.CPU.Period > 0 {
		cpus := int((uint64(*r.CPU.Quota) + *r.CPU.Period - 1) / *r.CPU.Period)
		cfg.Hypervisor.VCPUs = max(cpus, 1)
	}
	if r.Memory != nil && r.Memory.Limit != nil && *r.Memory.Limit > 0 {
		cfg.Hypervisor.MemoryMiB += int(*r.Memory.Limit >> 20)
	}
}

func (s *supervisor) serve(ctx context.Context) int {
	l, err := net.Listen("unix", filepath.Join(s.h.Dir(), state.SocketFile))
	if err != nil {
		log.G(ctx).WithError(err).Error("control socket")
		s.teardown(ctx)
		return 1
	}
	defer l.Close()
	s.h.Unlock()
	go s.accept(ctx, l)
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	go s.forward(ctx, sigs)

	vmGone := s.sb.Done()
	select {
	case <-s.exited:
	case <-vmGone:
		log.G(ctx).Error("the sandbox VM exited under the container")
		s.finish(ctx, 128+int(syscall.SIGKILL))
	}
	signal.Stop(sigs)
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
		go s.handle(ctx, conn)
	}
}

func (s *supervisor) handle(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Minute))
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 4096), maxMessage)
	if !sc.Scan() {
		return
	}
	var req Request
	var err error
	if err = json.Unmarshal(sc.Bytes(), &req); err == nil {
		err = s.do(ctx, req)
	}
	var resp Response
	if err != nil {
		resp = Response{Error: err.Error(), Kind: kindOf(err)}
	}
	json.NewEncoder(conn).Encode(resp)
}

func (s *supervisor) do(ctx context.Context, req Request) error {
	switch req.Op {
	case "start":
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.started {
			return fmt.Errorf("container %s is not created but %s: %w", s.opts.ID, s.st.Status, errdefs.ErrFailedPrecondition)
		}
		if err := s.ctr.Start(ctx); err != nil {
			return err
		}
		s.started = true
		s.st.Status = state.Running
		if err := s.h.Save(&s.st); err != nil {
			return err
		}
		go s.wait(context.WithoutCancel(ctx))
		return nil
	case "kill":
		if req.Signal <= 0 || req.Signal > 64 {
			return fmt.Errorf("signal %d: %w", req.Signal, errdefs.ErrInvalidArgument)
		}
		s.mu.Lock()
		started := s.started
		s.mu.Unlock()
		if !started && (req.Signal == int(syscall.SIGKILL) || req.Signal == int(syscall.SIGTERM)) {
			go s.finish(context.WithoutCancel(ctx), 128+req.Signal)
			return nil
		}
		return s.ctr.Signal(ctx, uint32(req.Signal), req.All)
	}
	return fmt.Errorf("unknown request %q: %w", req.Op, errdefs.ErrInvalidArgument)
}

func (s *supervisor) wait(ctx context.Context) {
	status, err := s.ctr.Init().Wait(ctx)
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
	if s.ctr != nil {
		errs = append(errs, s.ctr.Delete(ctx, true))
	}
	if s.sb != nil {
		errs = append(errs, s.sb.Destroy(ctx))
	}
	if err := errors.Join(errs...); err != nil {
		log.G(ctx).WithError(err).Warn("teardown")
	}
}
