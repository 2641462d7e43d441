package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hull-runtime/hull/internal/sandbox"
)

// The supervisor of a container that mirrors a network namespace is
// killed: nobody puts the namespace back then (the veth has no address,
// the ingress qdisc stays), until delete --force reclaims the sandbox from
// its record: no QEMU, virtiofsd, mount or state is left, and the
// namespace is as it was, and works.
func TestSupervisorKilledNetworkReclaimed(t *testing.T) {
	p := newNetPair(t)
	e := newCLIEnv(t)
	bundle := netBundle(t)
	writeSpec(t, bundle, netSpec(p.path(), "sleep", "1000"))
	const id = "netorphan"
	e.deleteAtEnd(id) // whatever happens below
	st := startBundle(t, e, id, bundle)
	runDir := sandbox.RunDirFor(e.root, id)
	rec, err := sandbox.ReadRecord(runDir)
	if err != nil {
		t.Fatalf("sandbox record: %v", err)
	}
	if rec.QEMU == nil || rec.QEMU.Pid != st.QEMU || rec.Virtiofsd == nil || rec.Virtiofsd.Pid != st.Virtiofsd ||
		rec.Network == nil || rec.Network.Path != p.path() || len(rec.Network.Links) != 1 || rec.SharedDir == "" {
		t.Fatalf("record %+v does not match state %+v", rec, st)
	}

	if err := syscall.Kill(st.Supervisor, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, "supervisor", st.Supervisor)
	// What the bug left: the namespace as the VM had it.
	if a := netIP(t, "-n", p.ctr, "addr", "show", "dev", "eth0"); strings.Contains(a, p.addr(2)+"/") {
		t.Fatalf("the veth has its address while the sandbox owned it: %s", a)
	}
	if q, _ := exec.Command("ip", "netns", "exec", p.ctr, "tc", "qdisc", "show", "dev", "eth0", "ingress").CombinedOutput(); !strings.Contains(string(q), "ingress") {
		t.Fatalf("no ingress qdisc on the veth while the sandbox owned it: %s", q)
	}

	if _, errOut, code := e.hull("delete", "--force", id); code != 0 {
		t.Fatalf("delete --force: %s", errOut)
	}
	waitGone(t, "qemu", st.QEMU)
	waitGone(t, "virtiofsd", st.Virtiofsd)
	if _, err := os.Stat(filepath.Join(e.root, id)); !os.IsNotExist(err) {
		t.Errorf("state directory left: %v", err)
	}
	if mounts, _ := os.ReadFile("/proc/mounts"); strings.Contains(string(mounts), e.root) {
		t.Errorf("mounts left under %s", e.root)
	}
	// No waiting: delete --force has put it back by the time it returns.
	if now := p.snapshot(t); now != p.before {
		t.Errorf("netns %s not restored:\nbefore:\n%s\nafter:\n%s", p.ctr, p.before, now)
	}
	if links := netIP(t, "-n", p.ctr, "-o", "link", "show"); strings.Contains(links, "_hull") {
		t.Errorf("tap left: %s", links)
	}
	if f, _ := exec.Command("ip", "netns", "exec", p.ctr, "tc", "filter", "show", "dev", "eth0", "ingress").CombinedOutput(); strings.TrimSpace(string(f)) != "" {
		t.Errorf("tc filters left on the veth: %s", f)
	}
	ping := []string{"ping"}
	if _, err := exec.LookPath("ping"); err != nil {
		ping = []string{"busybox", "ping"}
	}
	args := append(append([]string{"netns", "exec", p.peer}, ping...), "-c1", "-W3", p.addr(2))
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Errorf("the restored veth does not answer from the peer: %v: %s", err, out)
	}
	// A second delete --force finds nothing and succeeds.
	if _, errOut, code := e.hull("delete", "--force", id); code != 0 {
		t.Errorf("second delete --force: %s", errOut)
	}
}
