package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/api/types/task"
	ptypes "github.com/containerd/containerd/protobuf/types"
	"github.com/containerd/containerd/runtime"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hull-runtime/hull/internal/config"
	"github.com/hull-runtime/hull/internal/sandbox"
	"github.com/hull-runtime/hull/internal/vmm/qemu"
)

type mountType = types.Mount

// The annotations containerd's CRI plugin puts on the specs of a pod's
// containers.
const (
	annotationContainerType = "io.kubernetes.cri.container-type"
	annotationSandboxID     = "io.kubernetes.cri.sandbox-id"
	containerTypeSandbox    = "sandbox"
	// Set by containerd 1.7 and later on the sandbox container.
	annotationSandboxCPUPeriod = "io.kubernetes.cri.sandbox-cpu-period"
	annotationSandboxCPUQuota  = "io.kubernetes.cri.sandbox-cpu-quota"
	annotationSandboxMemory    = "io.kubernetes.cri.sandbox-memory"
)

// groupOf returns the pod a container belongs to, and whether the
// container owns it (boots the VM and ends it). A CRI sandbox owns its
// pod; a CRI container joins its sandbox's; anything else (ctr run) is a
// pod of its own.
func groupOf(id string, spec *specs.Spec) (group string, owner bool) {
	a := spec.Annotations
	if a[annotationContainerType] == "container" && a[annotationSandboxID] != "" {
		return a[annotationSandboxID], false
	}
	return id, true
}

// sizePod sizes the VM once, at boot: the sandbox's resource annotations
// (containerd 1.7+) and the owner's own limits on top of the configured
// default. Later containers' limits are enforced by cgroups in the guest;
// the VM does not grow (no hot-plug).
func sizePod(cfg *config.Config, spec *specs.Spec) {
	sandbox.SizeVM(cfg, spec)
	a := spec.Annotations
	quota, qerr := strconv.ParseInt(a[annotationSandboxCPUQuota], 10, 64)
	period, perr := strconv.ParseUint(a[annotationSandboxCPUPeriod], 10, 64)
	if qerr == nil && perr == nil {
		sandbox.AddCPUQuota(cfg, quota, period)
	}
	if mem, err := strconv.ParseInt(a[annotationSandboxMemory], 10, 64); err == nil {
		sandbox.AddMemory(cfg, mem)
	}
}

// podDir is where a pod keeps its VM files and shared directory. The dot
// keeps it apart from the CLI's container ids under the same root.
func podDir(root, ns, group string) string {
	return filepath.Join(root, ".shim", ns, group)
}

// removePodDir removes a pod's directory once its VM and mounts are gone;
// it only removes what is empty, so a leaked mount stays visible rather
// than being walked.
func removePodDir(dir string) {
	_ = os.Remove(filepath.Join(dir, "shared"))
	_ = os.Remove(filepath.Join(dir, "vm"))
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.L.WithError(err).WithField("dir", dir).Warn("pod directory left")
	}
	_ = os.Remove(filepath.Dir(dir))
}

func chooseAccel(ctx context.Context, cfg config.Config) (qemu.Accel, error) {
	choice, err := qemu.SelectAccel(ctx, cfg.Hypervisor.Path, cfg.Hypervisor.Accelerator, cfg.Runtime.Root)
	if err != nil {
		return "", err
	}
	if choice.Warning != "" {
		log.G(ctx).Warn(choice.Warning)
	}
	return choice.Accel, nil
}

// watchOOM turns the guest's OOM kills into TaskOOM events while the VM
// runs.
func (s *service) watchOOM(sb *sandbox.Sandbox) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-sb.Done()
		cancel()
	}()
	limit := newOOMLimiter(oomEventInterval)
	for {
		id, err := sb.WaitOOM(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.G(ctx).WithError(err).Debug("oom events")
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		// An event dropped (a container not known here, or one just
		// reported) costs the next poll a pause: a guest that answered
		// every poll at once would otherwise keep a host core busy.
		drop := func() bool {
			select {
			case <-ctx.Done():
				return false
			case <-time.After(oomDropPause):
				return true
			}
		}
		if _, err := s.get(id); err != nil {
			if !drop() {
				return
			}
			continue
		}
		if !limit.allow(id, time.Now()) {
			// containerd learns that the container met the OOM killer;
			// more of the same in a second tells it nothing, and a guest
			// could answer with events as fast as the host asks.
			if !drop() {
				return
			}
			continue
		}
		s.send(runtime.TaskOOMEventTopic, &eventstypes.TaskOOM{ContainerID: id})
	}
}

// oomEventInterval is the least time between two TaskOOM events of one
// container.
const oomEventInterval = time.Second

// oomDropPause is how long the OOM watch waits after an event it drops.
const oomDropPause = 100 * time.Millisecond

// oomLimiter lets through one OOM event per container per interval.
type oomLimiter struct {
	interval time.Duration
	last     map[string]time.Time
}

func newOOMLimiter(interval time.Duration) *oomLimiter {
	return &oomLimiter{interval: interval, last: make(map[string]time.Time)}
}

func (l *oomLimiter) allow(id string, now time.Time) bool {
	if t, ok := l.last[id]; ok && now.Sub(t) < l.interval {
		return false
	}
	if len(l.last) >= 64 {
		// Containers come and go in a pod: forget the quiet ones.
		for k, t := range l.last {
			if now.Sub(t) >= l.interval {
				delete(l.last, k)
			}
		}
	}
	l.last[id] = now
	return true
}

// Pause freezes a container.
func (s *service) Pause(ctx context.Context, r *taskAPI.PauseRequest) (*ptypes.Empty, error) {
	return s.setPaused(ctx, r.ID, true)
}

// Resume thaws a container.
func (s *service) Resume(ctx context.Context, r *taskAPI.ResumeRequest) (*ptypes.Empty, error) {
	return s.setPaused(ctx, r.ID, false)
}

func (s *service) setPaused(ctx context.Context, id string, pause bool) (*ptypes.Empty, error) {
	c, err := s.get(id)
	if err != nil {
		return nil, rpcError(err)
	}
	p := c.init
	p.mu.Lock()
	defer p.mu.Unlock()
	want, from := task.Status_PAUSED, task.Status_RUNNING
	if !pause {
		want, from = from, want
	}
	if p.status != from {
		return nil, rpcError(fmt.Errorf("container %s is %s: %w", id, p.status, errdefs.ErrFailedPrecondition))
	}
	if pause {
		err = c.ctr.Pause(ctx)
	} else {
		err = c.ctr.Resume(ctx)
	}
	if err != nil {
		return nil, rpcError(err)
	}
	p.status = want
	if pause {
		s.send(runtime.TaskPausedEventTopic, &eventstypes.TaskPaused{ContainerID: id})
	} else {
		s.send(runtime.TaskResumedEventTopic, &eventstypes.TaskResumed{ContainerID: id})
	}
	return &ptypes.Empty{}, nil
}

// Update applies new resource limits to a container's cgroup in the guest.
func (s *service) Update(ctx context.Context, r *taskAPI.UpdateTaskRequest) (*ptypes.Empty, error) {
	c, err := s.get(r.ID)
	if err != nil {
		return nil, rpcError(err)
	}
	if r.Resources == nil || len(r.Resources.Value) > maxAnyJSON {
		return nil, rpcError(fmt.Errorf("update %s: missing or oversized resources: %w", r.ID, errdefs.ErrInvalidArgument))
	}
	var res specs.LinuxResources
	if err := json.Unmarshal(r.Resources.Value, &res); err != nil {
		return nil, rpcError(fmt.Errorf("update %s: resources: %w: %w", r.ID, err, errdefs.ErrInvalidArgument))
	}
	if err := c.ctr.Update(ctx, &res); err != nil {
		return nil, rpcError(err)
	}
	return &ptypes.Empty{}, nil
}
