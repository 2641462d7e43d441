// Package console is the host side of container terminals: pty pairs, the
// console-socket protocol of runc (the pty master crosses a unix socket as
// SCM_RIGHTS), raw mode and window sizes.
package console

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// masterName is the name sent with the master, as runc sends it.
const masterName = "/dev/ptmx"

// NewPty opens a pty pair. Both ends are close-on-exec, non-blocking and
// polled by the Go runtime, so a Close interrupts a pending Read. Neither
// becomes the caller's controlling terminal (see SetControlling).
func NewPty() (master, slave *os.File, err error) {
	mfd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("opening /dev/ptmx: %w", err)
	}
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(mfd)
		return nil, nil, fmt.Errorf("unlocking the pty: %w", err)
	}
	// TIOCGPTPEER opens the slave through the master, without a path that
	// could be raced for.
	sfd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(mfd), unix.TIOCGPTPEER, uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK))
	if errno != 0 {
		n, err := unix.IoctlGetUint32(mfd, unix.TIOCGPTN)
		if err != nil {
			unix.Close(mfd)
			return nil, nil, fmt.Errorf("pty number: %w", err)
		}
		fd, err := unix.Open("/dev/pts/"+strconv.Itoa(int(n)), unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != nil {
			unix.Close(mfd)
			return nil, nil, fmt.Errorf("opening the pty slave: %w", err)
		}
		sfd = uintptr(fd)
	}
	return os.NewFile(uintptr(mfd), masterName), os.NewFile(sfd, "pty-slave"), nil
}

// control runs fn with f's descriptor without making f blocking, as
// f.Fd() would.
func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// IsTerminal reports whether f is a terminal.
func IsTerminal(f *os.File) bool {
	return control(f, func(fd int) error {
		_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		return err
	}) == nil
}

// MakeRaw puts the terminal f in raw mode (cfmakeraw) and returns the
// settings to restore.
func MakeRaw(f *os.File) (*unix.Termios, error) {
	var old *unix.Termios
	err := control(f, func(fd int) error {
		t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
		if err != nil {
			return err
		}
		saved := *t
		old = &saved
		t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		t.Oflag &^= unix.OPOST
		t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		t.Cflag &^= unix.CSIZE | unix.PARENB
		t.Cflag |= unix.CS8
		t.Cc[unix.VMIN] = 1
		t.Cc[unix.VTIME] = 0
		return unix.IoctlSetTermios(fd, unix.TCSETS, t)
	})
	if err != nil {
		return nil, fmt.Errorf("raw mode: %w", err)
	}
	return old, nil
}

// Restore sets the terminal settings that MakeRaw returned.
func Restore(f *os.File, t *unix.Termios) error {
	return control(f, func(fd int) error { return unix.IoctlSetTermios(fd, unix.TCSETS, t) })
}

// Size returns the window size of the terminal f.
func Size(f *os.File) (unix.Winsize, error) {
	var ws unix.Winsize
	err := control(f, func(fd int) error {
		w, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ)
		if err == nil {
			ws = *w
		}
		return err
	})
	return ws, err
}

// SetSize sets the window size of the terminal f; on a pty master it is the
// slave's size, and the slave's foreground process group gets SIGWINCH.
func SetSize(f *os.File, ws unix.Winsize) error {
	return control(f, func(fd int) error { return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &ws) })
}

// SetControlling makes the terminal f the controlling terminal of the
// calling process, which must lead a session without one; its process
// group then gets SIGWINCH when the size changes.
func SetControlling(f *os.File) error {
	return control(f, func(fd int) error { return unix.IoctlSetInt(fd, unix.TIOCSCTTY, 0) })
}

// sendTimeout bounds the connection to a console socket.
const sendTimeout = 10 * time.Second

// SendMaster connects to the unix socket at path and sends master on it
// (SCM_RIGHTS, with the name "/dev/ptmx"), as runc does for
// --console-socket.
func SendMaster(path string, master *os.File) error {
	c, err := net.DialTimeout("unix", path, sendTimeout)
	if err != nil {
		return fmt.Errorf("console socket: %w", err)
	}
	defer c.Close()
	conn := c.(*net.UnixConn)
	conn.SetDeadline(time.Now().Add(sendTimeout))
	err = control(master, func(fd int) error {
		_, _, err := conn.WriteMsgUnix([]byte(masterName), unix.UnixRights(fd), nil)
		return err
	})
	if err != nil {
		return fmt.Errorf("console socket %s: sending the pty master: %w", path, err)
	}
	return nil
}

// RecvMaster receives a pty master sent by SendMaster (or by runc) on conn.
func RecvMaster(conn *net.UnixConn) (*os.File, error) {
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*4))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, fmt.Errorf("receiving the pty master: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, fmt.Errorf("receiving the pty master: %w", err)
	}
	var fds []int
	for _, m := range msgs {
		if f, err := unix.ParseUnixRights(&m); err == nil {
			fds = append(fds, f...)
		}
	}
	if len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("receiving the pty master: %d descriptors, want 1", len(fds))
	}
	name := string(buf[:n])
	if name == "" {
		name = masterName
	}
	unix.CloseOnExec(fds[0])
	return os.NewFile(uintptr(fds[0]), name), nil
}
