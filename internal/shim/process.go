package shim

import (
	"fmt"
	"sync"
	"time"

	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hull-runtime/hull/internal/sandbox"
)

// process is a container's init or one of its exec processes. Its life
// is created -> running -> stopped; an exec's "created" means only
// recorded (the guest runs nothing until Start), an init's means created
// in the guest and waiting for Start.
type process struct {
	// Immutable after construction.
	containerID string
	execID      string // empty for the init
	paths       stdioPaths
	spec        *specs.Process // the exec's process; nil for the init

	mu      sync.Mutex
	status  task.Status      // guarded by mu
	pid     uint32           // guarded by mu
	guest   *sandbox.Process // guarded by mu; set once running (exec) or created (init)
	io      *hostIO          // guarded by mu
	exit    uint32           // guarded by mu; valid once exited is closed
	exitAt  time.Time        // guarded by mu; valid once exited is closed
	exited  chan struct{}
	endOnce sync.Once
}

func newProcess(containerID, execID string, paths stdioPaths, spec *specs.Process) *process {
	return &process{containerID: containerID, execID: execID, paths: paths, spec: spec, status: task.Status_CREATED, exited: make(chan struct{})}
}

// setExited records the exit once; later calls change nothing. It
// reports whether this call recorded it.
func (p *process) setExited(status uint32, at time.Time) bool {
	recorded := false
	p.endOnce.Do(func() {
		p.mu.Lock()
		p.status, p.exit, p.exitAt = task.Status_STOPPED, status, at
		h := p.io
		p.mu.Unlock()
		if h != nil {
			h.close()
		}
		close(p.exited)
		recorded = true
	})
	return recorded
}

func (p *process) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// snapshot returns the fields State reports, consistently.
func (p *process) snapshot() (task.Status, uint32, uint32, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status, p.pid, p.exit, p.exitAt
}

// running returns the guest process for calls that need a live one.
func (p *process) running() (*sandbox.Process, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.status == task.Status_STOPPED {
		return nil, fmt.Errorf("process %s: %w", p.name(), errFinished)
	}
	if p.guest == nil {
		return nil, fmt.Errorf("process %s is not started: %w", p.name(), errdefs.ErrFailedPrecondition)
	}
	return p.guest, nil
}

func (p *process) name() string {
	if p.execID == "" {
		return p.containerID
	}
	return p.containerID + "/" + p.execID
}

// errFinished is containerd's answer for a signal to a process that has
// exited: its clients treat NotFound there as "already done".
var errFinished = fmt.Errorf("process already finished: %w", errdefs.ErrNotFound)
