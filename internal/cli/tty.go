package cli

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/hull-runtime/hull/internal/console"
)

// foregroundTTY lets `hull run` and `hull exec` in the foreground give a
// terminal process the caller's own terminal, as runc does: the command
// listens on a console socket of its own, receives the pty master, puts
// its stdin terminal in raw mode (the container's terminal does the line
// discipline), copies between its stdio and the master, and passes its
// window size on to the master. Close restores the terminal.
type foregroundTTY struct {
	dir  string
	l    *net.UnixListener
	done chan struct{} // closed when the master's output is all copied
	// term is the caller's terminal: the first of stderr, stdout and
	// stdin that is one, else /dev/tty (owned, closed by Close).
	term    *os.File
	ownTerm bool

	mu     sync.Mutex
	closed bool          // guarded by mu
	saved  *unix.Termios // guarded by mu: stdin's settings to restore
}

// outputDrain bounds the wait for the last output after the process ended.
const outputDrain = 5 * time.Second

// newForegroundTTY listens on a fresh console socket. As runc, it needs a
// terminal of the caller's: one of its stdio streams, or its controlling
// terminal (/dev/tty) when all three are redirected.
func newForegroundTTY() (*foregroundTTY, error) {
	term, own, err := callerTerminal()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "hull-tty-")
	if err != nil {
		if own {
			term.Close()
		}
		return nil, err
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "console.sock"), Net: "unix"})
	if err != nil {
		os.RemoveAll(dir)
		if own {
			term.Close()
		}
		return nil, fmt.Errorf("console socket: %w", err)
	}
	f := &foregroundTTY{dir: dir, l: l, done: make(chan struct{}), term: term, ownTerm: own}
	go f.serve()
	return f, nil
}

// Path is the console socket to pass to the supervisor.
func (f *foregroundTTY) Path() string { return f.l.Addr().String() }

func (f *foregroundTTY) serve() {
	defer close(f.done)
	conn, err := f.l.AcceptUnix()
	if err != nil {
		return
	}
	master, err := console.RecvMaster(conn)
	conn.Close()
	if err != nil {
		return
	}
	defer master.Close()
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	saved, err := console.MakeRaw(f.term)
	if err == nil {
		f.saved = saved
	}
	f.mu.Unlock()

	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	defer signal.Stop(winch)
	copySize := func() {
		if ws, err := console.Size(f.term); err == nil && ws.Row > 0 && ws.Col > 0 {
			console.SetSize(master, ws)
		}
	}
	copySize()
	go func() {
		for range winch {
			copySize()
		}
	}()
	go io.Copy(master, os.Stdin)
	// Ends with EIO once the supervisor closed the slave and everything
	// written to it is read.
	io.Copy(os.Stdout, master)
}

// Close waits a bounded time for the rest of the output, then restores the
// terminal and removes the console socket.
func (f *foregroundTTY) Close() {
	f.l.Close()
	select {
	case <-f.done:
	case <-time.After(outputDrain):
	}
	f.mu.Lock()
	f.closed = true
	if f.saved != nil {
		console.Restore(f.term, f.saved)
		f.saved = nil
	}
	if f.ownTerm {
		f.term.Close()
		f.ownTerm = false
	}
	f.mu.Unlock()
	os.RemoveAll(f.dir)
}

// callerTerminal is the terminal foregroundTTY sets raw and sizes from, as
// runc picks it: stderr, stdout or stdin, else /dev/tty (then own is true).
func callerTerminal() (term *os.File, own bool, err error) {
	for _, f := range []*os.File{os.Stderr, os.Stdout, os.Stdin} {
		if console.IsTerminal(f) {
			return f, false, nil
		}
	}
	t, err := os.OpenFile("/dev/tty", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, false, fmt.Errorf("the process has a terminal but hull's caller has none (stdio redirected, %v): use --console-socket to receive the pty master, or run from a terminal: %w", err, errdefs.ErrInvalidArgument)
	}
	if !console.IsTerminal(t) {
		t.Close()
		return nil, false, fmt.Errorf("the process has a terminal but /dev/tty is not one: %w", errdefs.ErrInvalidArgument)
	}
	return t, true, nil
}
