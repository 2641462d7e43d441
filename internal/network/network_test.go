package network

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

// testNetns makes a "host" and a "container" namespace joined by a veth
// pair, the container end with addresses and routes as CNI leaves them,
// and returns the container namespace's path and its name.
func testNetns(t *testing.T) (string, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2")
	}
	suffix := fmt.Sprintf("%d%d", os.Getpid()%10000, time.Now().UnixNano()%1000)
	peer, ctr := "hullnp"+suffix, "hullnc"+suffix
	for _, name := range []string{peer, ctr} {
		ip(t, "netns", "add", name)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	}
	ip(t, "-n", ctr, "link", "add", "name", "eth0", "mtu", "1400", "type", "veth", "peer", "name", "veth-peer", "netns", peer)
	ip(t, "-n", ctr, "addr", "add", "10.201.7.2/24", "dev", "eth0")
	ip(t, "-n", ctr, "addr", "add", "fd00:7::2/64", "dev", "eth0", "nodad")
	ip(t, "-n", ctr, "link", "set", "eth0", "up")
	ip(t, "-n", ctr, "link", "set", "lo", "up")
	ip(t, "-n", ctr, "route", "add", "default", "via", "10.201.7.1")
	ip(t, "-n", ctr, "route", "add", "10.99.0.0/16", "via", "10.201.7.3", "metric", "7")
	ip(t, "-n", peer, "addr", "add", "10.201.7.1/24", "dev", "veth-peer")
	ip(t, "-n", peer, "link", "set", "veth-peer", "up")
	return "/var/run/netns/" + ctr, ctr
}

func ip(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func tc(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "tc"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("tc %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// snapshot is what must be the same before Setup and after Close.
func snapshot(t *testing.T, ns string) string {
	return ip(t, "-n", ns, "-o", "link", "show") + ip(t, "-n", ns, "-o", "addr", "show") +
		ip(t, "-n", ns, "route", "show") + ip(t, "-n", ns, "-6", "route", "show") +
		tc(t, ns, "qdisc", "show")
}

func TestSetupMirrorsAndCloseRestores(t *testing.T) {
	path, ns := testNetns(t)
	before := snapshot(t, ns)

	n, err := Setup(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Ifaces) != 1 {
		t.Fatalf("want one interface, got %+v", n.Ifaces)
	}
	it := n.Ifaces[0]
	if it.Name != "eth0" || it.MTU != 1400 || it.Tap == nil || it.TapName != "tap0_hull" {
		t.Fatalf("interface %+v", it)
	}
	var addrs []string
	for _, a := range it.Addrs {
		addrs = append(addrs, a.String())
	}
	if strings.Join(addrs, ",") != "10.201.7.2/24,fd00:7::2/64" {
		t.Fatalf("addresses %v", addrs)
	}
	var routes []string
	for _, r := range n.Routes {
		routes = append(routes, fmt.Sprintf("%v via %v metric %d", r.Dst, r.Gw, r.Metric))
	}
	if got := strings.Join(routes, ","); got != "<nil> via 10.201.7.1 metric 0,10.99.0.0/16 via 10.201.7.3 metric 7" {
		t.Fatalf("routes %s", got)
	}

	tap := ip(t, "-n", ns, "-d", "link", "show", "tap0_hull")
	for _, want := range []string{"mtu 1400", "tap", "vnet_hdr on", "state"} {
		if !strings.Contains(tap, want) {
			t.Fatalf("tap lacks %q: %s", want, tap)
		}
	}
	if strings.Contains(tap, "multi_queue") && !strings.Contains(tap, "numqueues 1") {
		t.Fatalf("tap is multi-queue: %s", tap)
	}
	for _, dev := range []string{"eth0", "tap0_hull"} {
		if q := tc(t, ns, "qdisc", "show", "dev", dev, "ingress"); !strings.Contains(q, "ingress ffff:") {
			t.Fatalf("no ingress qdisc on %s: %s", dev, q)
		}
		other := map[string]string{"eth0": "tap0_hull", "tap0_hull": "eth0"}[dev]
		f := tc(t, ns, "filter", "show", "dev", dev, "ingress")
		if !strings.Contains(f, "u32") || !strings.Contains(f, "Egress Redirect to device "+other) {
			t.Fatalf("no redirect %s -> %s: %s", dev, other, f)
		}
	}
	if a := ip(t, "-n", ns, "addr", "show", "dev", "eth0"); strings.Contains(a, "10.201.7.2") || strings.Contains(a, "fd00:7::2") {
		t.Fatalf("addresses left on the veth: %s", a)
	}

	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if after := snapshot(t, ns); after != before {
		t.Fatalf("namespace differs after close:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func TestSetupTwiceAfterClose(t *testing.T) {
	path, _ := testNetns(t)
	for range 2 {
		n, err := Setup(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSetupFailsCleanly(t *testing.T) {
	path, ns := testNetns(t)
	before := snapshot(t, ns)
	// A link already named like hull's tap makes the tap's creation fail
	// after the scan; nothing of Setup may stay.
	ip(t, "-n", ns, "link", "add", "name", "tap0_hull", "type", "veth", "peer", "name", "xpeer")
	before2 := snapshot(t, ns)
	if _, err := Setup(path); err == nil {
		t.Fatal("setup succeeded over an existing tap0_hull")
	}
	if after := snapshot(t, ns); after != before2 {
		t.Fatalf("namespace differs after failed setup:\nbefore:\n%s\nafter:\n%s", before2, after)
	}
	ip(t, "-n", ns, "link", "del", "tap0_hull")
	if after := snapshot(t, ns); after != before {
		t.Fatal("namespace differs")
	}
}

func TestSetupMissingNamespace(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	_, err := Setup(missing)
	if !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), missing) {
		t.Fatalf("want not-found naming %s, got %v", missing, err)
	}
	notNS := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notNS, nil, 0o600)
	if _, err := Setup(notNS); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("want invalid argument for a plain file, got %v", err)
	}
}

// The host's own network namespace is refused before anything changes:
// mirroring it would take the host's addresses away.
func TestSetupRefusesHostNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	before := ip(t, "-o", "addr", "show")
	paths := []string{"/proc/self/ns/net"}
	if f, err := os.Open("/proc/1/ns/net"); err == nil {
		f.Close()
		paths = append(paths, "/proc/1/ns/net") // not where pid 1 is out of reach
	}
	for _, path := range paths {
		n, err := Setup(path)
		if err == nil {
			n.Close()
			t.Fatalf("Setup(%s) succeeded", path)
		}
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "host's") {
			t.Errorf("Setup(%s): %v, want an invalid argument naming the host's namespace", path, err)
		}
	}
	if after := ip(t, "-o", "addr", "show"); after != before {
		t.Fatalf("host addresses changed:\n%s\n%s", before, after)
	}
}

// Calico's pod network: a /32 address, the gateway 169.254.1.1 reached
// through a link-scope route of its own, the default route through it.
// Both routes go to the guest, and Close puts them back in an order the
// kernel takes (the dump lists the default route first).
func TestSetupCalicoStyleRoutes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	suffix := fmt.Sprintf("%d%d", os.Getpid()%10000, time.Now().UnixNano()%1000)
	ns := "hullcal" + suffix
	ip(t, "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	ip(t, "-n", ns, "link", "add", "name", "eth0", "type", "veth", "peer", "name", "cali0")
	ip(t, "-n", ns, "addr", "add", "10.244.1.5/32", "dev", "eth0")
	ip(t, "-n", ns, "link", "set", "eth0", "up")
	ip(t, "-n", ns, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
	ip(t, "-n", ns, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
	before := snapshot(t, ns)

	n, err := Setup("/var/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	var routes []string
	for _, r := range n.Routes {
		routes = append(routes, fmt.Sprintf("%v via %v", r.Dst, r.Gw))
	}
	got := strings.Join(routes, ",")
	for _, want := range []string{"<nil> via 169.254.1.1", "169.254.1.1/32 via <nil>"} {
		if !strings.Contains(got, want) {
			t.Errorf("routes %s lack %s", got, want)
		}
	}
	if err := n.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if after := snapshot(t, ns); after != before {
		t.Fatalf("namespace differs after close:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// A bridge port (or the bridge) cannot be stood in for by a tap: refused
// by name, and the namespace is left as it was.
func TestSetupRefusesBridgePort(t *testing.T) {
	path, ns := testNetns(t)
	ip(t, "-n", ns, "link", "add", "br0", "type", "bridge")
	ip(t, "-n", ns, "link", "set", "eth0", "master", "br0")
	before := snapshot(t, ns)
	n, err := Setup(path)
	if err == nil {
		n.Close()
		t.Fatal("Setup of a namespace with a bridge port succeeded")
	}
	if !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), "eth0") && !strings.Contains(err.Error(), "br0") {
		t.Errorf("Setup: %v, want not implemented naming the link", err)
	}
	if after := snapshot(t, ns); after != before {
		t.Fatalf("namespace changed:\n%s\n%s", before, after)
	}
}

// A multipath route through a mirrored link would be flushed with the
// link's addresses and never come back: refused by name.
func TestSetupRefusesMultipathRoute(t *testing.T) {
	path, ns := testNetns(t)
	ip(t, "-n", ns, "route", "add", "10.98.0.0/16", "nexthop", "via", "10.201.7.1", "dev", "eth0", "nexthop", "via", "10.201.7.3", "dev", "eth0")
	before := snapshot(t, ns)
	n, err := Setup(path)
	if err == nil {
		n.Close()
		t.Fatal("Setup with a multipath route succeeded")
	}
	if !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), "multipath") {
		t.Errorf("Setup: %v, want not implemented naming the multipath route", err)
	}
	if after := snapshot(t, ns); after != before {
		t.Fatalf("namespace changed:\n%s\n%s", before, after)
	}
}
