package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/pkg/shutdown"
	"github.com/containerd/containerd/protobuf"
	ptypes "github.com/containerd/containerd/protobuf/types"
	"github.com/containerd/containerd/runtime"
	"github.com/containerd/containerd/runtime/v2/shim"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hull-runtime/hull/internal/config"
	"github.com/hull-runtime/hull/internal/hooks"
	"github.com/hull-runtime/hull/internal/oci"
	"github.com/hull-runtime/hull/internal/procmem"
	"github.com/hull-runtime/hull/internal/sandbox"
	"github.com/hull-runtime/hull/internal/version"
)

// lostExitStatus is the exit status of a process whose VM went away under
// it: the guest can no longer say how it ended.
const lostExitStatus = 255

// maxAnyJSON bounds the JSON that comes in an Any from containerd (an exec
// process, updated resources).
const maxAnyJSON = 1 << 20

// service is the Task service of one shim: one pod, one VM.
type service struct {
	publisher shim.Publisher
	shutdown  shutdown.Service
	ns        string
	events    chan event

	mu sync.Mutex
	// pod is the shim's VM; nil until the first container is created and
	// again once its owner is deleted.
	pod        *pod                  // guarded by mu
	containers map[string]*container // guarded by mu
}

type event struct {
	topic string
	msg   any
}

// pod is the VM of a shim and what it needs on the host.
type pod struct {
	id    string // the grouping id: the CRI sandbox's, or the container's own
	owner string // the container whose deletion ends the VM
	dir   string
	sb    *sandbox.Sandbox
}

// container is a task of the shim.
type container struct {
	id     string
	bundle string
	spec   *specs.Spec
	// hostPid is what containerd gets as the pid of the container's
	// processes: the pod's QEMU, as Kata reports it. A guest pid means
	// nothing on the host, and a tool that acts on a task's pid there
	// (Docker kills it directly when a kill did not take, nsenter -t)
	// would hit whatever host process has that number.
	hostPid uint32
	rootfs  string // the mounted rootfs, empty when containerd mounted nothing
	ctr     *sandbox.Container
	init    *process
	execs   map[string]*process // guarded by service.mu
	// deleting is set while a Delete removes the container, so that a
	// second Delete finds nothing to delete. Guarded by service.mu.
	deleting bool
	// startMu orders the exit event after the start event.
	startMu sync.Mutex
	// pendingInitExit is the init's TaskExit, held back until its execs'
	// exits are sent (guarded by startMu): containerd and its clients take
	// the init's exit for the container's last event.
	pendingInitExit *eventstypes.TaskExit
}

// newService is the Task service's constructor for the plugin.
func newService(ctx context.Context, publisher shim.Publisher, sd shutdown.Service) (*service, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	s := &service{publisher: publisher, shutdown: sd, ns: ns, events: make(chan event, 128), containers: map[string]*container{}}
	go s.forward(namespaces.WithNamespace(context.WithoutCancel(ctx), ns))
	sd.RegisterCallback(func(ctx context.Context) error {
		s.destroyPod(ctx)
		close(s.events)
		return nil
	})
	return s, nil
}

// RegisterTTRPC serves the Task API; containerd 1.6 and 1.7 speak its v2.
func (s *service) RegisterTTRPC(server *ttrpc.Server) error {
	taskAPI.RegisterTaskService(server, s)
	return nil
}

// forward publishes events in the order they were queued.
func (s *service) forward(ctx context.Context) {
	for e := range s.events {
		if err := s.publisher.Publish(ctx, e.topic, e.msg); err != nil {
			log.G(ctx).WithError(err).WithField("topic", e.topic).Error("publish event")
		}
	}
	s.publisher.Close()
}

func (s *service) send(topic string, msg any) {
	defer func() {
		// After shutdown nobody listens.
		_ = recover()
	}()
	s.events <- event{topic, msg}
}

// rpcError translates at the RPC edge: containerd's client turns these
// codes back into errdefs.
func rpcError(err error) error {
	if err == nil {
		return nil
	}
	return errgrpc.ToGRPC(err)
}

func (s *service) get(id string) (*container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return nil, fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
	}
	return c, nil
}

func (s *service) process(id, execID string) (*container, *process, error) {
	c, err := s.get(id)
	if err != nil {
		return nil, nil, err
	}
	if execID == "" {
		return c, c.init, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := c.execs[execID]
	if !ok {
		return nil, nil, fmt.Errorf("exec %s in container %s: %w", execID, id, errdefs.ErrNotFound)
	}
	return c, p, nil
}

// Create boots the pod's VM for its first container, then creates the
// container in it.
func (s *service) Create(ctx context.Context, r *taskAPI.CreateTaskRequest) (_ *taskAPI.CreateTaskResponse, retErr error) {
	c, err := s.create(ctx, r)
	if err != nil {
		log.G(ctx).WithError(err).WithField("id", r.ID).Error("create")
		return nil, rpcError(err)
	}
	_, pid, _, _ := c.init.snapshot()
	s.send(runtime.TaskCreateEventTopic, &eventstypes.TaskCreate{
		ContainerID: r.ID, Bundle: r.Bundle, Rootfs: r.Rootfs, Checkpoint: r.Checkpoint, Pid: pid,
		IO: &eventstypes.TaskIO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
	})
	return &taskAPI.CreateTaskResponse{Pid: pid}, nil
}

func (s *service) create(ctx context.Context, r *taskAPI.CreateTaskRequest) (_ *container, retErr error) {
	if err := sandbox.ValidID(r.ID); err != nil {
		return nil, err
	}
	if r.Checkpoint != "" {
		return nil, fmt.Errorf("restore from a checkpoint: %w", errdefs.ErrNotImplemented)
	}
	spec, err := oci.LoadBundle(r.Bundle)
	if err != nil {
		return nil, err
	}
	if err := refuseHostNetwork(spec); err != nil {
		return nil, err
	}
	group, owner := groupOf(r.ID, spec)

	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.containers[r.ID]; ok {
		return nil, fmt.Errorf("container %s: %w", r.ID, errdefs.ErrAlreadyExists)
	}
	c := &container{id: r.ID, bundle: r.Bundle, spec: spec, execs: map[string]*process{}}
	if len(r.Rootfs) > 0 {
		c.rootfs = filepath.Join(r.Bundle, "rootfs")
		if err := mountRootfs(r.Rootfs, c.rootfs); err != nil {
			return nil, err
		}
		defer func() {
			if retErr != nil {
				unmountRootfs(ctx, c.rootfs)
			}
		}()
	}
	// prestart (deprecated) and createRuntime hooks run before the VM
	// boots: they may prepare the network namespace it mirrors.
	if h := spec.Hooks; h != nil {
		if err := hooks.Run(ctx, "prestart", h.Prestart, c.hookState(specs.StateCreating)); err != nil {
			return nil, err
		}
		if err := hooks.Run(ctx, "createRuntime", h.CreateRuntime, c.hookState(specs.StateCreating)); err != nil {
			return nil, err
		}
	}
	switch {
	case s.pod == nil && !owner:
		return nil, fmt.Errorf("container %s belongs to sandbox %s, which this shim does not run: %w", r.ID, group, errdefs.ErrFailedPrecondition)
	case s.pod == nil:
		if err := s.bootPod(ctx, group, r.ID, spec); err != nil {
			return nil, err
		}
		defer func() {
			if retErr != nil {
				s.destroyPodLocked(context.WithoutCancel(ctx))
			}
		}()
	case owner || s.pod.id != group:
		return nil, fmt.Errorf("container %s: this shim runs sandbox %s, not %s: %w", r.ID, s.pod.id, group, errdefs.ErrFailedPrecondition)
	}

	paths := stdioPaths{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal}
	c.init = newProcess(r.ID, "", paths, nil)
	hio, err := openIO(ctx, r.ID, s.ns, paths)
	if err != nil {
		return nil, err
	}
	// The spec decides the terminal; containerd's flag must agree.
	terminal := spec.Process != nil && spec.Process.Terminal
	c.hostPid = uint32(s.pod.sb.VMPid())
	ctr, err := s.pod.sb.CreateContainer(ctx, sandbox.ContainerConfig{ID: r.ID, Bundle: r.Bundle, Spec: s.guestNamespaces(spec, c.hostPid), Stdio: hio.stdio(terminal)})
	if err != nil {
		hio.close()
		return nil, err
	}
	c.ctr = ctr
	c.init.io, c.init.guest, c.init.pid = hio, ctr.Init(), c.hostPid
	if h := spec.Hooks; h != nil {
		if err := hooks.Run(ctx, "createContainer", h.CreateContainer, c.hookState(specs.StateCreated)); err != nil {
			if derr := ctr.Delete(ctx, true); derr != nil {
				log.G(ctx).WithError(derr).WithField("id", r.ID).Warn("remove container after failed hook")
			}
			hio.close()
			return nil, err
		}
	}
	s.containers[r.ID] = c
	go s.waitExit(c, c.init)
	return c, nil
}

// hookState is the state OCI hooks get on stdin. The container's processes
// are in the guest; the pid a hook sees is the shim's, which stands for
// them on the host.
func (c *container) hookState(status specs.ContainerState) specs.State {
	return specs.State{Version: specs.Version, ID: c.id, Status: status, Pid: os.Getpid(), Bundle: c.bundle, Annotations: c.spec.Annotations}
}

// refuseHostNetwork refuses a spec without a network namespace of its
// own: a VM cannot share the host's.
func refuseHostNetwork(spec *specs.Spec) error {
	if spec.Linux != nil {
		for _, ns := range spec.Linux.Namespaces {
			if ns.Type == specs.NetworkNamespace {
				return nil
			}
		}
	}
	return fmt.Errorf("host networking is not supported: a container in a VM cannot share the host's network namespace (the spec has no network namespace): %w", errdefs.ErrInvalidArgument)
}

// bootPod starts the VM. Called with mu held.
func (s *service) bootPod(ctx context.Context, group, owner string, spec *specs.Spec) (retErr error) {
	cfg, err := config.Load(config.Path(""), false)
	if err != nil {
		return err
	}
	accel, err := chooseAccel(ctx, cfg)
	if err != nil {
		return err
	}
	sizePod(&cfg, spec)
	dir := podDir(cfg.Runtime.Root, s.ns, group)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			removePodDir(dir)
		}
	}()
	sb, err := sandbox.Boot(ctx, sandbox.Options{
		ID: group, Config: cfg, Accel: accel,
		RunDir: filepath.Join(dir, "vm"), SharedDir: filepath.Join(dir, "shared"),
		Hostname: spec.Hostname, NetNS: sandbox.NetworkNamespacePath(spec),
		Pod: true,
		// The CRI's port forwarding dials the pod's loopback on the host.
		ForwardLoopback: true,
	})
	if err != nil {
		return err
	}
	s.pod = &pod{id: group, owner: owner, dir: dir, sb: sb}
	go s.watchVM(sb)
	go s.watchOOM(sb)
	log.G(ctx).WithFields(log.Fields{"sandbox": group, "accel": accel, "vcpus": cfg.Hypervisor.VCPUs, "memory_mib": cfg.Hypervisor.MemoryMiB}).Info("pod vm booted")
	return nil
}

// watchVM ends every process when the VM goes: nothing in it survives.
func (s *service) watchVM(sb *sandbox.Sandbox) {
	<-sb.Done()
	s.mu.Lock()
	var ps []*process
	var cs []*container
	for _, c := range s.containers {
		if c.ctr == nil {
			continue
		}
		ps = append(ps, c.init)
		cs = append(cs, c)
		for _, e := range c.execs {
			ps = append(ps, e)
			cs = append(cs, c)
		}
	}
	s.mu.Unlock()
	for i, p := range ps {
		s.exited(cs[i], p, lostExitStatus, time.Now())
	}
}

// waitExit waits for a process to end, its output included, and reports
// its exit.
func (s *service) waitExit(c *container, p *process) {
	ctx := context.Background()
	g, err := p.running()
	if err != nil {
		return
	}
	status, err := g.Wait(ctx)
	code := uint32(status)
	if err != nil {
		// Output that did not drain in time (a child left holding the
		// process's stdout, say) is no reason to lose a known status.
		log.G(ctx).WithError(err).WithField("process", p.name()).Warn("wait")
	}
	if status < 0 {
		code = lostExitStatus
	}
	if p.execID == "" && g.OOMKilled() {
		// Before the exit: containerd deletes the task at its exit, and
		// drops an OOM event that comes later (the guest's own may: the
		// kernel defers its notices of a killed init).
		s.send(runtime.TaskOOMEventTopic, &eventstypes.TaskOOM{ContainerID: c.id})
	}
	s.exited(c, p, code, time.Now())
}

// exited records an exit once and sends TaskExit after the process's
// start event, as containerd expects. The init's comes after the exits of
// its execs, as with runc's shim: those in a pid namespace of the
// container's own die with the init; those in a shared one are killed.
func (s *service) exited(c *container, p *process, code uint32, at time.Time) {
	c.startMu.Lock()
	defer c.startMu.Unlock()
	if !p.setExited(code, at) {
		return
	}
	_, pid, _, _ := p.snapshot()
	id := p.execID
	if id == "" {
		id = c.id
	}
	ev := &eventstypes.TaskExit{
		ContainerID: c.id, ID: id, Pid: pid, ExitStatus: code, ExitedAt: protobuf.ToTimestamp(at),
	}
	if p.execID == "" {
		if s.runningExecs(c) > 0 {
			c.pendingInitExit = ev
			go s.endExecs(c)
			return
		}
		s.send(runtime.TaskExitEventTopic, ev)
		return
	}
	s.send(runtime.TaskExitEventTopic, ev)
	if c.pendingInitExit != nil && s.runningExecs(c) == 0 {
		s.send(runtime.TaskExitEventTopic, c.pendingInitExit)
		c.pendingInitExit = nil
	}
}

// initExitHold bounds how long the init's exit waits for its execs'.
const initExitHold = 10 * time.Second

// runningExecs counts c's execs that run.
func (s *service) runningExecs(c *container) int {
	s.mu.Lock()
	execs := make([]*process, 0, len(c.execs))
	for _, e := range c.execs {
		execs = append(execs, e)
	}
	s.mu.Unlock()
	n := 0
	for _, e := range execs {
		if st, _, _, _ := e.snapshot(); st == task.Status_RUNNING || st == task.Status_PAUSED {
			n++
		}
	}
	return n
}

// endExecs kills the execs of a container whose init exited, unless its
// own pid namespace ended them already, and sends the init's exit once
// they are gone or initExitHold has passed.
func (s *service) endExecs(c *container) {
	if c.ctr != nil && !ownPidNamespace(c.spec) {
		ctx, cancel := context.WithTimeout(context.Background(), initExitHold)
		if err := c.ctr.Signal(ctx, uint32(syscall.SIGKILL), true); err != nil {
			log.G(ctx).WithError(err).WithField("id", c.id).Debug("killing the execs of an ended init")
		}
		cancel()
	}
	time.Sleep(initExitHold)
	c.startMu.Lock()
	defer c.startMu.Unlock()
	if c.pendingInitExit != nil {
		log.G(context.Background()).WithField("id", c.id).Warn("execs still run after their init's exit; sending its exit")
		s.send(runtime.TaskExitEventTopic, c.pendingInitExit)
		c.pendingInitExit = nil
	}
}

// guestNamespaces returns spec as the guest must see it: containerd names
// the pod's namespaces as those of the sandbox task's pid, which is the
// pod's QEMU on the host (hostPid); in the guest they are those of the
// sandbox container's init. spec itself is not changed: hooks and the
// host keep containerd's. Called with mu held.
func (s *service) guestNamespaces(spec *specs.Spec, hostPid uint32) *specs.Spec {
	if s.pod == nil {
		return spec
	}
	owner, ok := s.containers[s.pod.owner]
	if !ok || owner.init == nil || owner.init.guest == nil {
		return spec
	}
	return rewriteNamespaces(spec, hostPid, owner.init.guest.Pid())
}

// rewriteNamespaces returns spec with its namespace paths of process
// hostPid (/proc/hostPid/ns/...) made those of guestPid; other paths go
// as they are. spec is copied where it changes.
func rewriteNamespaces(spec *specs.Spec, hostPid, guestPid uint32) *specs.Spec {
	if spec.Linux == nil {
		return spec
	}
	prefix := fmt.Sprintf("/proc/%d/ns/", hostPid)
	guestPrefix := fmt.Sprintf("/proc/%d/ns/", guestPid)
	var out *specs.Spec
	for i, ns := range spec.Linux.Namespaces {
		if !strings.HasPrefix(ns.Path, prefix) {
			continue
		}
		if out == nil {
			cp := *spec
			lx := *spec.Linux
			lx.Namespaces = slices.Clone(spec.Linux.Namespaces)
			cp.Linux = &lx
			out = &cp
		}
		out.Linux.Namespaces[i].Path = guestPrefix + strings.TrimPrefix(ns.Path, prefix)
	}
	if out == nil {
		return spec
	}
	return out
}

// ownPidNamespace tells whether the spec gives the container a pid
// namespace of its own.
func ownPidNamespace(spec *specs.Spec) bool {
	if spec == nil || spec.Linux == nil {
		return false
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.PIDNamespace {
			return ns.Path == ""
		}
	}
	return false
}

// Start runs a created container's process, or an exec process.
func (s *service) Start(ctx context.Context, r *taskAPI.StartRequest) (*taskAPI.StartResponse, error) {
	c, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, rpcError(err)
	}
	c.startMu.Lock()
	defer c.startMu.Unlock()
	status, _, _, _ := p.snapshot()
	if status != task.Status_CREATED {
		return nil, rpcError(fmt.Errorf("process %s is %s, not created: %w", p.name(), strings.ToLower(status.String()), errdefs.ErrFailedPrecondition))
	}
	if r.ExecID == "" {
		// startContainer hooks run in the container, in the guest, as it
		// starts.
		if err := c.ctr.Start(ctx); err != nil {
			return nil, rpcError(err)
		}
		// A poststart hook that fails is logged; the container runs on.
		if h := c.spec.Hooks; h != nil {
			if err := hooks.RunAll(ctx, "poststart", h.Poststart, c.hookState(specs.StateRunning)); err != nil {
				log.G(ctx).WithError(err).WithField("id", c.id).Warn("poststart hook")
			}
		}
		p.mu.Lock()
		if p.status == task.Status_CREATED {
			p.status = task.Status_RUNNING
		}
		pid := p.pid
		p.mu.Unlock()
		s.send(runtime.TaskStartEventTopic, &eventstypes.TaskStart{ContainerID: c.id, Pid: pid})
		// The shim now mostly waits: its start-up code can leave memory
		// (what runs again comes back from the file; pages other shims map
		// too stay, see procmem.PageOutFiles), and so can the heap it left
		// free, which the Go runtime would keep for minutes.
		go func() {
			debug.FreeOSMemory()
			if _, err := procmem.PageOutFiles(os.Getpid()); err != nil {
				log.G(ctx).WithError(err).Debug("shim's cold pages stay")
			}
		}()
		return &taskAPI.StartResponse{Pid: pid}, nil
	}
	hio, err := openIO(ctx, c.id, s.ns, p.paths)
	if err != nil {
		// Its Wait must end too, as with runc: CRI waits on an exec
		// without a deadline.
		p.setExited(lostExitStatus, time.Now())
		return nil, rpcError(err)
	}
	g, err := c.ctr.Exec(ctx, r.ExecID, p.spec, hio.stdio(p.spec.Terminal))
	if err != nil {
		hio.close()
		p.setExited(lostExitStatus, time.Now())
		return nil, rpcError(err)
	}
	p.mu.Lock()
	p.io, p.guest, p.pid, p.status = hio, g, c.hostPid, task.Status_RUNNING
	p.mu.Unlock()
	s.send(runtime.TaskExecStartedEventTopic, &eventstypes.TaskExecStarted{ContainerID: c.id, ExecID: r.ExecID, Pid: c.hostPid})
	go s.waitExit(c, p)
	return &taskAPI.StartResponse{Pid: c.hostPid}, nil
}

// Delete removes an exited exec, or a container; deleting the pod's owner
// ends the VM.
func (s *service) Delete(ctx context.Context, r *taskAPI.DeleteRequest) (*taskAPI.DeleteResponse, error) {
	c, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, rpcError(err)
	}
	status, pid, code, at := p.snapshot()
	if status == task.Status_RUNNING || status == task.Status_PAUSED {
		return nil, rpcError(fmt.Errorf("process %s is running: %w", p.name(), errdefs.ErrFailedPrecondition))
	}
	if r.ExecID != "" {
		if status == task.Status_CREATED {
			// Never started: whoever waits on it is told it is over.
			p.setExited(lostExitStatus, time.Now())
			_, _, code, at = p.snapshot()
		}
		s.mu.Lock()
		delete(c.execs, r.ExecID)
		s.mu.Unlock()
		return &taskAPI.DeleteResponse{Pid: pid, ExitStatus: code, ExitedAt: protobuf.ToTimestamp(at)}, nil
	}
	s.mu.Lock()
	if s.containers[c.id] != c || c.deleting {
		s.mu.Unlock()
		return nil, rpcError(fmt.Errorf("container %s is deleted already: %w", c.id, errdefs.ErrNotFound))
	}
	c.deleting = true
	owner := s.pod != nil && s.pod.owner == c.id
	s.mu.Unlock()
	// A container deleted before it ran is killed in the guest first.
	var errs []error
	if err := c.ctr.Delete(ctx, true); err != nil {
		if !owner {
			// Still in the guest, and its mounts on the host: kept, so
			// that containerd's retry finds it (as runc's delete fails).
			s.mu.Lock()
			c.deleting = false
			s.mu.Unlock()
			return nil, rpcError(err)
		}
		// The owner's VM goes below, and all in it.
		errs = append(errs, err)
	}
	if status == task.Status_CREATED {
		p.setExited(lostExitStatus, time.Now())
		_, _, code, at = p.snapshot()
	}
	if c.rootfs != "" {
		unmountRootfs(ctx, c.rootfs)
	}
	s.mu.Lock()
	delete(s.containers, c.id)
	if s.pod != nil && s.pod.owner == c.id {
		s.destroyPodLocked(ctx)
	}
	s.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		log.G(ctx).WithError(err).WithField("id", c.id).Warn("delete")
	}
	if err := hooks.Poststop(ctx, c.spec, c.hookState(specs.StateStopped)); err != nil {
		log.G(ctx).WithError(err).WithField("id", c.id).Warn("poststop hook")
	}
	s.send(runtime.TaskDeleteEventTopic, &eventstypes.TaskDelete{ContainerID: c.id, Pid: pid, ExitStatus: code, ExitedAt: protobuf.ToTimestamp(at)})
	return &taskAPI.DeleteResponse{Pid: pid, ExitStatus: code, ExitedAt: protobuf.ToTimestamp(at)}, nil
}

func (s *service) destroyPod(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.destroyPodLocked(ctx)
}

// destroyPodLocked powers the VM off and releases its host resources.
// Called with mu held.
func (s *service) destroyPodLocked(ctx context.Context) {
	if s.pod == nil {
		return
	}
	// containerd runs this shim's cleanup command (Manager.Stop) when its
	// connection closes, which can come while the pod is still going down
	// here: the lock keeps the two from tearing the same pod down at once.
	unlock, err := lockDir(s.pod.dir)
	if err != nil {
		log.G(ctx).WithError(err).WithField("sandbox", s.pod.id).Warn("pod directory lock")
		unlock = func() {}
	}
	defer unlock()
	if err := s.pod.sb.Destroy(ctx); err != nil {
		log.G(ctx).WithError(err).WithField("sandbox", s.pod.id).Warn("destroy pod vm")
		// Destroy keeps the record when part of the sandbox stayed; the
		// record's reclaim retries it now, as nothing here would later
		// (containerd's cleanup command runs only if this shim dies).
		if err := sandbox.Reclaim(ctx, filepath.Join(s.pod.dir, "vm")); err != nil {
			log.G(ctx).WithError(err).WithField("sandbox", s.pod.id).Warn("reclaim pod vm")
		}
	}
	removePodDir(s.pod.dir)
	s.pod = nil
}

// Exec records an exec process; Start runs it.
func (s *service) Exec(ctx context.Context, r *taskAPI.ExecProcessRequest) (*ptypes.Empty, error) {
	if err := sandbox.ValidID(r.ExecID); err != nil {
		return nil, rpcError(err)
	}
	c, err := s.get(r.ID)
	if err != nil {
		return nil, rpcError(err)
	}
	if c.init.hasExited() {
		return nil, rpcError(fmt.Errorf("container %s has exited: %w", r.ID, errdefs.ErrFailedPrecondition))
	}
	if r.Spec == nil || len(r.Spec.Value) > maxAnyJSON {
		return nil, rpcError(fmt.Errorf("exec %s: missing or oversized process spec: %w", r.ExecID, errdefs.ErrInvalidArgument))
	}
	var proc specs.Process
	if err := json.Unmarshal(r.Spec.Value, &proc); err != nil {
		return nil, rpcError(fmt.Errorf("exec %s: process spec: %w: %w", r.ExecID, err, errdefs.ErrInvalidArgument))
	}
	s.mu.Lock()
	if _, ok := c.execs[r.ExecID]; ok {
		s.mu.Unlock()
		return nil, rpcError(fmt.Errorf("exec %s in container %s: %w", r.ExecID, r.ID, errdefs.ErrAlreadyExists))
	}
	c.execs[r.ExecID] = newProcess(r.ID, r.ExecID, stdioPaths{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal}, &proc)
	s.mu.Unlock()
	s.send(runtime.TaskExecAddedEventTopic, &eventstypes.TaskExecAdded{ContainerID: r.ID, ExecID: r.ExecID})
	return &ptypes.Empty{}, nil
}

// State reports a process's status.
func (s *service) State(ctx context.Context, r *taskAPI.StateRequest) (*taskAPI.StateResponse, error) {
	c, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, rpcError(err)
	}
	status, pid, code, at := p.snapshot()
	resp := &taskAPI.StateResponse{
		ID: r.ID, ExecID: r.ExecID, Bundle: c.bundle, Pid: pid, Status: status,
		Stdin: p.paths.Stdin, Stdout: p.paths.Stdout, Stderr: p.paths.Stderr, Terminal: p.paths.Terminal,
		ExitStatus: code,
	}
	if status == task.Status_STOPPED {
		resp.ExitedAt = protobuf.ToTimestamp(at)
	}
	return resp, nil
}

// Kill signals a process, or every process of a container.
func (s *service) Kill(ctx context.Context, r *taskAPI.KillRequest) (*ptypes.Empty, error) {
	c, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, rpcError(err)
	}
	if p.hasExited() {
		return nil, rpcError(fmt.Errorf("process %s: %w", p.name(), errFinished))
	}
	if r.ExecID != "" {
		if _, err := p.running(); err != nil {
			return nil, rpcError(err)
		}
	}
	if err := c.ctr.SignalProcess(ctx, r.ExecID, r.Signal, r.All); err != nil {
		if p.hasExited() || errdefs.IsNotFound(err) {
			return nil, rpcError(fmt.Errorf("process %s: %w", p.name(), errFinished))
		}
		return nil, rpcError(err)
	}
	return &ptypes.Empty{}, nil
}

// Wait blocks until the process has exited.
func (s *service) Wait(ctx context.Context, r *taskAPI.WaitRequest) (*taskAPI.WaitResponse, error) {
	_, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, rpcError(err)
	}
	select {
	case <-p.exited:
	case <-ctx.Done():
		return nil, rpcError(ctx.Err())
	}
	_, _, code, at := p.snapshot()
	return &taskAPI.WaitResponse{ExitStatus: code, ExitedAt: protobuf.ToTimestamp(at)}, nil
}

// Pids lists the guest pids of a container's processes.
func (s *service) Pids(ctx context.Context, r *taskAPI.PidsRequest) (*taskAPI.PidsResponse, error) {
	c, err := s.get(r.ID)
	if err != nil {
		return nil, rpcError(err)
	}
	pids, err := c.ctr.Processes(ctx)
	if err != nil {
		return nil, rpcError(err)
	}
	resp := &taskAPI.PidsResponse{}
	for _, pid := range pids {
		resp.Processes = append(resp.Processes, &task.ProcessInfo{Pid: pid})
	}
	return resp, nil
}

// ResizePty sets a process's terminal size.
func (s *service) ResizePty(ctx context.Context, r *taskAPI.ResizePtyRequest) (*ptypes.Empty, error) {
	c, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, rpcError(err)
	}
	if _, err := p.running(); err != nil {
		return nil, rpcError(err)
	}
	if err := c.ctr.ResizePty(ctx, r.ExecID, r.Width, r.Height); err != nil {
		return nil, rpcError(err)
	}
	return &ptypes.Empty{}, nil
}

// CloseIO closes a process's stdin.
func (s *service) CloseIO(ctx context.Context, r *taskAPI.CloseIORequest) (*ptypes.Empty, error) {
	_, p, err := s.process(r.ID, r.ExecID)
	if err != nil {
		return nil, rpcError(err)
	}
	if r.Stdin {
		p.mu.Lock()
		h := p.io
		p.mu.Unlock()
		if h != nil {
			h.closeStdin()
		}
	}
	return &ptypes.Empty{}, nil
}

// Checkpoint is not supported: a VM's containers cannot be checkpointed
// with CRIU from the host.
func (s *service) Checkpoint(ctx context.Context, r *taskAPI.CheckpointTaskRequest) (*ptypes.Empty, error) {
	return nil, rpcError(fmt.Errorf("checkpoint of container %s: not implemented by hull: %w", r.ID, errdefs.ErrNotImplemented))
}

// Connect tells containerd the shim's and the task's pids.
func (s *service) Connect(ctx context.Context, r *taskAPI.ConnectRequest) (*taskAPI.ConnectResponse, error) {
	resp := &taskAPI.ConnectResponse{ShimPid: uint32(os.Getpid()), Version: version.Version}
	if c, err := s.get(r.ID); err == nil {
		_, resp.TaskPid, _, _ = c.init.snapshot()
	}
	return resp, nil
}

// Shutdown ends the shim once it runs no container.
func (s *service) Shutdown(ctx context.Context, r *taskAPI.ShutdownRequest) (*ptypes.Empty, error) {
	s.mu.Lock()
	n := len(s.containers)
	s.mu.Unlock()
	if n > 0 {
		return &ptypes.Empty{}, nil
	}
	s.shutdown.Shutdown()
	return &ptypes.Empty{}, nil
}

// mountRootfs mounts what containerd prepared (an overlay of the image's
// snapshot, usually) at the bundle's rootfs.
func mountRootfs(ms []*mountType, target string) error {
	mounts := make([]mount.Mount, 0, len(ms))
	for _, m := range ms {
		mounts = append(mounts, mount.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	if err := os.MkdirAll(target, 0o711); err != nil {
		return err
	}
	if err := mount.All(mounts, target); err != nil {
		return fmt.Errorf("mount rootfs at %s: %w", target, err)
	}
	return nil
}

func unmountRootfs(ctx context.Context, target string) {
	if err := mount.UnmountAll(target, 0); err != nil {
		log.G(ctx).WithError(err).WithField("rootfs", target).Warn("unmount rootfs")
	}
}
