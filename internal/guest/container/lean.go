package container

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"
)

// leanInit is a container's init started by hull-init, waiting for its
// start.
type leanInit struct {
	// start gets the byte that starts the program; closing it without
	// one ends the init.
	start *os.File
	// sync ends (EOF) when the program runs, or carries an error.
	sync *os.File
}

// begin tells hull-init to run the program.
func (l *leanInit) begin() error {
	_, err := l.start.Write([]byte{1})
	l.start.Close()
	if err != nil {
		l.sync.Close()
		return fmt.Errorf("starting the init: %w", err)
	}
	return nil
}

// wait returns once the program runs: hull-init's end of sync closes with
// its execve, or carries why the execve failed.
func (l *leanInit) wait() error {
	msg, err := io.ReadAll(io.LimitReader(l.sync, maxInitMessage))
	l.sync.Close()
	if err != nil {
		return fmt.Errorf("starting the init: %w", err)
	}
	if len(msg) > 0 {
		return initError(msg)
	}
	return nil
}

// close ends a waiting init: hull-init exits when start closes.
func (l *leanInit) close() {
	l.start.Close()
	l.sync.Close()
}

// maxInitMessage bounds what is read from hull-init's sync pipe.
const maxInitMessage = 4096

func initError(msg []byte) error {
	if len(msg) > 0 && msg[0] == 'E' {
		return errors.New(string(msg[1:]))
	}
	return fmt.Errorf("container init: unexpected message %q", msg)
}

// startLean starts the init of container id with hull-init: the clone
// makes the namespaces and, on cgroup v2, puts the init in the container's
// cgroup (else the agent moves it there), the agent sends the plan, and hull-init sets the container up and waits for
// its start. The init's state goes where libcontainer keeps it, so that
// libcontainer loads the container for everything after (exec, signals,
// cgroup changes, removal).
func (e *Engine) startLean(id string, cfg *configs.Config, lpl *leanPlan, lp *libcontainerProcess, pio *procIO, steps *stepTimer) (_ *Process, _ *leanInit, _ map[string]string, retErr error) {
	if err := pio.prepare(lp, lpl.console); err != nil {
		return nil, nil, nil, err
	}
	var parentEnds, childEnds []*os.File
	closeAll := func(fs []*os.File) {
		for _, f := range fs {
			f.Close()
		}
	}
	defer func() {
		closeAll(childEnds)
		if retErr != nil {
			closeAll(parentEnds)
			pio.abort()
		}
	}()
	var pipes [3][2]*os.File // plan, sync, start: read and write ends
	for i := range pipes {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, nil, nil, err
		}
		pipes[i] = [2]*os.File{r, w}
		if i == 0 {
			// The plan's and the start's the child reads, sync's it writes.
			parentEnds, childEnds = append(parentEnds, w), append(childEnds, r)
		} else if i == 1 {
			parentEnds, childEnds = append(parentEnds, r), append(childEnds, w)
		} else {
			parentEnds, childEnds = append(parentEnds, w), append(childEnds, r)
		}
	}
	planR, planW := pipes[0][0], pipes[0][1]
	syncR, syncW := pipes[1][0], pipes[1][1]
	startR, startW := pipes[2][0], pipes[2][1]

	newCmd := func() *exec.Cmd {
		cmd := &exec.Cmd{
			Path:        e.cfg.InitPath,
			Args:        []string{"hull-init"},
			Dir:         "/",
			ExtraFiles:  []*os.File{planR, syncW, startR},
			SysProcAttr: &syscall.SysProcAttr{Cloneflags: lpl.cloneflags, Setsid: true},
		}
		if lpl.console {
			cmd.ExtraFiles = append(cmd.ExtraFiles, lp.ConsoleSocket)
		} else {
			cmd.Stdin, cmd.Stdout, cmd.Stderr = lp.Stdin, lp.Stdout, lp.Stderr
		}
		return cmd
	}
	cmd := newCmd()
	mgr, err := manager.New(cfg.Cgroups)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("cgroup: %w", err)
	}
	// On cgroup v2 the init is cloned into its cgroup (CLONE_INTO_CGROUP)
	// rather than moved there once it runs: the kernel's migration of a
	// task is code no other step runs, which under TCG costs the first
	// container about 10 ms to translate.
	joined := false
	if cgroups.IsCgroup2UnifiedMode() {
		if err := mgr.Apply(-1); err != nil {
			return nil, nil, nil, fmt.Errorf("creating the cgroup: %w", err)
		}
		dir, err := os.OpenFile(mgr.Path(""), os.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			_ = mgr.Destroy()
			return nil, nil, nil, fmt.Errorf("cgroup: %w", err)
		}
		defer dir.Close()
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(dir.Fd())
		joined = true
	}
	steps.done("cgroup")

	release, claim := func() {}, func(int) func() { return func() {} }
	if r := e.cfg.Reaper; r != nil {
		release, claim = r.Hold(), r.Claim
	}
	err = cmd.Start()
	if err != nil && joined && cloneIntoCgroupUnsupported(err) {
		// clone3 refused (a seccomp profile that predates it, a kernel
		// before 5.7): cloned as before, and moved into the cgroup below.
		e.cfg.Log.WithError(err).Debug("cloning into the cgroup: moving the init instead")
		joined = false
		cmd = newCmd()
		err = cmd.Start()
	}
	if err != nil {
		release()
		if cgroups.IsCgroup2UnifiedMode() {
			if derr := mgr.Destroy(); derr != nil {
				e.cfg.Log.WithError(derr).WithField("container", id).Warn("removing the cgroup")
			}
		}
		return nil, nil, nil, fmt.Errorf("running %s: %w", e.cfg.InitPath, err)
	}
	pid := cmd.Process.Pid
	steps.done("clone")
	unclaim := claim(pid)
	release()
	closeAll(childEnds)
	childEnds = nil
	fail := func(err error) (*Process, *leanInit, map[string]string, error) {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		unclaim()
		if derr := mgr.Destroy(); derr != nil {
			e.cfg.Log.WithError(derr).WithField("container", id).Warn("removing the cgroup")
		}
		return nil, nil, nil, err
	}

	if !joined {
		if err := mgr.Apply(pid); err != nil {
			return fail(fmt.Errorf("joining the cgroup: %w", err))
		}
		steps.done("cgroup")
	}
	_, werr := planW.Write(lpl.steps)
	planW.Close()
	msg := make([]byte, maxInitMessage)
	n, rerr := io.ReadAtLeast(syncR, msg, 1)
	msg = msg[:n]
	switch {
	case n > 0 && msg[0] == 'R':
	case n > 0:
		// The rest of the message, if it came in pieces.
		rest, _ := io.ReadAll(io.LimitReader(syncR, int64(maxInitMessage-n)))
		return fail(initError(append(msg, rest...)))
	case werr != nil:
		return fail(fmt.Errorf("sending the plan: %w", werr))
	default:
		return fail(fmt.Errorf("container init ended before it was ready: %w", rerr))
	}
	steps.done("setup")
	if err := mgr.Set(cfg.Cgroups.Resources); err != nil {
		return fail(fmt.Errorf("setting the cgroup: %w", err))
	}
	steps.done("limits")
	p := &Process{execID: "", proc: cmd.Process, pid: pid, io: pio, done: make(chan struct{})}
	if err := pio.started(); err != nil {
		return fail(err)
	}
	go p.wait(unclaim)
	return p, &leanInit{start: startW, sync: syncR}, mgr.GetPaths(), nil
}

// cloneIntoCgroupUnsupported tells whether starting a process with
// CLONE_INTO_CGROUP failed for want of clone3 or of the flag, rather than
// for a reason that a plain clone would meet too.
func cloneIntoCgroupUnsupported(err error) bool {
	return errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) ||
		errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP)
}

// leanState returns the loader of libcontainer's handle of a container
// whose init hull-init started: it writes libcontainer's state, as
// libcontainer's own start would, and loads it. The init's start time is
// taken now, while it lives.
func (e *Engine) leanState(id string, cfg *configs.Config, pid int, cgroupPaths map[string]string) (func() (*libcontainer.Container, error), error) {
	started, err := startTime(pid)
	if err != nil {
		return nil, fmt.Errorf("container init: %w", err)
	}
	created := time.Now().UTC()
	return func() (*libcontainer.Container, error) {
		if err := e.saveLeanState(id, cfg, pid, started, created, cgroupPaths); err != nil {
			return nil, err
		}
		return libcontainer.Load(e.cfg.StateRoot, id)
	}, nil
}

// saveLeanState writes libcontainer's state.json.
func (e *Engine) saveLeanState(id string, cfg *configs.Config, pid int, started uint64, created time.Time, cgroupPaths map[string]string) error {
	st := libcontainer.State{
		BaseState: libcontainer.BaseState{
			ID:                   id,
			InitProcessPid:       pid,
			InitProcessStartTime: started,
			Created:              created,
			Config:               *cfg,
		},
		CgroupPaths:    cgroupPaths,
		NamespacePaths: make(map[configs.NamespaceType]string),
	}
	for _, ns := range cfg.Namespaces {
		st.NamespacePaths[ns.Type] = ns.GetPath(pid)
	}
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	dir := filepath.Join(e.cfg.StateRoot, id)
	tmp := filepath.Join(dir, ".state.json.tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("container state: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "state.json")); err != nil {
		return fmt.Errorf("container state: %w", err)
	}
	return nil
}

// startTime is field 22 of /proc/PID/stat, which libcontainer compares to
// tell a pid reused.
func startTime(pid int) (uint64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	end := bytes.LastIndexByte(data, ')')
	if end < 0 {
		return 0, fmt.Errorf("malformed /proc stat line %q", data)
	}
	// After the name: state is field 3, start time field 22.
	fields := bytes.Fields(data[end+1:])
	if len(fields) < 20 {
		return 0, fmt.Errorf("malformed /proc stat line %q", data)
	}
	return strconv.ParseUint(string(fields[19]), 10, 64)
}
