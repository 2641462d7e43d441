// Package container runs OCI containers in the guest with runc's
// libcontainer, and connects their processes to the streams of the IO
// session.
//
// The agent binary doubles as libcontainer's "runc init": its main must
// call libcontainer.Init when started with the argument "init", and link
// the nsenter package (cgo) that does the namespace setup before the Go
// runtime starts.
package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	api "github.com/hull-runtime/hull/api/agent/v1"
	"github.com/hull-runtime/hull/internal/guest/initsys"
	"github.com/hull-runtime/hull/internal/guest/iosession"
)

const (
	// DefaultStateRoot is where libcontainer keeps container state.
	DefaultStateRoot = "/run/hull/containers"
	// DefaultCgroupParent is the parent cgroup of containers whose spec
	// names none.
	DefaultCgroupParent = "/hull"
	// DefaultStreamTimeout bounds the wait for a process's streams.
	DefaultStreamTimeout = 10 * time.Second
	// removeTimeout bounds the wait for a killed container's processes.
	removeTimeout = 10 * time.Second
)

// Config is what an Engine needs.
type Config struct {
	// StateRoot is libcontainer's state directory (DefaultStateRoot when
	// empty).
	StateRoot string
	// CgroupParent is the parent of the cgroups of containers whose spec
	// has no cgroupsPath (DefaultCgroupParent when empty).
	CgroupParent string
	// Reaper is told which children the engine waits for itself. Nil
	// when nothing else in the process reaps children.
	Reaper *initsys.Reaper
	// Streams is where processes find their standard streams.
	Streams *iosession.Server
	// StreamTimeout bounds the wait for a process's streams
	// (DefaultStreamTimeout when 0).
	StreamTimeout time.Duration
	// OOMEvents is how many OOM events the engine keeps
	// (DefaultOOMEvents when 0).
	OOMEvents int
	// InitPath is hull-init, which sets up the containers it can instead
	// of libcontainer's re-executed agent; empty: libcontainer does all.
	InitPath string
	Log      *logrus.Entry
}

// Engine holds the containers of the sandbox.
type Engine struct {
	cfg Config

	mu sync.Mutex
	// containers maps ids to containers; a nil value reserves the id of a
	// container being created. Guarded by mu.
	containers map[string]*Container

	// oom records the OOM kills in the containers.
	oom *OOMEvents
}

// NewEngine returns an engine with no containers.
func NewEngine(cfg Config) *Engine {
	if cfg.StateRoot == "" {
		cfg.StateRoot = DefaultStateRoot
	}
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = DefaultCgroupParent
	}
	if cfg.StreamTimeout <= 0 {
		cfg.StreamTimeout = DefaultStreamTimeout
	}
	if cfg.Log == nil {
		cfg.Log = logrus.NewEntry(logrus.StandardLogger())
	}
	return &Engine{cfg: cfg, containers: make(map[string]*Container), oom: NewOOMEvents(cfg.OOMEvents)}
}

// Container is a created container. Its processes live as long as it.
type Container struct {
	// Set at creation, then read-only.
	id   string
	init *Process
	// lc is libcontainer's handle of the container, made on first use
	// (handle) for a container that hull-init started: hull run's
	// container often needs none.
	lc       *libcontainer.Container // guarded by lcMu
	lcMu     sync.Mutex
	lcLoaded bool // guarded by lcMu
	lcLoad   func() (*libcontainer.Container, error)
	// leanCgroups are the cgroup paths of a container hull-init started.
	leanCgroups map[string]string
	log         *logrus.Entry
	// lean is the init that hull-init started, until it runs the program
	// (guarded by mu); nil when libcontainer started it.
	lean *leanInit
	// cgroupV2 tells the cgroup version; memCgroup is the cgroup
	// directory with the memory controller.
	cgroupV2  bool
	memCgroup string
	// oom follows the container's OOM kills; nil if it could not.
	oom *oomWatch

	// cgMu serializes the calls that change the cgroup (update, pause,
	// resume), so that an update applies to the config of the last.
	cgMu sync.Mutex

	mu       sync.Mutex
	started  bool                // guarded by mu
	removing bool                // guarded by mu
	execs    map[string]*Process // nil value: being started; guarded by mu
	// execsStarting counts execs between reservation and start; Remove
	// waits for them.
	execsStarting sync.WaitGroup
}

func notFound(id string) error {
	return fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
}

func (e *Engine) get(id string) (*Container, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.containers[id]
	if !ok {
		return nil, notFound(id)
	}
	if c == nil {
		return nil, fmt.Errorf("container %q is being created: %w", id, errdefs.ErrFailedPrecondition)
	}
	return c, nil
}

// process returns the init (execID "") or an exec process of c.
func (c *Container) process(execID string) (*Process, error) {
	if execID == "" {
		return c.init, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.execs[execID]
	if p == nil {
		return nil, fmt.Errorf("exec %q of container %q: %w", execID, c.id, errdefs.ErrNotFound)
	}
	return p, nil
}

// Create creates container id from spec (config.json, with guest paths)
// and starts its init, which waits for Start before running the user's
// program. It returns the init's pid. bundle is the bundle's path on the
// host, which the state given to startContainer hooks names.
func (e *Engine) Create(ctx context.Context, id, bundle string, specJSON []byte, stdio Stdio) (pid int, retErr error) {
	if err := ValidateID("container", id); err != nil {
		return 0, err
	}
	steps := newStepTimer()
	spec, err := parseSpec(specJSON)
	if err != nil {
		return 0, err
	}
	if spec.Process.Terminal != stdio.Terminal {
		return 0, fmt.Errorf("stdio.terminal is %v but process.terminal %v: %w", stdio.Terminal, spec.Process.Terminal, errdefs.ErrInvalidArgument)
	}
	if err := e.applyVMNetSysctls(spec); err != nil {
		return 0, err
	}
	allowStatx(spec)
	fifoDevices(spec)
	e.automount(spec)

	e.mu.Lock()
	if _, ok := e.containers[id]; ok {
		e.mu.Unlock()
		return 0, fmt.Errorf("container %q: %w", id, errdefs.ErrAlreadyExists)
	}
	e.containers[id] = nil
	e.mu.Unlock()
	defer func() {
		if retErr != nil {
			e.mu.Lock()
			delete(e.containers, id)
			e.mu.Unlock()
		}
	}()

	// Hooks run on the host, which has what they need (netns, devices),
	// but for startContainer's: the runtime spec has them resolved and
	// run in the container, which libcontainer's init does as it starts
	// the program.
	if h := spec.Hooks; h != nil && len(h.StartContainer) > 0 {
		spec.Hooks = &specs.Hooks{StartContainer: h.StartContainer}
	} else {
		spec.Hooks = nil
	}
	if spec.Linux.CgroupsPath == "" {
		spec.Linux.CgroupsPath = path.Join(e.cfg.CgroupParent, id)
	}
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: id, Spec: spec})
	if err != nil {
		return 0, fmt.Errorf("spec: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	// The hooks' state names the host's bundle, not the agent's
	// directory (specconv's guess).
	for i, l := range cfg.Labels {
		if strings.HasPrefix(l, "bundle=") {
			cfg.Labels[i] = "bundle=" + bundle
		}
	}
	lp, err := processConfig(spec.Process, true)
	if err != nil {
		return 0, err
	}
	steps.done("spec")

	log := e.cfg.Log.WithField("container", id)
	pio, err := e.takeStreams(ctx, id, "", stdio, log)
	if err != nil {
		return 0, err
	}
	steps.done("streams")
	lc, err := libcontainer.Create(e.cfg.StateRoot, id, cfg)
	if err != nil {
		pio.abort()
		if errors.Is(err, libcontainer.ErrExist) {
			return 0, fmt.Errorf("container %q: state left in %s: %w", id, e.cfg.StateRoot, errdefs.ErrAlreadyExists)
		}
		return 0, fmt.Errorf("creating container %q: %w", id, err)
	}
	steps.done("state")
	var (
		p    *Process
		lean *leanInit
	)
	var (
		lcLoad      func() (*libcontainer.Container, error)
		cgroupPaths map[string]string
	)
	lpl, err := e.leanPlan(id, cfg, lp, stdio.Terminal)
	if err == nil {
		p, lean, cgroupPaths, err = e.startLean(id, cfg, lpl, lp, pio, steps)
		if err == nil {
			lcLoad, err = e.leanState(id, cfg, p.pid, cgroupPaths)
			if err != nil {
				lean.close()
				_ = p.proc.Signal(unix.SIGKILL)
				<-p.done
			}
		}
	} else {
		if !errors.Is(err, errUnsupported) {
			pio.abort()
			if derr := lc.Destroy(); derr != nil {
				log.WithError(derr).Warn("destroying the failed container")
			}
			return 0, err
		}
		log.WithError(err).Debug("libcontainer sets this container up")
		p, err = e.start(lc.Start, lp, pio, stdio.Terminal, "")
	}
	if err != nil {
		if derr := lc.Destroy(); derr != nil {
			log.WithError(derr).Warn("destroying the failed container")
		}
		return 0, fmt.Errorf("starting the init of container %q: %w", id, err)
	}
	// The init is set up (namespaces, cgroup, mounts, pivot_root,
	// capabilities, seccomp) and waits on the exec fifo.
	steps.done("init")
	c := &Container{id: id, lc: lc, lcLoad: lcLoad, leanCgroups: cgroupPaths, init: p, lean: lean, execs: make(map[string]*Process), log: log}
	c.cgroupV2 = cgroups.IsCgroup2UnifiedMode()
	if paths, err := c.cgroupPaths(); err != nil {
		log.WithError(err).Warn("container state")
	} else if c.cgroupV2 {
		c.memCgroup = paths[""]
	} else {
		c.memCgroup = paths["memory"]
	}
	c.oom, err = watchOOM(c.memCgroup, c.cgroupV2, func() { e.oom.Add(id) }, log)
	if err != nil {
		log.WithError(err).Warn("no OOM events for this container")
	}
	steps.done("oom")
	e.mu.Lock()
	e.containers[id] = c
	e.mu.Unlock()
	setUpBy := "hull-init"
	if lean == nil {
		setUpBy = "libcontainer"
	}
	steps.log(log.WithField("init", setUpBy), "container created")
	return p.pid, nil
}

// handle returns libcontainer's handle of the container, loading it on
// first use. While the state cannot be loaded, it is the handle
// libcontainer made before the init started: that one removes the state
// and cgroup, and tells the rest that the container does not run.
func (c *Container) handle() *libcontainer.Container {
	c.lcMu.Lock()
	defer c.lcMu.Unlock()
	if c.lcLoad == nil || c.lcLoaded {
		return c.lc
	}
	lc, err := c.lcLoad()
	if err != nil {
		// Tried again on the next call (a full disk, say).
		c.log.WithError(err).Error("loading the container's state")
		return c.lc
	}
	c.lc, c.lcLoaded = lc, true
	return c.lc
}

// cgroupPaths are the container's cgroup directories.
func (c *Container) cgroupPaths() (map[string]string, error) {
	if c.lcLoad != nil {
		return c.leanCgroups, nil
	}
	st, err := c.handle().State()
	if err != nil {
		return nil, err
	}
	return st.CgroupPaths, nil
}

// Prepare makes what every container's creation needs and need not wait
// for: the parent cgroup, with its controllers enabled below it. Making
// (and removing) a cgroup there once also has the kernel's code for it
// translated, under TCG, before the first container asks.
func (e *Engine) Prepare() error {
	warm := &cgroups.Cgroup{Path: path.Join(e.cfg.CgroupParent, ".prepare"), Resources: &cgroups.Resources{}}
	mgr, err := manager.New(warm)
	if err != nil {
		return err
	}
	if err := mgr.Apply(-1); err != nil {
		return fmt.Errorf("cgroup %s: %w", warm.Path, err)
	}
	return mgr.Destroy()
}

// leanPlan returns hull-init's plan for the container, or errUnsupported
// when libcontainer is to set it up.
func (e *Engine) leanPlan(id string, cfg *configs.Config, lp *libcontainerProcess, terminal bool) (*leanPlan, error) {
	if e.cfg.InitPath == "" {
		return nil, fmt.Errorf("no hull-init: %w", errUnsupported)
	}
	return buildPlan(id, cfg, lp, terminal)
}

func (e *Engine) takeStreams(ctx context.Context, id, execID string, stdio Stdio, log *logrus.Entry) (*procIO, error) {
	if e.cfg.Streams == nil {
		if stdio.Stdin || stdio.Stdout || stdio.Stderr {
			return nil, fmt.Errorf("this agent has no IO session: %w", errdefs.ErrFailedPrecondition)
		}
		return &procIO{log: log}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.StreamTimeout)
	defer cancel()
	return takeStreams(ctx, e.cfg.Streams, id, execID, stdio, log)
}

// start starts lp with run (libcontainer's Start or Run) and its IO. The
// reaper is held off while libcontainer starts and waits for its helper
// processes, and the new process's pid is claimed before the hold ends.
func (e *Engine) start(run func(*libcontainer.Process) error, lp *libcontainerProcess, pio *procIO, terminal bool, execID string) (*Process, error) {
	if err := pio.prepare(lp, terminal); err != nil {
		return nil, err
	}
	release, claim := func() {}, func(int) func() { return func() {} }
	if r := e.cfg.Reaper; r != nil {
		release, claim = r.Hold(), r.Claim
	}
	if err := run(lp); err != nil {
		release()
		pio.abort()
		return nil, err
	}
	pid, err := lp.Pid()
	if err != nil {
		release()
		pio.abort()
		return nil, err
	}
	unclaim := claim(pid)
	release()

	p := &Process{execID: execID, proc: lp, pid: pid, io: pio, done: make(chan struct{})}
	if err := pio.started(); err != nil {
		_ = lp.Signal(unix.SIGKILL)
		_, _ = lp.Wait()
		unclaim()
		return nil, err
	}
	go p.wait(unclaim)
	return p, nil
}

// Start runs the user's program of a created container.
func (e *Engine) Start(id string) error {
	c, err := e.get(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	switch {
	case c.removing:
		c.mu.Unlock()
		return fmt.Errorf("container %q is being removed: %w", id, errdefs.ErrFailedPrecondition)
	case c.started:
		c.mu.Unlock()
		return fmt.Errorf("container %q already started: %w", id, errdefs.ErrFailedPrecondition)
	case c.init.hasExited():
		c.mu.Unlock()
		return fmt.Errorf("container %q: init exited before start: %w", id, errdefs.ErrFailedPrecondition)
	}
	steps := newStepTimer()
	if l := c.lean; l != nil {
		c.lean = nil
		c.started = true
		err := l.begin()
		c.mu.Unlock()
		if err == nil {
			// Returns once the program runs; outside the lock, as for
			// libcontainer's start below.
			err = l.wait()
		}
		if err != nil {
			return fmt.Errorf("starting container %q: %w", id, err)
		}
		steps.done("exec")
		steps.log(e.cfg.Log.WithField("container", id), "container started")
		return nil
	}
	if err := c.handle().Exec(); err != nil {
		c.mu.Unlock()
		return fmt.Errorf("starting container %q: %w", id, err)
	}
	c.started = true
	c.mu.Unlock()
	steps.done("exec")
	// Outside the lock: an exec or a removal need not wait for it. Not a
	// failure of the start: the program may still be on its way.
	hooks := c.handle().Config().Hooks[configs.StartContainer]
	execd, err := waitExec(c.init.pid, execWaitLimit+hooksLimit(hooks), execWaitPoll)
	if errors.Is(err, errInitGone) {
		// Reaped already: its wait saw how it ended.
		execd, err = !c.init.endedInInit.Load(), nil
	}
	if err != nil {
		e.cfg.Log.WithField("container", id).WithError(err).Warn("not known to run its program")
	} else if !execd && len(hooks) > 0 {
		// libcontainer's init runs them after the start's go-ahead and
		// ends when one fails; the runtime spec wants the start to fail.
		return fmt.Errorf("starting container %q: its init ended before it ran the program: a startContainer hook failed (the agent's log has its output): %w", id, errdefs.ErrFailedPrecondition)
	}
	steps.done("running")
	steps.log(e.cfg.Log.WithField("container", id), "container started")
	return nil
}

// hooksLimit is how long hooks may take to run: their timeouts, and a
// minute for each that sets none.
func hooksLimit(hooks configs.HookList) time.Duration {
	var d time.Duration
	for _, h := range hooks {
		if c, ok := h.(configs.CommandHook); ok && c.Command != nil && c.Timeout != nil {
			d += *c.Timeout
		} else {
			d += time.Minute
		}
	}
	return d
}

// Exec runs process (an OCI process object) in running container id and
// returns its pid.
func (e *Engine) Exec(ctx context.Context, id, execID string, processJSON []byte, stdio Stdio) (pid int, retErr error) {
	if err := ValidateID("exec", execID); err != nil {
		return 0, err
	}
	proc, err := parseProcess(processJSON)
	if err != nil {
		return 0, err
	}
	if proc.Terminal != stdio.Terminal {
		return 0, fmt.Errorf("stdio.terminal is %v but process.terminal %v: %w", stdio.Terminal, proc.Terminal, errdefs.ErrInvalidArgument)
	}
	lp, err := processConfig(proc, false)
	if err != nil {
		return 0, err
	}
	c, err := e.get(id)
	if err != nil {
		return 0, err
	}

	c.mu.Lock()
	switch _, exists := c.execs[execID]; {
	case c.removing || c.init.hasExited():
		// A created container takes execs, as runc's does: its
		// namespaces exist, and its init waits for the start.
		c.mu.Unlock()
		return 0, fmt.Errorf("container %q is not running: %w", id, errdefs.ErrFailedPrecondition)
	case c.paused():
		// The process would freeze as it joins the cgroup, and its start
		// with it.
		c.mu.Unlock()
		return 0, fmt.Errorf("container %q is paused: %w", id, errdefs.ErrFailedPrecondition)
	case exists:
		c.mu.Unlock()
		return 0, fmt.Errorf("exec %q of container %q: %w", execID, id, errdefs.ErrAlreadyExists)
	}
	c.execs[execID] = nil
	c.execsStarting.Add(1)
	c.mu.Unlock()
	defer c.execsStarting.Done()

	var p *Process
	defer func() {
		c.mu.Lock()
		if retErr != nil {
			delete(c.execs, execID)
		} else {
			c.execs[execID] = p
		}
		c.mu.Unlock()
	}()

	log := e.cfg.Log.WithFields(logrus.Fields{"container": id, "exec": execID})
	pio, err := e.takeStreams(ctx, id, execID, stdio, log)
	if err != nil {
		return 0, err
	}
	p, err = e.start(c.handle().Run, lp, pio, stdio.Terminal, execID)
	if err != nil {
		return 0, fmt.Errorf("exec %q in container %q: %w", execID, id, err)
	}
	return p.pid, nil
}

// Signal sends sig to the init (execID "") or an exec process, or with
// all to every process of the container.
func (e *Engine) Signal(id, execID string, sig unix.Signal, all bool) error {
	if sig <= 0 || sig > maxSignal {
		return fmt.Errorf("signal %d: %w", sig, errdefs.ErrInvalidArgument)
	}
	c, err := e.get(id)
	if err != nil {
		return err
	}
	if all {
		return c.signalAll(sig)
	}
	p, err := c.process(execID)
	if err != nil {
		return err
	}
	if p.hasExited() {
		return fmt.Errorf("process already finished: %w", errdefs.ErrNotFound)
	}
	if execID == "" {
		err = c.handle().Signal(sig)
	} else {
		err = p.proc.Signal(sig)
	}
	if errors.Is(err, libcontainer.ErrNotRunning) || errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("process already finished: %w", errdefs.ErrNotFound)
	}
	return err
}

// killCgroup SIGKILLs every process in the container's cgroup, those it
// forks meanwhile included, through cgroup v2's cgroup.kill: no pid is
// read, so none can be a recycled one.
func (c *Container) killCgroup() error {
	paths, err := c.cgroupPaths()
	if err != nil {
		return err
	}
	dir, ok := paths[""]
	if !ok || dir == "" {
		return fmt.Errorf("container %q has no cgroup v2 directory", c.id)
	}
	return os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
}

// signalAll signals every process in the container's cgroup.
func (c *Container) signalAll(sig unix.Signal) error {
	if sig == unix.SIGKILL {
		if err := c.killCgroup(); err == nil {
			return nil
		}
	}
	pids, err := c.handle().Processes()
	if err != nil {
		return fmt.Errorf("processes of container %q: %w", c.id, err)
	}
	var errs []error
	for _, pid := range pids {
		if err := unix.Kill(pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("signal %d to pid %d: %w", sig, pid, err))
		}
	}
	return errors.Join(errs...)
}

// Wait returns the exit status of the init or an exec process once it
// has exited and its output is written, or ctx's error.
func (e *Engine) Wait(ctx context.Context, id, execID string) (ExitStatus, error) {
	c, err := e.get(id)
	if err != nil {
		return ExitStatus{}, err
	}
	p, err := c.process(execID)
	if err != nil {
		return ExitStatus{}, err
	}
	st, err := p.Wait(ctx)
	if err == nil && execID == "" {
		c.mu.Lock()
		w := c.oom
		c.mu.Unlock()
		if w != nil {
			// With the exit, whether the container met the OOM killer:
			// the host tells its caller so before the exit (containerd
			// removes the task at its exit, and an OOM event after that
			// is lost).
			st.OOMKilled = w.check()
		}
	}
	return st, err
}

// Resize sets the window size of a process's terminal.
func (e *Engine) Resize(id, execID string, width, height uint32) error {
	if width > 0xffff || height > 0xffff {
		return fmt.Errorf("window size %dx%d: %w", width, height, errdefs.ErrInvalidArgument)
	}
	c, err := e.get(id)
	if err != nil {
		return err
	}
	p, err := c.process(execID)
	if err != nil {
		return err
	}
	if p.hasExited() {
		return fmt.Errorf("process already finished: %w", errdefs.ErrNotFound)
	}
	if err := p.io.resize(uint16(width), uint16(height)); err != nil {
		if errors.Is(err, errNoTerminal) {
			return fmt.Errorf("%w: %w", err, errdefs.ErrFailedPrecondition)
		}
		return err
	}
	return nil
}

// CloseStdin closes a process's stdin.
func (e *Engine) CloseStdin(id, execID string) error {
	c, err := e.get(id)
	if err != nil {
		return err
	}
	p, err := c.process(execID)
	if err != nil {
		return err
	}
	p.io.closeStdin()
	return nil
}

// Processes lists the guest pids in the container's cgroup.
func (e *Engine) Processes(id string) ([]int, error) {
	c, err := e.get(id)
	if err != nil {
		return nil, err
	}
	pids, err := c.handle().Processes()
	if err != nil {
		return nil, fmt.Errorf("processes of container %q: %w", id, err)
	}
	return pids, nil
}

// Remove removes a container that is not running: created (its waiting
// init is killed) or stopped. With force it kills a running one first.
func (e *Engine) Remove(ctx context.Context, id string, force bool) (retErr error) {
	c, err := e.get(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	switch {
	case c.removing:
		c.mu.Unlock()
		return fmt.Errorf("container %q is being removed: %w", id, errdefs.ErrFailedPrecondition)
	case c.started && !c.init.hasExited() && !force:
		c.mu.Unlock()
		return fmt.Errorf("container %q is running; stop it or force: %w", id, errdefs.ErrFailedPrecondition)
	}
	c.removing = true
	// Everything in the container's cgroup dies first, at once: an exec
	// whose init blocks inside the container (a FIFO where libcontainer
	// reads /etc/passwd) ends, so that the wait for starting execs below
	// ends too; and a created container's init dies of SIGKILL (137, as
	// libcontainer's), not of its start pipe's end (0).
	if err := c.killCgroup(); err != nil {
		e.cfg.Log.WithError(err).WithField("container", id).Debug("cgroup.kill")
	}
	if c.lean != nil {
		c.lean.close()
		c.lean = nil
	}
	c.mu.Unlock()
	defer func() {
		if retErr != nil {
			c.mu.Lock()
			c.removing = false
			c.mu.Unlock()
		}
	}()

	// Execs that are starting finish first (bounded by the stream wait),
	// so that they are killed too.
	c.execsStarting.Wait()
	if !c.init.hasExited() {
		if err := c.handle().Signal(unix.SIGKILL); err != nil && !errors.Is(err, libcontainer.ErrNotRunning) {
			e.cfg.Log.WithError(err).WithField("container", id).Warn("killing init")
		}
	}
	// Without a pid namespace of its own the container's processes
	// outlive its init.
	if err := c.signalAll(unix.SIGKILL); err != nil {
		e.cfg.Log.WithError(err).WithField("container", id).Debug("killing all")
	}
	// Frozen processes die once thawed (with cgroup v1).
	if c.paused() {
		if err := c.handle().Resume(); err != nil {
			e.cfg.Log.WithError(err).WithField("container", id).Warn("thawing")
		}
	}
	ctx, cancel := context.WithTimeout(ctx, removeTimeout)
	defer cancel()
	procs := []*Process{c.init}
	c.mu.Lock()
	for _, p := range c.execs {
		procs = append(procs, p)
	}
	c.mu.Unlock()
	for _, p := range procs {
		if _, err := p.Wait(ctx); err != nil {
			return fmt.Errorf("container %q: waiting for pid %d: %w", id, p.pid, err)
		}
	}
	c.mu.Lock()
	w := c.oom
	c.oom = nil
	c.mu.Unlock()
	if w != nil {
		w.stop()
	}
	if err := c.handle().Destroy(); err != nil {
		return fmt.Errorf("destroying container %q: %w", id, err)
	}
	e.mu.Lock()
	delete(e.containers, id)
	e.mu.Unlock()
	return nil
}

// maxSignal is SIGRTMAX on Linux.
const maxSignal = 64

// automount mounts, before the container's binds are made, the virtio-fs
// submounts the host listed (api.AutomountAnnotation): opening one makes
// the guest kernel mount it with the flags of the shared mount, which the
// container's read-only bind then copies as they are. The list comes from
// the host, but only paths under the shared mount point are opened.
func (e *Engine) automount(spec *specs.Spec) {
	list, ok := spec.Annotations[api.AutomountAnnotation]
	if !ok {
		return
	}
	delete(spec.Annotations, api.AutomountAnnotation)
	paths := strings.Split(list, "\n")
	if len(paths) > api.MaxAutomounts {
		paths = paths[:api.MaxAutomounts]
	}
	for _, p := range paths {
		if clean := filepath.Clean(p); clean != p || !strings.HasPrefix(p, api.SharedMountPoint+"/") {
			continue
		}
		if f, err := os.Open(p); err == nil {
			f.Close()
		} else {
			e.cfg.Log.WithError(err).WithField("path", p).Debug("automount")
		}
	}
}
