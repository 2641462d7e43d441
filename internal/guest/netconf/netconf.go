// Package netconf configures the guest's network from what the host read in
// the container's network namespace: it finds each virtio-net link by its
// MAC, sets its MTU and addresses, brings it up and adds the routes. The
// host is not trusted more than it must be: every value is parsed and
// bounded before anything is changed.
package netconf

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/hull-runtime/hull/internal/guest/names"
)

// Bounds on a request.
const (
	MaxInterfaces = 8
	MaxAddresses  = 32 // per interface
	MaxRoutes     = 64
)

// Interface is a link to configure.
type Interface struct {
	Name  string // renamed to when free; may be empty
	MAC   net.HardwareAddr
	MTU   int
	Addrs []*netlink.Addr
}

// Route is a route to add through the interface with MAC.
type Route struct {
	Dst    *net.IPNet // never nil: 0.0.0.0/0 or ::/0 for a default
	Gw     net.IP
	MAC    net.HardwareAddr
	Metric int
}

// Config is a validated request.
type Config struct {
	Interfaces []Interface
	Routes     []Route
}

// RawInterface and RawRoute are the request as the host sent it.
type RawInterface struct {
	Name      string
	MAC       string
	MTU       uint32
	Addresses []string
}

type RawRoute struct {
	Destination, Gateway, InterfaceMAC string
	Metric                             uint32
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}

// Parse validates a request.
func Parse(ifaces []RawInterface, routes []RawRoute) (*Config, error) {
	if len(ifaces) > MaxInterfaces {
		return nil, invalid("%d interfaces, at most %d", len(ifaces), MaxInterfaces)
	}
	if len(routes) > MaxRoutes {
		return nil, invalid("%d routes, at most %d", len(routes), MaxRoutes)
	}
	c := &Config{}
	macs := map[string]bool{}
	for _, ri := range ifaces {
		mac, err := net.ParseMAC(ri.MAC)
		if err != nil || len(mac) != 6 || mac[0]&1 != 0 {
			return nil, invalid("interface MAC %q", ri.MAC)
		}
		if macs[mac.String()] {
			return nil, invalid("interface MAC %s twice", mac)
		}
		macs[mac.String()] = true
		if ri.Name != "" && !names.Interface(ri.Name) {
			return nil, invalid("interface name %q", ri.Name)
		}
		if ri.MTU < 68 || ri.MTU > 65535 {
			return nil, invalid("interface %s MTU %d", mac, ri.MTU)
		}
		if len(ri.Addresses) > MaxAddresses {
			return nil, invalid("interface %s has %d addresses, at most %d", mac, len(ri.Addresses), MaxAddresses)
		}
		it := Interface{Name: ri.Name, MAC: mac, MTU: int(ri.MTU)}
		for _, a := range ri.Addresses {
			ip, n, err := net.ParseCIDR(a)
			if err != nil || ip.IsUnspecified() || ip.IsMulticast() || ip.IsLoopback() {
				return nil, invalid("interface %s address %q", mac, a)
			}
			n.IP = ip
			it.Addrs = append(it.Addrs, &netlink.Addr{IPNet: n})
		}
		c.Interfaces = append(c.Interfaces, it)
	}
	for _, rr := range routes {
		mac, err := net.ParseMAC(rr.InterfaceMAC)
		if err != nil || !macs[mac.String()] {
			return nil, invalid("route through unknown interface %q", rr.InterfaceMAC)
		}
		r := Route{MAC: mac, Metric: int(rr.Metric)}
		if rr.Gateway != "" {
			if r.Gw = net.ParseIP(rr.Gateway); r.Gw == nil || r.Gw.IsUnspecified() || r.Gw.IsMulticast() {
				return nil, invalid("route gateway %q", rr.Gateway)
			}
		}
		switch {
		case rr.Destination != "":
			_, dst, err := net.ParseCIDR(rr.Destination)
			if err != nil {
				return nil, invalid("route destination %q", rr.Destination)
			}
			r.Dst = dst
		case r.Gw == nil:
			return nil, invalid("default route without a gateway")
		case r.Gw.To4() != nil:
			r.Dst = &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
		default:
			r.Dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
		}
		if r.Gw != nil && (r.Gw.To4() == nil) != (r.Dst.IP.To4() == nil) {
			return nil, invalid("route %s via %s mixes address families", r.Dst, r.Gw)
		}
		c.Routes = append(c.Routes, r)
	}
	return c, nil
}

// LoopbackUp brings lo up.
func LoopbackUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("lo: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	return nil
}

// linkWait bounds the wait for a virtio-net device to show up: the driver
// is loaded by then, but probing may still be under way.
const linkWait = 3 * time.Second

// Apply configures the interfaces and routes of c.
func Apply(c *Config) error {
	links := map[string]netlink.Link{}
	deadline := time.Now().Add(linkWait)
	for _, it := range c.Interfaces {
		l, err := linkByMAC(it.MAC, deadline)
		if err != nil {
			return err
		}
		if it.Name != "" && it.Name != l.Attrs().Name {
			if _, err := netlink.LinkByName(it.Name); err != nil {
				// The name is free (any error but "not found" is kept
				// quiet too: the kernel's name is a fine fallback).
				if err := netlink.LinkSetName(l, it.Name); err != nil {
					return fmt.Errorf("renaming %s to %s: %w", l.Attrs().Name, it.Name, err)
				}
			}
		}
		if err := netlink.LinkSetMTU(l, it.MTU); err != nil {
			return fmt.Errorf("%s mtu %d: %w", it.MAC, it.MTU, err)
		}
		for _, a := range it.Addrs {
			if a.IP.To4() == nil {
				a.Flags |= unix.IFA_F_NODAD // the host's namespace already owned it
			}
			if err := netlink.AddrReplace(l, a); err != nil {
				return fmt.Errorf("%s address %s: %w", it.MAC, a.IPNet, err)
			}
		}
		if err := netlink.LinkSetUp(l); err != nil {
			return fmt.Errorf("%s up: %w", it.MAC, err)
		}
		links[it.MAC.String()] = l
	}
	// Routes without a gateway first: a gateway must be reachable when
	// its route is added, and the host's dump lists the default route
	// first (Calico: default via 169.254.1.1, reachable through a route
	// of its own).
	for _, gateways := range []bool{false, true} {
		for _, r := range c.Routes {
			if (r.Gw != nil) != gateways {
				continue
			}
			l := links[r.MAC.String()]
			nr := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: r.Dst, Gw: r.Gw, Priority: r.Metric}
			if r.Gw == nil {
				nr.Scope = netlink.SCOPE_LINK
			}
			err := netlink.RouteReplace(nr)
			if errors.Is(err, unix.ENETUNREACH) && r.Gw != nil {
				// The host had it, so it was an onlink route there: a
				// gateway the link reaches with no route to it.
				nr.Flags |= int(netlink.FLAG_ONLINK)
				err = netlink.RouteReplace(nr)
			}
			if err != nil {
				return fmt.Errorf("route %s via %v: %w", r.Dst, r.Gw, err)
			}
		}
	}
	return nil
}

func linkByMAC(mac net.HardwareAddr, deadline time.Time) (netlink.Link, error) {
	for {
		links, err := netlink.LinkList()
		if err != nil {
			return nil, fmt.Errorf("listing links: %w", err)
		}
		for _, l := range links {
			if strings.EqualFold(l.Attrs().HardwareAddr.String(), mac.String()) && l.Attrs().Flags&net.FlagLoopback == 0 {
				return l, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no link with MAC %s: %w", mac, errdefs.ErrNotFound)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
