package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	api "github.com/hull-runtime/hull/api/agent/v1"
	"github.com/hull-runtime/hull/internal/guest/container"
)

// The container calls: the API edge of the container engine, where its
// errors become status codes.

func (s *Service) engine(ctx context.Context) (*container.Engine, error) {
	if s.cfg.Engine == nil {
		return nil, status.Error(codes.Unimplemented, "this agent runs no containers")
	}
	// The engine needs modules loaded at boot: overlay, with which
	// libcontainer seals its copy of the agent binary, and virtiofs.
	if _, err := s.modules(ctx); err != nil {
		return nil, err
	}
	return s.cfg.Engine, nil
}

// CreateContainer creates a container up to its user process; with
// r.Sandbox it sets the sandbox up first, and with r.Start it runs the
// process too.
func (s *Service) CreateContainer(ctx context.Context, r *api.CreateContainerRequest) (*api.CreateContainerResponse, error) {
	e, err := s.engine(ctx)
	if err != nil {
		return nil, err
	}
	if r.Sandbox != nil {
		if _, err := s.CreateSandbox(ctx, r.Sandbox); err != nil {
			return nil, err
		}
	}
	pid, err := e.Create(ctx, r.ContainerId, r.Bundle, r.Spec, container.StdioFrom(r.Stdio))
	if err != nil {
		return nil, toStatus(err)
	}
	if r.Start {
		if err := e.Start(r.ContainerId); err != nil {
			// Nothing of a call that failed stays: the container goes.
			err = fmt.Errorf("container %s created but not started: %w", r.ContainerId, err)
			if rerr := e.Remove(ctx, r.ContainerId, true); rerr != nil {
				err = fmt.Errorf("%w (and removing it: %v)", err, rerr)
			}
			return nil, toStatus(err)
		}
	}
	return &api.CreateContainerResponse{Pid: uint32(pid)}, nil
}

// StartContainer runs the user process of a created container.
func (s *Service) StartContainer(ctx context.Context, r *api.StartContainerRequest) (*api.StartContainerResponse, error) {
	e, err := s.engine(ctx)
	if err != nil {
		return nil, err
	}
	if err := e.Start(r.ContainerId); err != nil {
		return nil, toStatus(err)
	}
	return &api.StartContainerResponse{}, nil
}

// ExecProcess runs a process in a running container.
func (s *Service) ExecProcess(ctx context.Context, r *api.ExecProcessRequest) (*api.ExecProcessResponse, error) {
	e, err := s.engine(ctx)
	if err != nil {
		return nil, err
	}
	pid, err := e.Exec(ctx, r.ContainerId, r.ExecId, r.Process, container.StdioFrom(r.Stdio))
	if err != nil {
		return nil, toStatus(err)
	}
	return &api.ExecProcessResponse{Pid: uint32(pid)}, nil
}

// SignalProcess signals a process, or all of a container's.
func (s *Service) SignalProcess(ctx context.Context, r *api.SignalProcessRequest) (*api.SignalProcessResponse, error) {
	e, err := s.engine(ctx)
	if err != nil {
		return nil, err
	}
	if err := e.Signal(r.ContainerId, r.ExecId, unix.Signal(r.Signal), r.All); err != nil {
		return nil, toStatus(err)
	}
	return &api.SignalProcessResponse{}, nil
}

// WaitProcess answers once the process has exited and its output is out.
func (s *Service) WaitProcess(ctx context.Context, r *api.WaitProcessRequest) (*api.WaitProcessResponse, error) {
	e, err := s.engine(ctx)
	if err != nil {
		return nil, err
	}
	st, err := e.Wait(ctx, r.ContainerId, r.ExecId)
	if err != nil {
		return nil, toStatus(err)
	}
	if r.Sync {
		syncUnwritten(readUnwritten, unix.Sync)
	}
	return &api.WaitProcessResponse{ExitStatus: int32(st.Status), ExitedAtUnixNano: st.At.UnixNano(), Synced: r.Sync, OomKilled: st.OOMKilled}, nil
}

// ResizePty sets a process's terminal size.
func (s *Service) ResizePty(ctx context.Context, r *api.ResizePtyRequest) (*api.ResizePtyResponse, error) {
	e, err := s.engine(ctx)
	if err != nil {
		return nil, err
	}
	if err := e.Resize(r.ContainerId, r.ExecId, r.Width, r.Height); err != nil {
		return nil, toStatus(err)
	}
	return &api.ResizePtyResponse{}, nil
}

// CloseStdin closes a process's stdin.
func (s *Service) CloseStdin(ctx context.Context, r *api.CloseStdinRequest) (*api.CloseStdinResponse, error) {
	e, err := s.engine(ctx)
	if err != nil {
		return nil, err
	}
	if err := e.CloseStdin(r.ContainerId, r.ExecId); err != nil {
		return nil, toStatus(err)
	}
	return &api.CloseStdinResponse{}, nil
}

// ListProcesses lists the guest pids of a container.
func (s *Service) ListProcesses(ctx context.Context, r *api.ListProcessesRequest) (*api.ListProcessesResponse, error) {
	e, err := s.engine(ctx)
	if err != nil {
		return nil, err
	}
	pids, err := e.Processes(r.ContainerId)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &api.ListProcessesResponse{Pids: make([]uint32, len(pids))}
	for i, p := range pids {
		resp.Pids[i] = uint32(p)
	}
	// What `hull ps` shows besides the pid. A process gone meanwhile has
	// its pid only.
	uptime, err := container.Uptime()
	if err != nil {
		return resp, nil
	}
	resp.Processes = make([]*api.ProcessInfo, 0, len(pids))
	for _, p := range pids {
		pi := &api.ProcessInfo{Pid: uint32(p)}
		if info, err := container.ProcessInfo(p, uptime); err == nil {
			pi.Ppid, pi.Uid, pi.ElapsedMs, pi.CpuMs, pi.Tty, pi.Cmd = uint32(info.PPid), uint32(info.UID), info.ElapsedMs, info.CPUMs, info.TTY, info.Cmd
		}
		resp.Processes = append(resp.Processes, pi)
	}
	return resp, nil
}

// RemoveContainer removes a container, killing it first with force.
func (s *Service) RemoveContainer(ctx context.Context, r *api.RemoveContainerRequest) (*api.RemoveContainerResponse, error) {
	e, err := s.engine(ctx)
	if err != nil {
		return nil, err
	}
	if err := e.Remove(ctx, r.ContainerId, r.Force); err != nil {
		return nil, toStatus(err)
	}
	return &api.RemoveContainerResponse{}, nil
}

// PauseContainer freezes a running container.
func (s *Service) PauseContainer(ctx context.Context, r *api.PauseContainerRequest) (*api.PauseContainerResponse, error) {
	e, err := s.engine(ctx)
	if err != nil {
		return nil, err
	}
	if err := e.Pause(r.ContainerId); err != nil {
		return nil, toStatus(err)
	}
	return &api.PauseContainerResponse{}, nil
}

// ResumeContainer thaws a paused container.
func (s *Service) ResumeContainer(ctx context.Context, r *api.ResumeContainerRequest) (*api.ResumeContainerResponse, error) {
	e, err := s.engine(ctx)
	if err != nil {
		return nil, err
	}
	if err := e.Resume(r.ContainerId); err != nil {
		return nil, toStatus(err)
	}
	return &api.ResumeContainerResponse{}, nil
}

// UpdateContainer changes a container's cgroup limits.
func (s *Service) UpdateContainer(ctx context.Context, r *api.UpdateContainerRequest) (*api.UpdateContainerResponse, error) {
	e, err := s.engine(ctx)
	if err != nil {
		return nil, err
	}
	if err := e.Update(r.ContainerId, r.Resources); err != nil {
		return nil, toStatus(err)
	}
	return &api.UpdateContainerResponse{}, nil
}

// StatsContainer reports a container's cgroup statistics.
func (s *Service) StatsContainer(ctx context.Context, r *api.StatsContainerRequest) (*api.StatsContainerResponse, error) {
	e, err := s.engine(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := e.Stats(r.ContainerId)
	if err != nil {
		return nil, toStatus(err)
	}
	return resp, nil
}

// oomPoll bounds the wait of one GetOOMEvent. ttRPC does not tell the
// agent that the host stopped waiting, so a call the host gave up on
// ends only with an event or with this bound.
var oomPoll = time.Minute

// GetOOMEvent answers with the next OOM event after r.AfterSeq, or with
// none after oomPoll.
func (s *Service) GetOOMEvent(ctx context.Context, r *api.GetOOMEventRequest) (*api.GetOOMEventResponse, error) {
	e, err := s.engine(ctx)
	if err != nil {
		return nil, err
	}
	pollCtx, cancel := context.WithTimeout(ctx, oomPoll)
	defer cancel()
	ev, err := e.WaitOOM(pollCtx, r.AfterSeq)
	if err != nil {
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		return &api.GetOOMEventResponse{}, nil
	}
	return &api.GetOOMEventResponse{ContainerId: ev.ContainerID, Seq: ev.Seq}, nil
}

// toStatus turns an engine error into the status the host sees, with the
// error's text as the message.
func toStatus(err error) error {
	code := codes.Unknown
	switch {
	case errdefs.IsInvalidArgument(err):
		code = codes.InvalidArgument
	case errdefs.IsNotFound(err):
		code = codes.NotFound
	case errdefs.IsAlreadyExists(err):
		code = codes.AlreadyExists
	case errdefs.IsFailedPrecondition(err):
		code = codes.FailedPrecondition
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	return status.Error(code, err.Error())
}
