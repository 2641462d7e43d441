package container

import (
	"context"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/hull-runtime/hull/internal/guest/initsys"
)

type libcontainerProcess = libcontainer.Process

// osProcess is a started process: libcontainer's, or hull-init's os.Process.
type osProcess interface {
	Wait() (*os.ProcessState, error)
	Signal(os.Signal) error
}

// Process is a container's init or one of its exec processes, from its
// start on. Its exit is collected by its own goroutine, with the pid
// claimed from the reaper.
type Process struct {
	// execID is empty for the init; set at creation, then read-only, as
	// are the fields up to mu.
	execID string
	proc   osProcess
	pid    int
	io     *procIO

	// done is closed when the process has exited and its output is out.
	done chan struct{}

	// endedInInit is set, before the init is reaped, when it ended still
	// named as libcontainer's init: before it ran the program (a
	// startContainer hook failed).
	endedInInit atomic.Bool

	mu       sync.Mutex
	status   int       // guarded by mu; valid once done is closed
	exitedAt time.Time // guarded by mu
	exited   bool      // guarded by mu: the process is gone (maybe output still flowing)
}

// ExitStatus is the end of a process as the API reports it.
type ExitStatus struct {
	// Status is the code, or 128+signal.
	Status int
	At     time.Time
	// OOMKilled, for a container's init, says that the OOM killer killed
	// processes of the container.
	OOMKilled bool
}

// Pid is the process's pid in the guest.
func (p *Process) Pid() int { return p.pid }

// wait collects the exit, lets the output drain, and closes done.
// release gives the pid back to the reaper once collected.
func (p *Process) wait(release func()) {
	if p.execID == "" {
		p.peekEnd()
	}
	ps, err := p.proc.Wait()
	release()
	status := 255
	if ps != nil {
		status = exitStatus(ps)
	} else {
		p.io.log.WithError(err).Error("wait")
	}
	now := time.Now()
	p.mu.Lock()
	p.exited = true
	p.status, p.exitedAt = status, now
	p.mu.Unlock()
	p.io.log.WithFields(logrus.Fields{"pid": p.pid, "status": status}).Debug("process exited")

	p.io.exited(context.Background())
	p.io.log.WithField("pid", p.pid).Debugf("output out %s after the exit", time.Since(now))
	close(p.done)
}

// peekEnd waits for the process to end without reaping it, and records
// whether it ended as libcontainer's init: its zombie keeps the name.
func (p *Process) peekEnd() {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, p.pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return
		}
		break
	}
	if data, err := os.ReadFile("/proc/" + strconv.Itoa(p.pid) + "/stat"); err == nil {
		if comm, _, err := parseStat(data); err == nil {
			p.endedInInit.Store(comm == initComm)
		}
	}
}

// hasExited tells whether the process is gone.
func (p *Process) hasExited() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exited
}

// Wait waits for the exit and the output, as long as ctx allows.
func (p *Process) Wait(ctx context.Context) (ExitStatus, error) {
	select {
	case <-p.done:
	case <-ctx.Done():
		return ExitStatus{}, ctx.Err()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return ExitStatus{Status: p.status, At: p.exitedAt}, nil
}

func exitStatus(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok {
		return initsys.ExitStatus(unix.WaitStatus(ws))
	}
	return ps.ExitCode()
}
