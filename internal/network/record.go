package network

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Record is everything Restore needs to put a namespace back as Setup
// found it, without the live Network: plain data, meant to be persisted
// (as JSON) by the process that runs Setup and read back by whichever
// process cleans up after it died. Setup makes it before it changes
// anything (see SetupRecorded), so it describes what Setup changes or is
// about to change; Restore works whether or not each change was made.
type Record struct {
	// Path is the namespace's path. NSDev and NSIno identify the namespace
	// Setup worked in: a namespace found at Path with another identity
	// (the original is gone, another was made there) is not touched.
	Path  string `json:"path"`
	NSDev uint64 `json:"nsDev"`
	NSIno uint64 `json:"nsIno"`
	// Links are the mirrored links.
	Links []LinkRecord `json:"links,omitempty"`
	// LoopbackPort, when set, is the port of the loopback redirect
	// (ForwardLoopback), whose iptables rule Restore deletes.
	LoopbackPort int `json:"loopbackPort,omitempty"`
}

// LinkRecord is one mirrored link as Setup found it, and what Setup adds
// for it.
type LinkRecord struct {
	// Name, Index and MAC identify the link (by index, checked against the
	// MAC, else by MAC).
	Name  string `json:"name"`
	Index int    `json:"index"`
	MAC   string `json:"mac"`
	MTU   int    `json:"mtu"`
	Up    bool   `json:"up"`
	// Tap is the name of the tap Setup makes beside the link.
	Tap string `json:"tap"`
	// Ingress says Setup adds an ingress qdisc, with a u32 mirred filter,
	// to the link (and to the tap, which takes it when it goes).
	Ingress bool `json:"ingress"`
	// Addrs are the addresses Setup moves to the guest.
	Addrs []AddrRecord `json:"addrs,omitempty"`
	// Routes are the main table's routes through the link, as they were,
	// but those the kernel makes for an address.
	Routes []RouteRecord `json:"routes,omitempty"`
}

// AddrRecord is an address of a link. Addr is in CIDR form with the
// address itself, not its network (10.0.0.2/24).
type AddrRecord struct {
	Addr        string `json:"addr"`
	Peer        string `json:"peer,omitempty"`
	Broadcast   string `json:"broadcast,omitempty"`
	Flags       int    `json:"flags,omitempty"`
	Scope       int    `json:"scope,omitempty"`
	PreferedLft int    `json:"preferedLft,omitempty"`
	ValidLft    int    `json:"validLft,omitempty"`
}

// RouteRecord is a route through a link; the link is the LinkRecord that
// holds it. Dst is empty for a default route, Gw for a directly connected
// one.
type RouteRecord struct {
	Family           int    `json:"family"`
	Dst              string `json:"dst,omitempty"`
	Src              string `json:"src,omitempty"`
	Gw               string `json:"gw,omitempty"`
	Protocol         int    `json:"protocol,omitempty"`
	Priority         int    `json:"priority,omitempty"`
	Table            int    `json:"table,omitempty"`
	Type             int    `json:"type,omitempty"`
	Tos              int    `json:"tos,omitempty"`
	Scope            int    `json:"scope,omitempty"`
	Flags            int    `json:"flags,omitempty"`
	Realm            int    `json:"realm,omitempty"`
	MTU              int    `json:"mtu,omitempty"`
	MTULock          bool   `json:"mtuLock,omitempty"`
	Window           int    `json:"window,omitempty"`
	Rtt              int    `json:"rtt,omitempty"`
	RttVar           int    `json:"rttVar,omitempty"`
	Ssthresh         int    `json:"ssthresh,omitempty"`
	Cwnd             int    `json:"cwnd,omitempty"`
	AdvMSS           int    `json:"advMSS,omitempty"`
	Reordering       int    `json:"reordering,omitempty"`
	Hoplimit         int    `json:"hoplimit,omitempty"`
	InitCwnd         int    `json:"initCwnd,omitempty"`
	Features         int    `json:"features,omitempty"`
	RtoMin           int    `json:"rtoMin,omitempty"`
	RtoMinLock       bool   `json:"rtoMinLock,omitempty"`
	InitRwnd         int    `json:"initRwnd,omitempty"`
	QuickACK         int    `json:"quickACK,omitempty"`
	Congctl          string `json:"congctl,omitempty"`
	FastOpenNoCookie int    `json:"fastOpenNoCookie,omitempty"`
}

// Record returns what Restore needs to undo this Setup.
func (n *Network) Record() Record { return n.rec.clone() }

func (r Record) clone() Record {
	c := r
	c.Links = make([]LinkRecord, len(r.Links))
	for i, l := range r.Links {
		l.Addrs = append([]AddrRecord(nil), l.Addrs...)
		l.Routes = append([]RouteRecord(nil), l.Routes...)
		c.Links[i] = l
	}
	return c
}

func addrRecord(a netlink.Addr) AddrRecord {
	r := AddrRecord{Addr: a.IPNet.String(), Flags: a.Flags, Scope: a.Scope, PreferedLft: a.PreferedLft, ValidLft: a.ValidLft}
	if a.Peer != nil {
		r.Peer = a.Peer.String()
	}
	if a.Broadcast != nil {
		r.Broadcast = a.Broadcast.String()
	}
	return r
}

// cidr parses s as an address with its prefix length, keeping the address.
func cidr(s string) (*net.IPNet, error) {
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		return nil, err
	}
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	return &net.IPNet{IP: ip, Mask: n.Mask}, nil
}

func (r AddrRecord) netlink() (netlink.Addr, error) {
	ipn, err := cidr(r.Addr)
	if err != nil {
		return netlink.Addr{}, fmt.Errorf("address %q: %w", r.Addr, err)
	}
	a := netlink.Addr{IPNet: ipn, Flags: r.Flags, Scope: r.Scope, PreferedLft: r.PreferedLft, ValidLft: r.ValidLft}
	if r.Peer != "" {
		if a.Peer, err = cidr(r.Peer); err != nil {
			return netlink.Addr{}, fmt.Errorf("peer %q: %w", r.Peer, err)
		}
	}
	if r.Broadcast != "" {
		if a.Broadcast = net.ParseIP(r.Broadcast); a.Broadcast == nil {
			return netlink.Addr{}, fmt.Errorf("broadcast %q: not an address", r.Broadcast)
		}
	} else if ipn.IP.To4() != nil {
		a.Broadcast = net.IPv4zero // none, as before (netlink would make one up)
	}
	return a, nil
}

// routeRecord records r, or says why it cannot be.
func routeRecord(r netlink.Route) (RouteRecord, error) {
	if len(r.MultiPath) > 0 {
		return RouteRecord{}, fmt.Errorf("multipath route %s is not supported: %w", r, errdefs.ErrNotImplemented)
	}
	if r.Encap != nil || r.NewDst != nil || r.Via != nil || r.MPLSDst != nil {
		return RouteRecord{}, fmt.Errorf("route %s: encapsulation, MPLS and via are not supported: %w", r, errdefs.ErrNotImplemented)
	}
	rr := RouteRecord{
		Family: r.Family, Protocol: int(r.Protocol), Priority: r.Priority, Table: r.Table, Type: r.Type,
		// Of the next-hop flags only onlink and pervasive are the user's;
		// the kernel sets the others (linkdown, dead, offload...) and
		// refuses them in a request.
		Tos: r.Tos, Scope: int(r.Scope), Flags: r.Flags & (unix.RTNH_F_ONLINK | unix.RTNH_F_PERVASIVE), Realm: r.Realm, MTU: r.MTU, MTULock: r.MTULock,
		Window: r.Window, Rtt: r.Rtt, RttVar: r.RttVar, Ssthresh: r.Ssthresh, Cwnd: r.Cwnd, AdvMSS: r.AdvMSS,
		Reordering: r.Reordering, Hoplimit: r.Hoplimit, InitCwnd: r.InitCwnd, Features: r.Features,
		RtoMin: r.RtoMin, RtoMinLock: r.RtoMinLock, InitRwnd: r.InitRwnd, QuickACK: r.QuickACK,
		Congctl: r.Congctl, FastOpenNoCookie: r.FastOpenNoCookie,
	}
	if r.Dst != nil {
		rr.Dst = r.Dst.String()
	}
	if r.Src != nil {
		rr.Src = r.Src.String()
	}
	if r.Gw != nil {
		rr.Gw = r.Gw.String()
	}
	return rr, nil
}

func (r RouteRecord) netlink(linkIndex int) (netlink.Route, error) {
	nr := netlink.Route{
		LinkIndex: linkIndex, Family: r.Family, Protocol: netlink.RouteProtocol(r.Protocol), Priority: r.Priority,
		Table: r.Table, Type: r.Type, Tos: r.Tos, Scope: netlink.Scope(r.Scope), Flags: r.Flags & (unix.RTNH_F_ONLINK | unix.RTNH_F_PERVASIVE), Realm: r.Realm,
		MTU: r.MTU, MTULock: r.MTULock, Window: r.Window, Rtt: r.Rtt, RttVar: r.RttVar, Ssthresh: r.Ssthresh,
		Cwnd: r.Cwnd, AdvMSS: r.AdvMSS, Reordering: r.Reordering, Hoplimit: r.Hoplimit, InitCwnd: r.InitCwnd,
		Features: r.Features, RtoMin: r.RtoMin, RtoMinLock: r.RtoMinLock, InitRwnd: r.InitRwnd,
		QuickACK: r.QuickACK, Congctl: r.Congctl, FastOpenNoCookie: r.FastOpenNoCookie,
	}
	if r.Dst != "" {
		_, dst, err := net.ParseCIDR(r.Dst)
		if err != nil {
			return nr, fmt.Errorf("route destination %q: %w", r.Dst, err)
		}
		nr.Dst = dst
	}
	for _, ip := range []struct {
		s   string
		dst *net.IP
	}{{r.Src, &nr.Src}, {r.Gw, &nr.Gw}} {
		if ip.s == "" {
			continue
		}
		if *ip.dst = net.ParseIP(ip.s); *ip.dst == nil {
			return nr, fmt.Errorf("route address %q: not an address", ip.s)
		}
	}
	return nr, nil
}

// validate bounds a record read from elsewhere, and checks that what
// Restore deletes can only be what Setup makes.
func (r Record) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("network record: %s: %w", fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
	}
	if !strings.HasPrefix(r.Path, "/") {
		return bad("namespace path %q is not absolute", r.Path)
	}
	if len(r.Links) > MaxInterfaces {
		return bad("%d links", len(r.Links))
	}
	if r.LoopbackPort < 0 || r.LoopbackPort > 65535 {
		return bad("loopback port %d", r.LoopbackPort)
	}
	for _, l := range r.Links {
		if l.Tap != "" && (!strings.HasSuffix(l.Tap, tapSuffix) || len(l.Tap) >= unix.IFNAMSIZ) {
			return bad("tap name %q", l.Tap)
		}
		if len(l.Addrs) > MaxAddresses {
			return bad("%d addresses on %s", len(l.Addrs), l.Name)
		}
		if len(l.Routes) > 2*MaxRoutes {
			return bad("%d routes through %s", len(l.Routes), l.Name)
		}
		if _, err := net.ParseMAC(l.MAC); err != nil {
			return bad("link %s: mac %q", l.Name, l.MAC)
		}
	}
	return nil
}

// Restore puts the namespace of rec back as Setup found it, without the
// Network that Setup returned: for the process that cleans up after the
// one that ran Setup died. It removes the ingress qdiscs (and so the
// filters) and the taps Setup added, restores the MTU, state, addresses
// and routes of each mirrored link, and is idempotent: whatever of Setup's
// changes are there or not, it ends in the same state, and a second call
// changes nothing. A namespace that is gone, or whose path now holds
// another namespace, and a link that is gone, are left alone. The taps
// must no longer be in use (QEMU has exited).
func Restore(rec Record) error {
	if err := rec.validate(); err != nil {
		return err
	}
	ns, err := netns.GetFromPath(rec.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("network namespace %s: %w", rec.Path, err)
	}
	defer ns.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(ns), &st); err != nil {
		return fmt.Errorf("network namespace %s: %w", rec.Path, err)
	}
	if rec.NSIno != 0 && (st.Ino != rec.NSIno || st.Dev != rec.NSDev) {
		return nil // not the namespace Setup worked in
	}
	if t, err := unix.IoctlRetInt(int(ns), unix.NS_GET_NSTYPE); err != nil || t != unix.CLONE_NEWNET {
		return fmt.Errorf("%s is not a network namespace: %w", rec.Path, errdefs.ErrInvalidArgument)
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("network namespace %s: netlink: %w", rec.Path, err)
	}
	defer h.Close()
	if err := h.SetSocketTimeout(netlinkTimeout); err != nil {
		return fmt.Errorf("network namespace %s: netlink timeout: %w", rec.Path, err)
	}
	if err := restore(h, ns, rec); err != nil {
		return fmt.Errorf("network namespace %s: restore: %w", rec.Path, err)
	}
	return nil
}

// restore is Restore in a namespace already open; Close uses it too.
func restore(h *netlink.Handle, ns netns.NsHandle, rec Record) error {
	var errs []error
	if err := removeRedirect(ns, rec.LoopbackPort); err != nil {
		errs = append(errs, err)
	}
	links := make([]netlink.Link, len(rec.Links))
	for i, lr := range rec.Links {
		l, err := findLink(h, lr)
		if err != nil {
			errs = append(errs, err)
		}
		links[i] = l
	}
	for i, lr := range rec.Links {
		if l := links[i]; l != nil && lr.Ingress {
			q := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: l.Attrs().Index, Parent: netlink.HANDLE_INGRESS, Handle: ingressParent}}
			if err := h.QdiscDel(q); err != nil && !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
				errs = append(errs, fmt.Errorf("ingress qdisc of %s: %w", lr.Name, err))
			}
		}
		// A tap goes away with its last fd; one still there is deleted
		// (with its qdisc).
		if lr.Tap == "" {
			continue
		}
		if t, err := h.LinkByName(lr.Tap); err == nil && t.Type() == "tuntap" {
			if err := h.LinkDel(t); err != nil && !errors.Is(err, unix.ENODEV) {
				errs = append(errs, fmt.Errorf("tap %s: %w", lr.Tap, err))
			}
		}
	}
	// A link deleted while this runs (the CNI plugin tearing the pod's
	// network down at the same time) has nothing left to restore: its
	// errors count only while it exists.
	linkErrs := make([][]error, len(rec.Links))
	for i, lr := range rec.Links {
		l := links[i]
		if l == nil {
			continue
		}
		a := l.Attrs()
		if lr.MTU >= 68 && a.MTU != lr.MTU {
			if err := h.LinkSetMTU(l, lr.MTU); err != nil {
				linkErrs[i] = append(linkErrs[i], fmt.Errorf("mtu of %s: %w", lr.Name, err))
			}
		}
		if up := a.Flags&net.FlagUp != 0; up != lr.Up {
			set := h.LinkSetDown
			if lr.Up {
				set = h.LinkSetUp
			}
			if err := set(l); err != nil {
				linkErrs[i] = append(linkErrs[i], fmt.Errorf("state of %s: %w", lr.Name, err))
			}
		}
		dev := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: a.Index}}
		for _, ar := range lr.Addrs {
			addr, err := ar.netlink()
			if err == nil {
				err = h.AddrReplace(dev, &addr)
			}
			if err != nil {
				linkErrs[i] = append(linkErrs[i], fmt.Errorf("restoring %s on %s: %w", ar.Addr, lr.Name, err))
			}
		}
	}
	// Routes last: a gateway is reachable once the addresses are back, and
	// once the routes without one (Calico's to its gateway, 169.254.1.1)
	// are: those first, in a pass of their own, as a dump lists the
	// default route first.
	for _, gateways := range []bool{false, true} {
		for i, lr := range rec.Links {
			if links[i] == nil {
				continue
			}
			for _, rr := range lr.Routes {
				if (rr.Gw != "") != gateways {
					continue
				}
				r, err := rr.netlink(links[i].Attrs().Index)
				if err == nil {
					err = h.RouteReplace(&r)
				}
				if err != nil {
					linkErrs[i] = append(linkErrs[i], fmt.Errorf("restoring route %s via %s on %s: %w", orDefault(rr.Dst), rr.Gw, lr.Name, err))
				}
			}
		}
	}
	for i, le := range linkErrs {
		if len(le) == 0 {
			continue
		}
		if _, err := h.LinkByIndex(links[i].Attrs().Index); err != nil {
			var nf netlink.LinkNotFoundError
			if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
				continue
			}
		}
		errs = append(errs, le...)
	}
	return errors.Join(errs...)
}

func orDefault(dst string) string {
	if dst == "" {
		return "default"
	}
	return dst
}

// findLink finds a recorded link: by index if the link there has the
// recorded MAC, else by MAC. A link that is gone is nil, not an error.
func findLink(h *netlink.Handle, lr LinkRecord) (netlink.Link, error) {
	if l, err := h.LinkByIndex(lr.Index); err == nil && strings.EqualFold(l.Attrs().HardwareAddr.String(), lr.MAC) {
		return l, nil
	}
	all, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	for _, l := range all {
		a := l.Attrs()
		if l.Type() != "tuntap" && !strings.HasSuffix(a.Name, tapSuffix) && strings.EqualFold(a.HardwareAddr.String(), lr.MAC) {
			return l, nil
		}
	}
	return nil, nil
}
