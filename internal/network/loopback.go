package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The CRI's port forwarding (containerd's, in its own process) connects to
// localhost:<port> inside the pod's network namespace on the host. In a
// hull pod the server listens in the guest, so the namespace holds
// nothing there: LoopbackForward redirects every TCP connection to
// 127.0.0.1 in the namespace to one listener, which learns each
// connection's original port and relays it into the guest.

// iptablesTimeout bounds one iptables call.
const iptablesTimeout = 15 * time.Second

// LoopbackForward is a listener in a pod's network namespace that every
// TCP connection to the namespace's 127.0.0.1 reaches.
type LoopbackForward struct {
	l    *net.TCPListener
	path string
	port int
}

// ForwardLoopback starts the loopback redirect in n's namespace. The
// redirect is recorded (Record.LoopbackPort) before it is added, so that
// Restore removes it after a crash; Close of the network removes it too.
func (n *Network) ForwardLoopback(save func(Record) error) (_ *LoopbackForward, retErr error) {
	l, err := listenIn(n.ns, "127.0.0.1:0")
	if err != nil {
		return nil, n.errorf("loopback forward: %w", err)
	}
	defer func() {
		if retErr != nil {
			l.Close()
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port
	n.rec.LoopbackPort = port
	if save != nil {
		if err := save(n.Record()); err != nil {
			return nil, n.errorf("saving the record: %w", err)
		}
	}
	if err := iptablesRedirect(n.ns, "-A", port); err != nil {
		// Nothing was added: the record must not name a rule that every
		// later teardown would fail to delete.
		n.rec.LoopbackPort = 0
		if save != nil {
			_ = save(n.Record())
		}
		return nil, n.errorf("loopback forward: %w", err)
	}
	return &LoopbackForward{l: l, path: n.path, port: port}, nil
}

// Accept waits for a redirected connection and returns it with the port
// it was made to.
func (f *LoopbackForward) Accept() (net.Conn, uint16, error) {
	for {
		c, err := f.l.AcceptTCP()
		if err != nil {
			return nil, 0, err
		}
		port, err := originalPort(c)
		if err != nil || port == 0 || int(port) == f.port {
			c.Close()
			continue
		}
		return c, port, nil
	}
}

// Close stops accepting; the rule goes with the network's Close or
// Restore.
func (f *LoopbackForward) Close() error { return f.l.Close() }

// listenIn listens on addr in the namespace ns: a socket stays in the
// namespace it was made in.
func listenIn(ns netns.NsHandle, addr string) (*net.TCPListener, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return nil, err
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		return nil, err
	}
	l, lerr := net.Listen("tcp4", addr)
	if err := netns.Set(orig); err != nil {
		// This thread is in the wrong namespace: do not let the runtime
		// reuse it.
		runtime.LockOSThread()
		if lerr == nil {
			l.Close()
		}
		return nil, fmt.Errorf("back to the original namespace: %w", err)
	}
	if lerr != nil {
		return nil, lerr
	}
	return l.(*net.TCPListener), nil
}

// originalPort is the port a REDIRECTed connection was made to.
func originalPort(c *net.TCPConn) (uint16, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var port uint16
	var serr error
	err = raw.Control(func(fd uintptr) {
		// SO_ORIGINAL_DST answers a struct sockaddr_in; the IPv6 mreq
		// getter reads those 16 bytes.
		m, err := unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
		if err != nil {
			serr = err
			return
		}
		port = uint16(m.Multiaddr[2])<<8 | uint16(m.Multiaddr[3])
	})
	if err != nil {
		return 0, err
	}
	return port, serr
}

// iptablesRedirect adds (-A) or deletes (-D) the rule that sends TCP
// connections to 127.0.0.1, other than to the listener's own port, to the
// listener, in the namespace ns. nsenter gets the namespace as an fd, not
// its path: the path may already be gone (CNI or podman unmounted it while
// hull still holds the namespace), or name another namespace by now.
func iptablesRedirect(ns netns.NsHandle, op string, port int) error {
	p := strconv.Itoa(port)
	fd, err := unix.FcntlInt(uintptr(ns), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("network namespace fd: %w", err)
	}
	nsFile := os.NewFile(uintptr(fd), "netns")
	defer nsFile.Close()
	ctx, cancel := context.WithTimeout(context.Background(), iptablesTimeout)
	defer cancel()
	args := []string{"--net=/proc/self/fd/3", "iptables", "-w", "5", "-t", "nat", op, "OUTPUT",
		"-p", "tcp", "-d", "127.0.0.1/32", "!", "--dport", p, "-j", "REDIRECT", "--to-ports", p}
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	cmd.ExtraFiles = []*os.File{nsFile}
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if errors.Is(err, exec.ErrNotFound) {
			return fmt.Errorf("nsenter or iptables not found (apt-get install iptables): %w", errdefs.ErrFailedPrecondition)
		}
		return fmt.Errorf("iptables %s OUTPUT redirect to %s: %v: %s", op, p, err, msg)
	}
	return nil
}

// removeRedirect deletes the rule of a record, if it is still there.
func removeRedirect(ns netns.NsHandle, port int) error {
	if port == 0 {
		return nil
	}
	if err := iptablesRedirect(ns, "-D", port); err != nil {
		// iptables -D of a rule that is not there fails; then there is
		// nothing to remove. Nor is there where iptables, nsenter or the
		// nat table is missing: no rule could have been added.
		if errdefs.IsFailedPrecondition(err) {
			return nil
		}
		for _, gone := range []string{"does a matching rule exist", "Bad rule", "failed to execute iptables", "Table does not exist"} {
			if strings.Contains(err.Error(), gone) {
				return nil
			}
		}
		return err
	}
	return nil
}
