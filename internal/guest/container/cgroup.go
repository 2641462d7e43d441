package container

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"

	api "github.com/hull-runtime/hull/api/agent/v1"
)

// The calls on a container's cgroup: freezer, limits, statistics, OOM
// kills.

// running returns container id if its user program runs: started, not
// being removed, init not exited.
func (e *Engine) running(id string) (*Container, error) {
	c, err := e.get(id)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.removing || !c.started || c.init.hasExited() {
		return nil, fmt.Errorf("container %q is not running: %w", id, errdefs.ErrFailedPrecondition)
	}
	return c, nil
}

// paused tells whether the container's cgroup is frozen.
func (c *Container) paused() bool {
	st, err := c.handle().Status()
	return err == nil && st == libcontainer.Paused
}

// Pause freezes every process of running container id.
func (e *Engine) Pause(id string) error {
	c, err := e.running(id)
	if err != nil {
		return err
	}
	c.cgMu.Lock()
	defer c.cgMu.Unlock()
	if c.paused() {
		return fmt.Errorf("container %q is already paused: %w", id, errdefs.ErrFailedPrecondition)
	}
	if err := c.handle().Pause(); err != nil {
		if errors.Is(err, libcontainer.ErrNotRunning) {
			return fmt.Errorf("container %q is not running: %w", id, errdefs.ErrFailedPrecondition)
		}
		return fmt.Errorf("pausing container %q: %w", id, err)
	}
	return nil
}

// Resume thaws paused container id.
func (e *Engine) Resume(id string) error {
	c, err := e.get(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	removing := c.removing
	c.mu.Unlock()
	if removing {
		return fmt.Errorf("container %q is being removed: %w", id, errdefs.ErrFailedPrecondition)
	}
	c.cgMu.Lock()
	defer c.cgMu.Unlock()
	if err := c.handle().Resume(); err != nil {
		if errors.Is(err, libcontainer.ErrNotPaused) {
			return fmt.Errorf("container %q is not paused: %w", id, errdefs.ErrFailedPrecondition)
		}
		return fmt.Errorf("resuming container %q: %w", id, err)
	}
	return nil
}

// Update applies resources (the JSON of an OCI LinuxResources) to the
// cgroup of created or running container id, as `runc update` does.
func (e *Engine) Update(id string, resources []byte) error {
	r, err := parseResources(resources)
	if err != nil {
		return err
	}
	c, err := e.get(id)
	if err != nil {
		return err
	}
	c.mu.Lock()
	live := !c.removing && !c.init.hasExited()
	c.mu.Unlock()
	if !live {
		return fmt.Errorf("container %q is not running: %w", id, errdefs.ErrFailedPrecondition)
	}
	c.cgMu.Lock()
	defer c.cgMu.Unlock()
	cfg := c.handle().Config()
	if cfg.Cgroups == nil {
		return fmt.Errorf("container %q has no cgroup: %w", id, errdefs.ErrFailedPrecondition)
	}
	updated := updatedCgroup(cfg.Cgroups, r)
	cfg.Cgroups = updated
	if err := c.handle().Set(cfg); err != nil {
		switch {
		case errors.Is(err, libcontainer.ErrNotRunning):
			return fmt.Errorf("container %q is not running: %w", id, errdefs.ErrFailedPrecondition)
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ERANGE):
			return fmt.Errorf("updating container %q: %w: %w", id, err, errdefs.ErrInvalidArgument)
		case errors.Is(err, unix.EBUSY):
			// A memory limit below what the cgroup uses, for one.
			return fmt.Errorf("updating container %q: %w: %w", id, err, errdefs.ErrFailedPrecondition)
		}
		return fmt.Errorf("updating container %q: %w", id, err)
	}
	// SkipDevices is for this Set alone, as in runc's update, where it is
	// never saved to state.json. libcontainer keeps the config it was
	// given, though, and refuses to start a process (an exec) in a
	// container whose config has it: every exec after an update failed.
	updated.Resources.SkipDevices = false
	return nil
}

// Stats reads the cgroup statistics of container id.
func (e *Engine) Stats(id string) (*api.StatsContainerResponse, error) {
	c, err := e.get(id)
	if err != nil {
		return nil, err
	}
	st, err := c.handle().Stats()
	if err != nil {
		return nil, fmt.Errorf("statistics of container %q: %w", id, err)
	}
	if st.CgroupStats == nil {
		return nil, fmt.Errorf("container %q has no cgroup statistics: %w", id, errdefs.ErrFailedPrecondition)
	}
	var ev memoryEvents
	if c.memCgroup != "" {
		if ev, err = readMemoryEvents(c.memCgroup, c.cgroupV2); err != nil {
			e.cfg.Log.WithError(err).WithField("container", id).Debug("memory events")
		}
	}
	return statsResponse(c.cgroupV2, st.CgroupStats, ev), nil
}

// WaitOOM returns the first OOM event with a Seq above after, waiting as
// long as ctx allows.
func (e *Engine) WaitOOM(ctx context.Context, after uint64) (OOMEvent, error) {
	return e.oom.Next(ctx, after)
}
