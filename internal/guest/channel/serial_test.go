package channel

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"

	api "github.com/hull-runtime/hull/api/agent/v1"
)

// fakePort stands in for a virtio-serial port: each open gives the guest end
// of a new socket pair and hands the other end to the test as the host.
// A socket pair has the port's signs of a host that has gone (POLLHUP, read
// returns 0), but not the return of a host, which a new pair stands for.
type fakePort struct {
	t     *testing.T
	hosts chan *os.File
	opens atomic.Int32
	// lastFd and lastIno identify the previous guest end, to check it is
	// closed when the port is opened again.
	lastFd  int
	lastIno uint64
	// hostGone makes open close the host end at once.
	hostGone bool
}

func newFakePort(t *testing.T) *fakePort {
	return &fakePort{t: t, hosts: make(chan *os.File, 8)}
}

func (p *fakePort) openPort() (*os.File, error) {
	if p.lastIno != 0 {
		// The real port refuses a second open (EBUSY).
		var st unix.Stat_t
		if err := unix.Fstat(p.lastFd, &st); err == nil && st.Ino == p.lastIno {
			p.t.Errorf("port opened again while the previous fd %d is open", p.lastFd)
		}
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	p.opens.Add(1)
	guest := os.NewFile(uintptr(fds[0]), "guest")
	host := os.NewFile(uintptr(fds[1]), "host")
	if p.hostGone {
		host.Close()
	} else {
		p.hosts <- host
	}
	var st unix.Stat_t
	if err := unix.Fstat(fds[0], &st); err != nil {
		return nil, err
	}
	p.lastFd, p.lastIno = fds[0], st.Ino
	return guest, nil
}

// hostConn takes the host end of the next session.
func (p *fakePort) hostConn() net.Conn {
	p.t.Helper()
	select {
	case h := <-p.hosts:
		c, err := net.FileConn(h)
		h.Close()
		if err != nil {
			p.t.Fatal(err)
		}
		return c
	case <-time.After(5 * time.Second):
		p.t.Fatal("the listener did not open the port")
		return nil
	}
}

type checker struct{ api.AgentService }

func (checker) Check(context.Context, *api.CheckRequest) (*api.CheckResponse, error) {
	return &api.CheckResponse{Status: api.CheckResponse_SERVING}, nil
}

// Each host session gets a conn of its own: a new ttRPC client starts its
// stream IDs at 1 again, which the server refuses on a conn that served an
// earlier client.
func TestSerialListenerSessions(t *testing.T) {
	port := newFakePort(t)
	l := newSerialListener("/dev/vport9p9", port.openPort)
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	api.RegisterAgentService(srv, checker{})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), l) }()

	for session := 1; session <= 3; session++ {
		client := ttrpc.NewClient(port.hostConn())
		agent := api.NewAgentClient(client)
		for i := 0; i < 2; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			resp, err := agent.Check(ctx, &api.CheckRequest{})
			cancel()
			if err != nil || resp.Status != api.CheckResponse_SERVING {
				t.Fatalf("session %d call %d: %v, %v", session, i, resp, err)
			}
		}
		// The next session must wait for this one to end.
		time.Sleep(20 * time.Millisecond)
		if got := port.opens.Load(); got != int32(session) {
			t.Fatalf("port opened %d times during session %d", got, session)
		}
		client.Close()
	}

	// Shutdown closes the listener, which wakes the Accept that waits for
	// the fourth host.
	port.hostConn().Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-served:
		if !errors.Is(err, ttrpc.ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
}

func acceptAsync(l net.Listener) chan error {
	done := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if c != nil {
			c.Close()
		}
		done <- err
	}()
	return done
}

func TestSerialListenerCloseWhileWaitingForHost(t *testing.T) {
	port := newFakePort(t)
	port.hostGone = true
	l := newSerialListener("p", port.openPort)
	done := acceptAsync(l)
	time.Sleep(20 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("Accept returned %v with no host", err)
	default:
	}
	l.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake Accept")
	}
}

func TestSerialListenerCloseWhileSessionOpen(t *testing.T) {
	port := newFakePort(t)
	l := newSerialListener("p", port.openPort)
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := acceptAsync(l)
	l.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake Accept")
	}
}

func TestSerialConnHostGone(t *testing.T) {
	port := newFakePort(t)
	l := newSerialListener("p", port.openPort)
	defer l.Close()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	host := port.hostConn()
	if _, err := host.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	host.Close()

	// Data the host sent before leaving is read, then EOF.
	buf := make([]byte, 8)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
	if _, err := c.Read(buf); err == nil {
		t.Fatal("Read after host left did not fail")
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Write(make([]byte, 1<<20))
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Error("Write to a gone host succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Write to a gone host blocks")
	}
}

func TestFindPort(t *testing.T) {
	sys, dev := t.TempDir(), t.TempDir()
	for port, name := range map[string]string{"vport0p1": "org.qemu.guest_agent.0\n", "vport0p2": api.SerialPortName + "\n"} {
		if err := os.Mkdir(filepath.Join(sys, port), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sys, port, "name"), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dev, "vport0p1"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// The node of the right port comes later.
	time.AfterFunc(30*time.Millisecond, func() {
		os.WriteFile(filepath.Join(dev, "vport0p2"), nil, 0o644)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := findPort(ctx, sys, dev, api.SerialPortName)
	if want := filepath.Join(dev, "vport0p2"); err != nil || got != want {
		t.Errorf("findPort = %q, %v; want %q", got, err, want)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if got, err := findPort(ctx, sys, dev, "absent"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("findPort of an absent port = %q, %v", got, err)
	}
}
