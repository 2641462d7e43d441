package sandbox

import (
	"io"
	"net"
	"slices"

	"github.com/containerd/log"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	agent "github.com/hull-runtime/hull/api/agent/v1"
	"github.com/hull-runtime/hull/internal/network"
	"github.com/hull-runtime/hull/internal/vmm/qemu"
)

// netDevices are the VM's virtio-net devices for a mirrored namespace.
func netDevices(n *network.Network) []qemu.NetDevice {
	var devs []qemu.NetDevice
	for _, it := range n.Ifaces {
		devs = append(devs, qemu.NetDevice{TapFile: it.Tap, MAC: it.MAC.String()})
	}
	return devs
}

// netRequest fills the network part of CreateSandbox from a mirrored
// namespace.
func netRequest(n *network.Network, req *agent.CreateSandboxRequest) {
	for _, it := range n.Ifaces {
		ai := &agent.Interface{Name: it.Name, Mac: it.MAC.String(), Mtu: uint32(it.MTU)}
		for _, a := range it.Addrs {
			ai.Addresses = append(ai.Addresses, a.String())
		}
		req.Interfaces = append(req.Interfaces, ai)
	}
	for _, r := range n.Routes {
		ar := &agent.Route{InterfaceMac: r.Iface.MAC.String(), Metric: uint32(max(r.Metric, 0))}
		switch {
		case r.Dst != nil:
			ar.Destination = r.Dst.String()
		case r.IPv6:
			ar.Destination = "::/0"
		default:
			ar.Destination = "0.0.0.0/0"
		}
		if r.Gw != nil {
			ar.Gateway = r.Gw.String()
		}
		req.Routes = append(req.Routes, ar)
	}
}

// guestNetworkNamespace returns linux with the network namespace as the
// guest must see it. A namespace with a path is a host namespace (CNI's,
// podman's): its links are mirrored into the VM, so the container joins
// the VM's own namespace, which has them, and the entry goes. A namespace
// without a path asks for a new one with loopback only. In a pod's VM it
// stays, since the pod's other containers share the VM. A stand-alone
// container (alone) is the only one its VM will ever hold, and the VM's
// namespace is already a new one with loopback only (no link is mirrored
// without a path, and the agent listens on none): the container takes it,
// which spares the guest kernel a namespace set up and torn down (35 to 65
// ms of `hull run` under TCG). linux is not modified.
func guestNetworkNamespace(linux *specs.Linux, alone bool) *specs.Linux {
	if linux == nil {
		return nil
	}
	i := slices.IndexFunc(linux.Namespaces, func(ns specs.LinuxNamespace) bool {
		return ns.Type == specs.NetworkNamespace && (ns.Path != "" || alone)
	})
	if i < 0 {
		return linux
	}
	l := *linux
	l.Namespaces = slices.Delete(slices.Clone(linux.Namespaces), i, i+1)
	return &l
}

// NetworkNamespacePath returns the path of the spec's network namespace,
// or "" when it has none or asks for a new one.
func NetworkNamespacePath(spec *specs.Spec) string {
	if spec == nil || spec.Linux == nil {
		return ""
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			return ns.Path
		}
	}
	return ""
}

// relayLoopback joins each connection made to the host namespace's
// loopback to the same port on the guest's, until the forward is closed.
func (s *Sandbox) relayLoopback(logger *log.Entry) {
	for {
		c, port, err := s.fwd.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			g, err := s.DialPort(port)
			if err != nil {
				logger.WithError(err).WithField("port", port).Warn("port forward")
				return
			}
			defer g.Close()
			done := make(chan struct{})
			go func() {
				_, _ = io.Copy(g, c)
				// Closing an IO stream half-closes it: the guest's
				// server sees EOF and may still answer.
				_ = g.Close()
				close(done)
			}()
			_, _ = io.Copy(c, g)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			<-done
		}()
	}
}
