package sandbox

import (
	"errors"
	"io"
	"net"
	"slices"
	"sync/atomic"
	"time"

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
// ms of `hull run` under TCG). Not a container with a user namespace of
// its own: the kernel lets it mount sysfs only in a network namespace its
// user namespace owns, so it gets a new one, as under runc. linux is not
// modified.
func guestNetworkNamespace(linux *specs.Linux, alone bool) *specs.Linux {
	if linux == nil {
		return nil
	}
	if slices.ContainsFunc(linux.Namespaces, func(ns specs.LinuxNamespace) bool { return ns.Type == specs.UserNamespace }) {
		alone = false
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
	backoff := 5 * time.Millisecond
	for {
		c, port, err := s.fwd.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// Out of descriptors, say: the redirect stays in place, so
			// giving up would leave every later connection hanging.
			logger.WithError(err).Warn("port forward: accept")
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		go func() {
			defer c.Close()
			g, err := s.DialPort(port)
			if err != nil {
				logger.WithError(err).WithField("port", port).Warn("port forward")
				return
			}
			defer g.Close()
			relay(c, g, relayIdle)
		}()
	}
}

// relayIdle bounds how long the guest may keep a forwarded connection
// without sending a byte once the host's client has sent all it had.
const relayIdle = 30 * time.Second

// relay copies between a host connection and a guest stream until both
// directions end. Closing the guest stream half-closes it: the guest's
// server sees EOF and may still answer. Once the host's client has sent
// all, the guest gets idle of silence at most before the relay ends: a
// guest that never closes its end would otherwise keep the relay (two
// goroutines, their buffers) for ever.
func relay(c, g net.Conn, idle time.Duration) {
	var hostDone atomic.Bool
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(g, c)
		_ = g.Close()
		hostDone.Store(true)
		_ = g.SetReadDeadline(time.Now().Add(idle))
		close(done)
	}()
	_, _ = io.Copy(c, &idleReader{c: g, idle: idle, on: &hostDone})
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	} else {
		_ = c.Close()
	}
	<-done
}

// idleReader reads c, with a deadline idle from each read once on is set.
type idleReader struct {
	c    net.Conn
	idle time.Duration
	on   *atomic.Bool
}

func (r *idleReader) Read(b []byte) (int, error) {
	if r.on.Load() {
		_ = r.c.SetReadDeadline(time.Now().Add(r.idle))
	}
	return r.c.Read(b)
}
