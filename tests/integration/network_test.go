package integration

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/vishvananda/netns"

	"github.com/hull-runtime/hull/internal/oci"
)

// netPair is a "peer" namespace and a "ctr" namespace joined by a veth
// pair, as CNI would leave them: 10.200.X.1/24 in peer, 10.200.X.2/24 on
// ctr's eth0 with a default route via .1.
type netPair struct {
	peer, ctr string
	x         int
	// before is ctr's state before the container ran.
	before string
}

func newNetPair(t *testing.T) *netPair {
	t.Helper()
	requireHull(t)
	_, err := exec.LookPath("ip")
	require(t, err == nil, "iproute2 not installed: %v", err)
	x := int(time.Now().UnixNano()/1000+int64(os.Getpid()))%250 + 1
	p := &netPair{peer: fmt.Sprintf("hullpeer%d", x), ctr: fmt.Sprintf("hullctr%d", x), x: x}
	for _, ns := range []string{p.peer, p.ctr} {
		netIP(t, "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	netIP(t, "-n", p.ctr, "link", "add", "name", "eth0", "type", "veth", "peer", "name", "veth0", "netns", p.peer)
	netIP(t, "-n", p.peer, "addr", "add", p.addr(1)+"/24", "dev", "veth0")
	netIP(t, "-n", p.peer, "link", "set", "veth0", "up")
	netIP(t, "-n", p.peer, "link", "set", "lo", "up")
	netIP(t, "-n", p.ctr, "addr", "add", p.addr(2)+"/24", "dev", "eth0")
	netIP(t, "-n", p.ctr, "link", "set", "eth0", "up")
	netIP(t, "-n", p.ctr, "link", "set", "lo", "up")
	netIP(t, "-n", p.ctr, "route", "add", "default", "via", p.addr(1))
	p.before = p.snapshot(t)
	return p
}

func (p *netPair) addr(host int) string { return fmt.Sprintf("10.200.%d.%d", p.x, host) }
func (p *netPair) path() string         { return "/var/run/netns/" + p.ctr }

func netIP(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// snapshot is ctr's links (names), global addresses, routes and qdiscs:
// what hull changes, not what the kernel changes by itself (carrier,
// link-local addresses).
func (p *netPair) snapshot(t *testing.T) string {
	var links []string
	for _, l := range strings.Split(netIP(t, "-n", p.ctr, "-o", "link", "show"), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			links = append(links, f[1])
		}
	}
	tc, _ := exec.Command("ip", "netns", "exec", p.ctr, "tc", "qdisc", "show").CombinedOutput()
	return strings.Join(links, " ") + "\n" + netIP(t, "-n", p.ctr, "-o", "addr", "show", "scope", "global") +
		netIP(t, "-n", p.ctr, "route", "show") + string(tc)
}

// assertRestored waits a little for the supervisor's teardown, then checks
// that ctr is as it was: veth with its address, no tap, no qdisc.
func (p *netPair) assertRestored(t *testing.T) {
	t.Helper()
	var now string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if now = p.snapshot(t); now == p.before {
			return
		}
	}
	t.Errorf("netns %s not restored:\nbefore:\n%s\nafter:\n%s", p.ctr, p.before, now)
}

// netSpec is a busybox spec that joins the network namespace at path.
func netSpec(path string, args ...string) *oci.Spec {
	s := busyboxSpec(args...)
	for i, ns := range s.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			s.Linux.Namespaces[i].Path = path
		}
	}
	return withNetRaw(s)
}

// withNetRaw gives the process CAP_NET_RAW, which busybox ping needs.
func withNetRaw(s *oci.Spec) *oci.Spec {
	c := s.Process.Capabilities
	c.Bounding = append(c.Bounding, "CAP_NET_RAW")
	c.Effective = append(c.Effective, "CAP_NET_RAW")
	c.Permitted = append(c.Permitted, "CAP_NET_RAW")
	return s
}

// netBundle is busyboxBundle with the network applets.
func netBundle(t *testing.T) string {
	b := busyboxBundle(t)
	for _, applet := range []string{"ip", "ping", "httpd", "nc", "wget", "grep"} {
		if err := os.Symlink("busybox", filepath.Join(b, "rootfs", "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func TestNetworkPing(t *testing.T) {
	p := newNetPair(t)
	e := newCLIEnv(t)
	bundle := netBundle(t)
	writeSpec(t, bundle, netSpec(p.path(), "sh", "-c", "ip addr; ip route; ping -c3 -W5 "+p.addr(1)))
	start := time.Now()
	out, errOut, code := e.hull("run", "--bundle", bundle, "pinger")
	t.Logf("run took %s; output:\n%s", time.Since(start), out)
	if code != 0 {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{"inet " + p.addr(2) + "/24", "default via " + p.addr(1), "3 packets received"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	// run deleted the container when it exited.
	p.assertRestored(t)
}

func TestNetworkServer(t *testing.T) {
	p := newNetPair(t)
	e := newCLIEnv(t)
	bundle := netBundle(t)
	www := filepath.Join(bundle, "rootfs", "www")
	os.MkdirAll(www, 0o755)
	os.WriteFile(filepath.Join(www, "index.html"), []byte("hi from hull\n"), 0o644)
	writeSpec(t, bundle, netSpec(p.path(), "httpd", "-f", "-p", "8080", "-h", "/www"))
	if _, errOut, code := e.hull("create", "--bundle", bundle, "server"); code != 0 {
		t.Fatalf("create: %s", errOut)
	}
	if _, errOut, code := e.hull("start", "server"); code != 0 {
		t.Fatalf("start: %s", errOut)
	}
	url := p.addr(2) + ":8080/index.html"
	var got []byte
	var err error
	start := time.Now()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		got, err = httpGet(p.peer, p.addr(2)+":8080", "/index.html")
		if err == nil {
			break
		}
	}
	if err != nil || !strings.HasSuffix(string(got), "\r\n\r\nhi from hull\n") {
		t.Errorf("GET %s from the peer: %v: %q", url, err, got)
	} else {
		t.Logf("first answer %s after start", time.Since(start))
	}
	if _, errOut, code := e.hull("kill", "server", "KILL"); code != 0 {
		t.Fatalf("kill: %s", errOut)
	}
	for deadline := time.Now().Add(30 * time.Second); e.state("server")["status"] != "stopped" && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	if _, errOut, code := e.hull("delete", "server"); code != 0 {
		t.Fatalf("delete: %s", errOut)
	}
	p.assertRestored(t)
}

func TestNetworkMissingNamespace(t *testing.T) {
	e := newCLIEnv(t)
	bundle := netBundle(t)
	missing := "/var/run/netns/hull-no-such-netns"
	writeSpec(t, bundle, netSpec(missing, "true"))
	_, errOut, code := e.hull("run", "--bundle", bundle, "nonet")
	if code == 0 || !strings.Contains(errOut, missing) {
		t.Fatalf("exit %d, stderr %q: want a failure naming %s", code, errOut, missing)
	}
	// newCLIEnv's cleanup checks that no state, VM or mount is left.
}

// TestNetworkLoopbackOnly: without a path the container gets a new
// namespace with loopback up and nothing else.
func TestNetworkLoopbackOnly(t *testing.T) {
	e := newCLIEnv(t)
	bundle := netBundle(t)
	writeSpec(t, bundle, withNetRaw(busyboxSpec("sh", "-c", "ip -o link; ping -c1 -W2 127.0.0.1")))
	out, errOut, code := e.hull("run", "--bundle", bundle, "lo")
	if code != 0 {
		t.Errorf("exit %d: %s %s", code, out, errOut)
	}
	if strings.Contains(out, "eth") || !strings.Contains(out, "lo:") {
		t.Errorf("links: %s", out)
	}
	e.hull("delete", "lo")
}

// httpGet asks for path at addr from the network namespace ns, with
// HTTP/1.0, and returns the whole answer.
func httpGet(ns, addr, path string) ([]byte, error) {
	conn, err := dialIn(ns, addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.0\r\n\r\n", path); err != nil {
		return nil, err
	}
	return io.ReadAll(io.LimitReader(conn, 1<<20))
}

// dialIn connects to addr from the network namespace ns: the socket is
// made by a thread that is in ns, and stays there.
func dialIn(ns, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// The thread is left in ns: it ends with the goroutine, since
		// it is never unlocked.
		runtime.LockOSThread()
		h, err := netns.GetFromName(ns)
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			ch <- result{nil, err}
			return
		}
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// Calico's pod network: a /32 address, the gateway 169.254.1.1 that only
// a link-scope route reaches (the host's end answers ARP for it by proxy
// ARP), the default route through it. The VM gets both routes, in an order
// the guest kernel takes, and reaches the peer; the namespace comes back
// as it was.
func TestNetworkCalicoStyle(t *testing.T) {
	requireHull(t)
	_, err := exec.LookPath("ip")
	require(t, err == nil, "iproute2 not installed: %v", err)
	x := int(time.Now().UnixNano()/1000+int64(os.Getpid()))%250 + 1
	peer, ctr := fmt.Sprintf("hullcpeer%d", x), fmt.Sprintf("hullcctr%d", x)
	for _, ns := range []string{peer, ctr} {
		netIP(t, "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	podIP, peerIP := fmt.Sprintf("10.201.%d.2", x), fmt.Sprintf("10.201.%d.1", x)
	netIP(t, "-n", ctr, "link", "add", "name", "eth0", "type", "veth", "peer", "name", "cali0", "netns", peer)
	netIP(t, "-n", ctr, "addr", "add", podIP+"/32", "dev", "eth0")
	netIP(t, "-n", ctr, "link", "set", "eth0", "up")
	netIP(t, "-n", ctr, "link", "set", "lo", "up")
	netIP(t, "-n", ctr, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
	netIP(t, "-n", ctr, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
	// The host's side, as Calico makes it: proxy ARP on the pod's veth, a
	// route to the pod, and its own address elsewhere (on a link of its
	// own, a veth pair as no dummy module may be there, which also holds
	// the route proxy ARP needs for 169.254.1.1).
	netIP(t, "-n", peer, "link", "add", "up0", "type", "veth", "peer", "name", "up1")
	netIP(t, "-n", peer, "addr", "add", peerIP+"/32", "dev", "up0")
	netIP(t, "-n", peer, "link", "set", "up0", "up")
	netIP(t, "-n", peer, "link", "set", "up1", "up")
	netIP(t, "-n", peer, "link", "set", "cali0", "up")
	netIP(t, "-n", peer, "route", "add", "default", "dev", "up0")
	netIP(t, "-n", peer, "route", "add", podIP, "dev", "cali0")
	// Proxy ARP answers only where the kernel forwards: in the test's own
	// namespace, never the host's.
	for _, kv := range []string{"net.ipv4.ip_forward=1", "net.ipv4.conf.cali0.proxy_arp=1"} {
		if out, err := exec.Command("ip", "netns", "exec", peer, "sysctl", "-w", kv).CombinedOutput(); err != nil {
			t.Fatalf("%s in the test namespace: %v: %s", kv, err, out)
		}
	}
	snap := func() string {
		return netIP(t, "-n", ctr, "-4", "-o", "addr", "show", "dev", "eth0") + netIP(t, "-n", ctr, "route", "show")
	}
	before := snap()

	e := newCLIEnv(t)
	bundle := netBundle(t)
	writeSpec(t, bundle, netSpec("/var/run/netns/"+ctr, "sh", "-c", "ip route; ping -c2 -W5 "+peerIP))
	out, errOut, code := e.hull("run", "--bundle", bundle, "calico")
	if code != 0 {
		t.Errorf("exit %d, stderr %q, output:\n%s", code, errOut, out)
	}
	for _, want := range []string{"default via 169.254.1.1", "169.254.1.1 dev", "2 packets received"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if after := snap(); after != before {
		t.Errorf("the pod's namespace differs after the run:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	e.assertClean()
}
