package network

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

func natOutput(t *testing.T, ns string) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "iptables", "-t", "nat", "-S", "OUTPUT").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables: %v: %s", err, out)
	}
	return string(out)
}

// A connection to any port of the namespace's 127.0.0.1 reaches the
// forward with its original port; the rule goes with Close, and with
// Restore from the record after a crash.
func TestForwardLoopback(t *testing.T) {
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("needs iptables")
	}
	path, ns := testNetns(t)
	for _, crash := range []bool{false, true} {
		n, err := Setup(path)
		if err != nil {
			t.Fatal(err)
		}
		var saved Record
		f, err := n.ForwardLoopback(func(r Record) error { saved = r; return nil })
		if err != nil {
			n.Close()
			t.Fatal(err)
		}
		if saved.LoopbackPort == 0 || !strings.Contains(natOutput(t, ns), "REDIRECT") {
			t.Fatalf("record port %d, rules %q", saved.LoopbackPort, natOutput(t, ns))
		}
		h, err := netns.GetFromPath(path)
		if err != nil {
			t.Fatal(err)
		}
		// A client in the namespace: a socket made there stays there.
		done := make(chan error, 1)
		go func() {
			c, err := dialIn(h, "127.0.0.1:4321")
			if err == nil {
				_, err = c.Write([]byte("x"))
				c.Close()
			}
			done <- err
		}()
		c, port, err := f.Accept()
		if err != nil || port != 4321 {
			t.Fatalf("accepted port %d: %v", port, err)
		}
		c.Close()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		h.Close()
		f.Close()
		if crash {
			// The owner died: only the record is left.
			if err := Restore(saved); err != nil {
				t.Fatal(err)
			}
			n.ns.Close()
			n.h.Close()
		} else if err := n.Close(); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(natOutput(t, ns), "REDIRECT") {
			t.Fatalf("rule left (crash %v): %q", crash, natOutput(t, ns))
		}
	}
}

func dialIn(ns netns.NsHandle, addr string) (net.Conn, error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return nil, err
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		return nil, err
	}
	c, err := net.DialTimeout("tcp4", addr, 5*time.Second)
	if serr := netns.Set(orig); serr == nil {
		runtime.UnlockOSThread()
	}
	return c, err
}

// On a host without iptables no redirect could have been added, so
// removing the one a record names is done, not an error that every later
// teardown of the sandbox would repeat.
func TestRemoveRedirectWithoutIptables(t *testing.T) {
	path, _ := testNetns(t)
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		t.Skip("needs nsenter")
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	bin := t.TempDir()
	if err := os.Symlink(nsenter, filepath.Join(bin, "nsenter")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	if err := removeRedirect(ns, 40000); err != nil {
		t.Fatalf("remove with iptables missing: %v", err)
	}
	t.Setenv("PATH", t.TempDir())
	if err := removeRedirect(ns, 40000); err != nil {
		t.Fatalf("remove with nsenter missing: %v", err)
	}
}

// The redirect is added and removed through the namespace's fd: the path
// CNI or podman made may be gone by the time the sandbox goes.
func TestRedirectRemovedAfterPathGone(t *testing.T) {
	path, _ := testNetns(t)
	keep, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	kept := os.NewFile(uintptr(keep), "netns") // closes it
	defer kept.Close()
	n, err := Setup(path)
	if err != nil {
		t.Fatal(err)
	}
	fwd, err := n.ForwardLoopback(nil)
	if err != nil {
		n.Close()
		t.Fatal(err)
	}
	defer fwd.Close()
	// The namespace stays alive (held) while its path goes.
	if out, err := exec.Command("umount", "-l", path).CombinedOutput(); err != nil {
		n.Close()
		t.Fatalf("umount %s: %v: %s", path, err, out)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("close with the namespace's path gone: %v", err)
	}
	cmd := exec.Command("nsenter", "--net=/proc/self/fd/3", "iptables", "-t", "nat", "-S", "OUTPUT")
	cmd.ExtraFiles = []*os.File{kept}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("iptables: %v: %s", err, out)
	}
	if strings.Contains(string(out), "REDIRECT") {
		t.Errorf("redirect left in the namespace: %s", out)
	}
}
