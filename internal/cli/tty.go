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

	mu     sync.Mutex
	closed bool          // guarded by mu
	saved  *unix.Termios // guarded by mu: stdin's settings to restore
}

// outputDrain bounds the wait for the last output after the process ended.
const outputDrain = 5 * time.Second

// newForegroundTTY listens on a fresh console socket; stdin must be a
// terminal.
func newForegroundTTY() (*foregroundTTY, error) {
	if !console.IsTerminal(os.Stdin) {
		return nil, fmt.Errorf("the process has a terminal but stdin is not one: use --console-socket to receive the pty master, or run from a terminal: %w", errdefs.ErrInvalidArgument)
	}
	dir, err := os.MkdirTemp("", "hull-tty-")
	if err != nil {
		return nil, err
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "console.sock"), Net: "unix"})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("console socket: %w", err)
	}
	f := &foregroundTTY{dir: dir, l: l, done: make(chan struct{})}
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
	saved, err := console.MakeRaw(os.Stdin)
	if err == nil {
		f.saved = saved
	}
	f.mu.Unlock()

	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	defer signal.Stop(winch)
	copySize := func() {
		if ws, err := console.Size(os.Stdin); err == nil && ws.Row > 0 && ws.Col > 0 {
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
		console.Restore(os.Stdin, f.saved)
		f.saved = nil
	}
	f.mu.Unlock()
	os.RemoveAll(f.dir)
}
