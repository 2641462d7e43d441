package channel

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// SerialListener yields one net.Conn per host session on a virtio-serial
// port. Only one session exists at a time: Accept waits until the previous
// conn is closed, re-opens the port, which drops whatever the old session
// left unread in the guest, and returns when the host side is connected.
//
// The virtio_console driver reports the host side: poll gives POLLHUP
// while the host is not connected, read gives 0 (EOF) once the host has
// gone and its data is consumed, and the port's wait queue is woken when
// the host connects. While the guest has the port closed, QEMU reads
// nothing from its chardev, so a host that connects early loses nothing.
type SerialListener struct {
	path string
	open func() (*os.File, error)

	// idle holds a token while no conn is out: Accept takes it, the conn's
	// Close puts it back.
	idle      chan struct{}
	closed    chan struct{}
	closeOnce sync.Once

	mu      sync.Mutex
	next    *os.File // opened by ListenSerial for the first Accept; guarded by mu
	waiting *os.File // the port while Accept waits for the host; guarded by mu
}

// ListenSerial opens the port at path (such as /dev/vport1p1) to check it
// can, and returns a listener on it.
func ListenSerial(path string) (*SerialListener, error) {
	open := func() (*os.File, error) { return openPort(path) }
	f, err := open()
	if err != nil {
		return nil, err
	}
	l := newSerialListener(path, open)
	l.next = f
	return l, nil
}

func newSerialListener(path string, open func() (*os.File, error)) *SerialListener {
	l := &SerialListener{
		path:   path,
		open:   open,
		idle:   make(chan struct{}, 1),
		closed: make(chan struct{}),
	}
	l.idle <- struct{}{}
	return l
}

// openPort opens the port non-blocking, so that the Go runtime polls it
// (reads, writes and deadlines then go through the netpoller).
func openPort(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// Accept waits for the previous conn to be closed and for the host to
// connect, and returns the conn of the new session.
func (l *SerialListener) Accept() (net.Conn, error) {
	select {
	case <-l.idle:
	case <-l.closed:
		return nil, net.ErrClosed
	}
	conn, err := l.accept()
	if err != nil {
		l.idle <- struct{}{}
		return nil, err
	}
	return conn, nil
}

func (l *SerialListener) accept() (net.Conn, error) {
	l.mu.Lock()
	f := l.next
	l.next = nil
	l.mu.Unlock()
	if f == nil {
		var err error
		if f, err = l.open(); err != nil {
			// The ttRPC server retries temporary errors with a backoff;
			// a port that went away for good shows in the log.
			return nil, &acceptError{err: err}
		}
	}

	l.mu.Lock()
	select {
	case <-l.closed:
		l.mu.Unlock()
		f.Close()
		return nil, net.ErrClosed
	default:
	}
	l.waiting = f
	l.mu.Unlock()

	err := waitHost(f)

	l.mu.Lock()
	l.waiting = nil
	l.mu.Unlock()
	if err != nil {
		f.Close()
		select {
		case <-l.closed:
			return nil, net.ErrClosed
		default:
		}
		return nil, &acceptError{err: err}
	}
	return &serialConn{f: f, addr: serialAddr(l.path), release: l.release}, nil
}

func (l *SerialListener) release() { l.idle <- struct{}{} }

// Close stops Accept. A conn already returned stays open until closed.
func (l *SerialListener) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		close(l.closed)
		if l.next != nil {
			l.next.Close()
			l.next = nil
		}
		if l.waiting != nil {
			// Wakes waitHost.
			l.waiting.Close()
		}
	})
	return nil
}

// Addr returns the port's path.
func (l *SerialListener) Addr() net.Addr { return serialAddr(l.path) }

// waitHost returns once the host side of the port is connected. It sleeps
// in the netpoller: virtio_console wakes the port's waiters when the host
// connects, and the check runs again at each wake-up.
func waitHost(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var perr error
	err = rc.Write(func(fd uintptr) bool {
		var gone bool
		gone, perr = hostGone(int(fd))
		return perr != nil || !gone
	})
	if err != nil {
		return err
	}
	return perr
}

// hostGone tells whether the host side is not connected.
func hostGone(fd int) (bool, error) {
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	for {
		_, err := unix.Poll(pfd, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false, os.NewSyscallError("poll", err)
		}
		return pfd[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0, nil
	}
}

type acceptError struct{ err error }

func (e *acceptError) Error() string   { return "accept on virtio-serial port: " + e.err.Error() }
func (e *acceptError) Unwrap() error   { return e.err }
func (e *acceptError) Temporary() bool { return true }
func (e *acceptError) Timeout() bool   { return false }

// serialConn is one host session on the port.
type serialConn struct {
	f       *os.File
	addr    serialAddr
	release func()
	once    sync.Once
}

// Read returns io.EOF once the host has gone.
func (c *serialConn) Read(b []byte) (int, error) {
	return c.f.Read(b)
}

// Write fails with io.ErrClosedPipe when the host has gone, instead of
// waiting, as a plain write on the non-blocking port would, until some
// later host connects and then receiving the old session's bytes.
func (c *serialConn) Write(b []byte) (int, error) {
	rc, err := c.f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var werr error
	err = rc.Write(func(fd uintptr) bool {
		for n < len(b) {
			m, err := unix.Write(int(fd), b[n:])
			if m > 0 {
				n += m
			}
			switch {
			case errors.Is(err, unix.EINTR):
				continue
			case errors.Is(err, unix.EAGAIN):
				gone, perr := hostGone(int(fd))
				if perr != nil {
					werr = perr
					return true
				}
				if gone {
					werr = io.ErrClosedPipe
					return true
				}
				return false
			case err != nil:
				werr = os.NewSyscallError("write", err)
				return true
			case m == 0:
				werr = io.ErrUnexpectedEOF
				return true
			}
		}
		return true
	})
	if err != nil {
		return n, err
	}
	if werr != nil {
		return n, &net.OpError{Op: "write", Net: c.addr.Network(), Addr: c.addr, Err: werr}
	}
	return n, nil
}

// Close closes the port, so the next Accept can open it again.
func (c *serialConn) Close() error {
	err := os.ErrClosed
	c.once.Do(func() {
		err = c.f.Close()
		c.release()
	})
	return err
}

func (c *serialConn) LocalAddr() net.Addr                { return c.addr }
func (c *serialConn) RemoteAddr() net.Addr               { return serialAddr("host") }
func (c *serialConn) SetDeadline(t time.Time) error      { return c.f.SetDeadline(t) }
func (c *serialConn) SetReadDeadline(t time.Time) error  { return c.f.SetReadDeadline(t) }
func (c *serialConn) SetWriteDeadline(t time.Time) error { return c.f.SetWriteDeadline(t) }

type serialAddr string

func (a serialAddr) Network() string { return "virtio-serial" }
func (a serialAddr) String() string  { return string(a) }
