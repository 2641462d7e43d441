package agent

import (
	"context"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	api "github.com/hull-runtime/hull/api/agent/v1"
	"github.com/hull-runtime/hull/internal/guest/names"
	"github.com/hull-runtime/hull/internal/guest/netconf"
)

// sandboxState is what CreateSandbox set up; shared by every channel's
// copy of the service.
type sandboxState struct {
	mu      sync.Mutex
	created bool // guarded by mu
}

// CreateSandbox mounts the shared file system and sets the hostname.
func (s *Service) CreateSandbox(ctx context.Context, r *api.CreateSandboxRequest) (*api.CreateSandboxResponse, error) {
	if r.SharedFsTag != "" && !names.Tag(r.SharedFsTag) {
		return nil, status.Errorf(codes.InvalidArgument, "shared fs tag %q", r.SharedFsTag)
	}
	if r.Hostname != "" && !names.Hostname(r.Hostname) {
		return nil, status.Errorf(codes.InvalidArgument, "hostname %q", r.Hostname)
	}
	netCfg, err := parseNetwork(r)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if _, err := s.modules(ctx); err != nil { // virtiofs and virtio_net must be loaded
		return nil, err
	}
	st := s.cfg.Sandbox
	if st == nil {
		return nil, status.Error(codes.Unimplemented, "this agent has no sandbox state")
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.created {
		return nil, status.Error(codes.AlreadyExists, "sandbox already created")
	}
	if r.SharedFsTag != "" {
		// Mounted at boot when the host named it on the command line.
		if err := s.cfg.Prepared.wait(ctx); err != nil {
			return nil, status.FromContextError(err).Err()
		}
		if s.cfg.Prepared == nil || s.cfg.Prepared.share != r.SharedFsTag {
			if err := mountShare(r.SharedFsTag); err != nil {
				return nil, status.Error(codes.FailedPrecondition, err.Error())
			}
		}
	}
	if r.Hostname != "" {
		if err := unix.Sethostname([]byte(r.Hostname)); err != nil {
			return nil, status.Errorf(codes.Internal, "hostname: %v", err)
		}
	}
	// Containers share the VM's network namespace: loopback always, and
	// the interfaces mirrored from the host's namespace when there are any.
	if err := netconf.LoopbackUp(); err != nil {
		return nil, status.Errorf(codes.Internal, "network: %v", err)
	}
	if err := netconf.Apply(netCfg); err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "network: %v", err)
	}
	st.created = true
	return &api.CreateSandboxResponse{}, nil
}

// parseNetwork validates the interfaces and routes of a request.
func parseNetwork(r *api.CreateSandboxRequest) (*netconf.Config, error) {
	if len(r.Interfaces) > netconf.MaxInterfaces || len(r.Routes) > netconf.MaxRoutes {
		return nil, fmt.Errorf("%d interfaces and %d routes, at most %d and %d", len(r.Interfaces), len(r.Routes), netconf.MaxInterfaces, netconf.MaxRoutes)
	}
	ifaces := make([]netconf.RawInterface, 0, len(r.Interfaces))
	for _, i := range r.Interfaces {
		ifaces = append(ifaces, netconf.RawInterface{Name: i.GetName(), MAC: i.GetMac(), MTU: i.GetMtu(), Addresses: i.GetAddresses()})
	}
	routes := make([]netconf.RawRoute, 0, len(r.Routes))
	for _, rt := range r.Routes {
		routes = append(routes, netconf.RawRoute{Destination: rt.GetDestination(), Gateway: rt.GetGateway(), InterfaceMAC: rt.GetInterfaceMac(), Metric: rt.GetMetric()})
	}
	return netconf.Parse(ifaces, routes)
}
