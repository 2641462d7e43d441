package agent

import (
	"context"
	"slices"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	api "github.com/hull-runtime/hull/api/agent/v1"
	"github.com/hull-runtime/hull/internal/guest/container"
)

// ServiceConfig is what the service reports and how it ends the VM.
type ServiceConfig struct {
	Version string
	Commit  string
	// Modules are the modules loaded at boot, in load order.
	Modules []string
	// ModulesLoaded, when set, is closed once the boot has loaded every
	// module; until then Modules is not read. The agent serves before the
	// modules that its channels do not need are in, so requests that
	// describe the whole guest wait for them.
	ModulesLoaded <-chan struct{}
	// ModuleList returns the loaded modules once ModulesLoaded is closed;
	// nil means Modules.
	ModuleList func() []string
	// OnDestroy is called by DestroySandbox before it answers. It must
	// return at once and power the VM off only after the answer has been
	// written, so that the host learns the request was taken. It may be
	// called more than once.
	OnDestroy func()
	// Sandbox holds what CreateSandbox set up; nil means the agent cannot
	// create one (tests of the basic calls).
	Sandbox *sandboxState
	// Prepared is what the agent set up at boot; nil when nothing.
	Prepared *prepared
	// Engine runs the containers; nil means the agent cannot (tests of
	// the basic calls).
	Engine *container.Engine
}

// Service implements the agent API. Its fields are set when it is made and
// only read afterwards, so the handlers, which ttRPC runs concurrently,
// share it without locks.
type Service struct {
	cfg ServiceConfig
	// channel is the kind of channel the requests come in on.
	channel string
}

var _ api.AgentService = (*Service)(nil)

// NewService returns a service for cfg.
func NewService(cfg ServiceConfig) *Service {
	cfg.Modules = slices.Clone(cfg.Modules)
	return &Service{cfg: cfg}
}

// OnChannel returns a copy of s that reports kind as the channel. Give each
// channel its own ttRPC server with its own copy: ttRPC tells a handler
// nothing of the connection a request came on.
func (s *Service) OnChannel(kind string) *Service {
	c := *s
	c.channel = kind
	return &c
}

// Check answers SERVING: an agent that answers serves.
func (s *Service) Check(context.Context, *api.CheckRequest) (*api.CheckResponse, error) {
	return &api.CheckResponse{Status: api.CheckResponse_SERVING}, nil
}

// Version reports the build and the API level.
func (s *Service) Version(context.Context, *api.VersionRequest) (*api.VersionResponse, error) {
	return &api.VersionResponse{
		AgentVersion: s.cfg.Version,
		Commit:       s.cfg.Commit,
		ApiVersion:   api.APIVersion,
	}, nil
}

// GetGuestDetails reads the kernel's view of the guest on each call, since
// memory and uptime change.
func (s *Service) GetGuestDetails(ctx context.Context, _ *api.GetGuestDetailsRequest) (*api.GetGuestDetailsResponse, error) {
	modules, err := s.modules(ctx)
	if err != nil {
		return nil, err
	}
	release, err := kernelRelease()
	if err != nil {
		return nil, internal(err)
	}
	total, avail, err := readMeminfo()
	if err != nil {
		return nil, internal(err)
	}
	cpus, err := readOnlineCPUs()
	if err != nil {
		return nil, internal(err)
	}
	uptime, err := readUptimeMillis()
	if err != nil {
		return nil, internal(err)
	}
	return &api.GetGuestDetailsResponse{
		KernelRelease:     release,
		MemTotalBytes:     total,
		MemAvailableBytes: avail,
		OnlineCpus:        uint32(cpus),
		AgentVersion:      s.cfg.Version,
		LoadedModules:     modules,
		UptimeMs:          uptime,
		Channel:           s.channel,
	}, nil
}

// modules waits for the boot's module loading, as long as the caller does.
func (s *Service) modules(ctx context.Context) ([]string, error) {
	if s.cfg.ModulesLoaded != nil {
		select {
		case <-s.cfg.ModulesLoaded:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	if s.cfg.ModuleList != nil {
		return s.cfg.ModuleList(), nil
	}
	return s.cfg.Modules, nil
}

// DestroySandbox asks for the power-off and answers; the VM goes down once
// the answer is out.
func (s *Service) DestroySandbox(context.Context, *api.DestroySandboxRequest) (*api.DestroySandboxResponse, error) {
	if s.cfg.OnDestroy == nil {
		return nil, status.Error(codes.Unimplemented, "this agent cannot power off")
	}
	// What the guest still holds for the host's files goes out before the
	// answer: the host may end the VM as soon as it has it.
	syncUnwritten(readUnwritten, unix.Sync)
	s.cfg.OnDestroy()
	return &api.DestroySandboxResponse{}, nil
}

// internal turns a failure to read the guest's own state into the RPC
// status for it: nothing the host can fix.
func internal(err error) error {
	return status.Error(codes.Internal, err.Error())
}

// syncUnwritten syncs unless the guest's page cache holds nothing dirty or
// under writeback, or when unwritten cannot tell. Writes to virtio-fs go
// through to the host as they are made, so only pages dirtied through a
// shared mapping wait in the guest. A sync with nothing to write still
// costs a syncfs round trip to virtiofsd per virtio-fs superblock: 20 to
// 70 ms of every teardown under TCG.
func syncUnwritten(unwritten func() (uint64, error), sync func()) {
	if n, err := unwritten(); err == nil && n == 0 {
		return
	}
	sync()
}
