// Package network mirrors the links of a container's network namespace
// into its VM. For each link with a MAC address (the veth that CNI,
// netavark or a test put there) it creates a tap in the same namespace,
// redirects the ingress of each to the egress of the other with tc
// (ingress qdisc, u32 match-all filter, mirred redirect), and moves the
// link's addresses and routes to the guest: it records them, removes the
// addresses from the link (the guest owns the IP now), and puts everything
// back as it was when the sandbox goes away, so that CNI DEL finds what it
// made. What it is about to change is a Record, plain data that the caller
// can persist (SetupRecorded) so that Restore can put the namespace back
// after the process that ran Setup died.
//
// Everything read from the namespace is bounded and validated: the
// namespace belongs to whoever made it, not to hull.
package network

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Bounds on what is taken from a namespace.
const (
	MaxInterfaces = 8
	MaxAddresses  = 32 // per interface
	MaxRoutes     = 64
	// netlinkTimeout bounds each netlink request.
	netlinkTimeout = 5 * time.Second
)

// tapSuffix ends the name of every tap hull makes: "tap<N>_hull".
const tapSuffix = "_hull"

// Interface is a link of the namespace as the guest must see it.
type Interface struct {
	// Name is the link's name in the namespace, a hint for the guest.
	Name string
	MAC  net.HardwareAddr
	MTU  int
	// Addrs are the addresses moved to the guest.
	Addrs []*net.IPNet
	// Tap is the tap that mirrors the link; QEMU gets its fd.
	Tap     *os.File
	TapName string

	linkIndex int
	tapIndex  int
	saved     []netlink.Addr // the addresses as they were on the link
}

// Route is a route of the namespace through one of the mirrored links.
type Route struct {
	// Dst is nil for a default route.
	Dst *net.IPNet
	// Gw is nil for a route to a directly connected network.
	Gw     net.IP
	Iface  *Interface
	Metric int
	IPv6   bool
}

// Network is what Setup did in one namespace; Close undoes it.
type Network struct {
	path   string
	ns     netns.NsHandle
	h      *netlink.Handle
	Ifaces []*Interface
	Routes []Route

	// rec is what Close (or Restore, from another process) needs to put
	// the namespace back: made by scan, before anything changes.
	rec Record
}

// Setup mirrors the links of the network namespace at path. On error
// nothing of what it did is left.
func Setup(path string) (*Network, error) { return SetupRecorded(path, nil) }

// SetupRecorded is Setup that, once it knows what it will change and
// before it changes anything, hands save the Record that Restore needs to
// undo it, so that a crash at any point after leaves a record to restore
// from. An error from save ends Setup with nothing changed. save may be
// nil.
func SetupRecorded(path string, save func(Record) error) (_ *Network, retErr error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("network namespace %s: %w", path, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("network namespace %s: %w: %w", path, err, errdefs.ErrInvalidArgument)
	}
	if t, err := unix.IoctlRetInt(int(ns), unix.NS_GET_NSTYPE); err != nil || t != unix.CLONE_NEWNET {
		ns.Close()
		return nil, fmt.Errorf("%s is not a network namespace: %w", path, errdefs.ErrInvalidArgument)
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("network namespace %s: netlink: %w", path, err)
	}
	n := &Network{path: path, ns: ns, h: h, rec: Record{Path: path}}
	var st unix.Stat_t
	if err := unix.Fstat(int(ns), &st); err != nil {
		h.Close()
		ns.Close()
		return nil, fmt.Errorf("network namespace %s: %w", path, err)
	}
	n.rec.NSDev, n.rec.NSIno = st.Dev, st.Ino
	// Mirroring takes the namespace's addresses away and sends all its
	// traffic to the VM: done to the host's own namespace (a spec that
	// names /proc/1/ns/net, or a pid that lives there), the host would
	// lose its network.
	for _, own := range []string{"/proc/1/ns/net", "/proc/self/ns/net"} {
		var o unix.Stat_t
		if err := unix.Stat(own, &o); err == nil && o.Dev == st.Dev && o.Ino == st.Ino {
			h.Close()
			ns.Close()
			return nil, fmt.Errorf("network namespace %s is the host's: a container in a VM cannot share the host's network (its interfaces would be taken from the host): %w", path, errdefs.ErrInvalidArgument)
		}
	}
	defer func() {
		if retErr != nil {
			n.Close()
		}
	}()
	if err := h.SetSocketTimeout(netlinkTimeout); err != nil {
		return nil, n.errorf("netlink timeout: %w", err)
	}
	if err := n.scan(); err != nil {
		return nil, err
	}
	if save != nil {
		if err := save(n.Record()); err != nil {
			return nil, n.errorf("saving the record: %w", err)
		}
	}
	for i, it := range n.Ifaces {
		if err := n.mirror(i, it); err != nil {
			return nil, err
		}
	}
	// Last: once the addresses are gone, the namespace no longer answers
	// for the guest (ARP, ICMP) and the routes through the link are gone
	// with them; Close restores both.
	for _, it := range n.Ifaces {
		for _, a := range it.saved {
			if err := n.h.AddrDel(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: it.linkIndex}}, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
				return nil, n.errorf("removing %s from %s: %w", a.IPNet, it.Name, err)
			}
		}
	}
	return n, nil
}

func (n *Network) errorf(format string, args ...any) error {
	return fmt.Errorf("network namespace %s: %w", n.path, fmt.Errorf(format, args...))
}

// scan records the links, addresses and routes to mirror.
func (n *Network) scan() error {
	links, err := n.h.LinkList()
	if err != nil {
		return n.errorf("listing links: %w", err)
	}
	byIndex := map[int]int{} // link index -> position in Ifaces and rec.Links
	for _, l := range links {
		a := l.Attrs()
		if a.Flags&net.FlagLoopback != 0 || len(a.HardwareAddr) != 6 || l.Type() == "tuntap" || strings.HasSuffix(a.Name, tapSuffix) {
			continue
		}
		// The tc redirect takes every frame a link receives: a bridge,
		// its ports and a bond's slaves would be cut off from the frames
		// they forward, and an ipvlan in L3 mode answers no ARP, so the
		// guest could not reach its gateway. Refused by name rather than
		// mirrored into a network that does not work.
		if err := mirrorable(l); err != nil {
			return n.errorf("link %s: %w", a.Name, err)
		}
		if len(n.Ifaces) == MaxInterfaces {
			return n.errorf("more than %d links: %w", MaxInterfaces, errdefs.ErrInvalidArgument)
		}
		if a.MTU < 68 || a.MTU > 65535 {
			return n.errorf("link %s has MTU %d: %w", a.Name, a.MTU, errdefs.ErrInvalidArgument)
		}
		// The ingress qdisc is hull's to add, and so, after a crash,
		// Restore's to delete: there must be none before.
		if qs, err := n.h.QdiscList(l); err != nil {
			return n.errorf("qdiscs of %s: %w", a.Name, err)
		} else if slices.ContainsFunc(qs, func(q netlink.Qdisc) bool { return q.Attrs().Parent == netlink.HANDLE_INGRESS }) {
			return n.errorf("link %s already has an ingress qdisc: %w", a.Name, errdefs.ErrFailedPrecondition)
		}
		it := &Interface{Name: a.Name, MAC: a.HardwareAddr, MTU: a.MTU, linkIndex: a.Index,
			TapName: "tap" + strconv.Itoa(len(n.Ifaces)) + tapSuffix}
		lr := LinkRecord{Name: a.Name, Index: a.Index, MAC: a.HardwareAddr.String(), MTU: a.MTU,
			Up: a.Flags&net.FlagUp != 0, Tap: it.TapName, Ingress: true}
		addrs, err := n.h.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return n.errorf("addresses of %s: %w", a.Name, err)
		}
		for _, ad := range addrs {
			// IPv6 link-local addresses stay: the kernel makes them, and
			// the guest makes its own from the same MAC. (An IPv4 one in
			// 169.254/16 is a CNI's, and moves like any other.)
			if isIPv6LinkLocal(ad.IP) || ad.Scope == int(netlink.SCOPE_HOST) {
				continue
			}
			if len(it.Addrs) == MaxAddresses {
				return n.errorf("more than %d addresses on %s: %w", MaxAddresses, a.Name, errdefs.ErrInvalidArgument)
			}
			it.saved = append(it.saved, ad)
			it.Addrs = append(it.Addrs, &net.IPNet{IP: ad.IP, Mask: ad.Mask})
			lr.Addrs = append(lr.Addrs, addrRecord(ad))
		}
		n.Ifaces = append(n.Ifaces, it)
		n.rec.Links = append(n.rec.Links, lr)
		byIndex[a.Index] = len(n.Ifaces) - 1
	}
	routes, err := n.h.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return n.errorf("listing routes: %w", err)
	}
	saved := 0
	for _, r := range routes {
		// A multipath route names no link of its own (LinkIndex 0), and
		// taking the addresses off its links would flush it: refused by
		// name rather than lost.
		if len(r.MultiPath) > 0 && r.Table == unix.RT_TABLE_MAIN {
			for _, nh := range r.MultiPath {
				if _, ok := byIndex[nh.LinkIndex]; ok {
					return n.errorf("multipath route %s: mirroring it into a VM is not supported: %w", r, errdefs.ErrNotImplemented)
				}
			}
		}
		i, ok := byIndex[r.LinkIndex]
		if !ok || r.Table != unix.RT_TABLE_MAIN {
			continue
		}
		it := n.Ifaces[i]
		// Routes the kernel made for an address come back with the
		// address.
		if r.Protocol == unix.RTPROT_KERNEL {
			continue
		}
		if saved == 2*MaxRoutes {
			return n.errorf("more than %d routes: %w", 2*MaxRoutes, errdefs.ErrInvalidArgument)
		}
		rr, err := routeRecord(r)
		if err != nil {
			return n.errorf("%w", err)
		}
		n.rec.Links[i].Routes = append(n.rec.Links[i].Routes, rr)
		saved++
		// The link-local and multicast routes every IPv6 link has, the
		// guest makes itself. (IPv4 link-local routes are a CNI's: Calico
		// routes its gateway, 169.254.1.1, that way.)
		if r.Dst != nil && r.Dst.IP.To4() == nil && (r.Dst.IP.IsLinkLocalUnicast() || r.Dst.IP.IsMulticast()) {
			continue
		}
		if len(n.Routes) == MaxRoutes {
			return n.errorf("more than %d routes: %w", MaxRoutes, errdefs.ErrInvalidArgument)
		}
		dst := r.Dst
		if dst != nil {
			if ones, _ := dst.Mask.Size(); ones == 0 {
				dst = nil
			}
		}
		n.Routes = append(n.Routes, Route{Dst: dst, Gw: r.Gw, Iface: it, Metric: r.Priority, IPv6: r.Family == unix.AF_INET6})
	}
	return nil
}

// mirror makes the tap of one link and the redirects between them.
func (n *Network) mirror(i int, it *Interface) error {
	tap, err := n.openTap(it.TapName)
	if err != nil {
		return err
	}
	it.Tap = tap
	l, err := n.h.LinkByName(it.TapName)
	if err != nil {
		return n.errorf("tap %s: %w", it.TapName, err)
	}
	it.tapIndex = l.Attrs().Index
	if err := n.h.LinkSetMTU(l, it.MTU); err != nil {
		return n.errorf("tap %s mtu %d: %w", it.TapName, it.MTU, err)
	}
	if err := n.h.LinkSetUp(l); err != nil {
		return n.errorf("tap %s up: %w", it.TapName, err)
	}
	for _, pair := range [][2]int{{it.linkIndex, it.tapIndex}, {it.tapIndex, it.linkIndex}} {
		if err := n.redirect(pair[0], pair[1]); err != nil {
			return n.errorf("redirect between %s and %s: %w", it.Name, it.TapName, err)
		}
	}
	return nil
}

var ingressParent = netlink.MakeHandle(0xffff, 0)

// redirect sends everything that enters link from to the egress of link to.
func (n *Network) redirect(from, to int) error {
	q := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: from, Parent: netlink.HANDLE_INGRESS, Handle: ingressParent}}
	if err := n.h.QdiscAdd(q); err != nil {
		return fmt.Errorf("ingress qdisc: %w", err)
	}
	// cls_matchall is not everywhere; u32 with one all-zero key matches
	// every packet too.
	f := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: from, Parent: ingressParent, Priority: 1, Protocol: unix.ETH_P_ALL},
		Sel:         &netlink.TcU32Sel{Flags: tcU32Terminal, Nkeys: 1, Keys: []netlink.TcU32Key{{Mask: 0, Val: 0, Off: 0}}},
		Actions:     []netlink.Action{netlink.NewMirredAction(to)},
	}
	if err := n.h.FilterAdd(f); err != nil {
		return fmt.Errorf("u32 mirred filter: %w", err)
	}
	return nil
}

// tcU32Terminal is TC_U32_TERMINAL of linux/pkt_cls.h.
const tcU32Terminal = 1

// Close undoes Setup: removes the filters and qdiscs and the taps, and
// restores the addresses and routes, as Restore does from the record. It
// is bounded (each netlink request has a timeout) and safe to call more
// than once. The taps must no longer be in use (QEMU has exited).
func (n *Network) Close() error {
	if n.h == nil {
		return nil
	}
	for _, it := range n.Ifaces {
		if it.Tap != nil {
			it.Tap.Close() // closed already if QEMU inherited it
			it.Tap = nil
		}
	}
	err := restore(n.h, n.ns, n.rec)
	n.h.Close()
	n.h = nil
	n.ns.Close()
	if err != nil {
		return n.errorf("cleanup: %w", err)
	}
	return nil
}

// isIPv6LinkLocal reports an fe80::/10 address; net.IP's
// IsLinkLocalUnicast also takes IPv4's 169.254/16.
func isIPv6LinkLocal(ip net.IP) bool { return ip.To4() == nil && ip.IsLinkLocalUnicast() }

// mirrorable refuses the links that a tc redirect to a tap cannot stand
// in for.
func mirrorable(l netlink.Link) error {
	a := l.Attrs()
	switch {
	case a.MasterIndex != 0:
		return fmt.Errorf("is enslaved to link %d (a bridge port or bond slave): mirroring it into a VM is not supported: %w", a.MasterIndex, errdefs.ErrNotImplemented)
	case l.Type() == "bridge" || l.Type() == "bond":
		return fmt.Errorf("is a %s: mirroring it into a VM is not supported: %w", l.Type(), errdefs.ErrNotImplemented)
	}
	if iv, ok := l.(*netlink.IPVlan); ok && iv.Mode != netlink.IPVLAN_MODE_L2 {
		return fmt.Errorf("is an ipvlan in L3 mode, which answers no ARP: only L2 mode can be mirrored into a VM: %w", errdefs.ErrNotImplemented)
	}
	return nil
}
