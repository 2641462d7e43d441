package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/runc/libcontainer/utils"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	api "github.com/hull-runtime/hull/api/agent/v1"
	"github.com/hull-runtime/hull/internal/guest/iosession"
)

// drainGrace is how long, after the process has exited, its output must
// stay empty before the output counts as all written. What the process
// wrote is in the pipe by then and reads at once; a pipe that stays empty
// is held open by something the process left running. So is one that
// still gives data drainGrace after the exit when the bytes that were in
// it at the exit are all out: that is the output of what the process
// left running, and with runc it would go on to the caller's stdout after
// the caller has its exit status. Here it is read and dropped once the
// stream has ended, so that such a process never blocks on a full pipe.
const drainGrace = 500 * time.Millisecond

// copyBufSize is the size of each output copy's buffer.
const copyBufSize = 32 << 10

// Stdio says which streams a process has.
type Stdio struct {
	Terminal, Stdin, Stdout, Stderr bool
}

// StdioFrom converts the API's Stdio; nil is no streams.
func StdioFrom(s *api.Stdio) Stdio {
	if s == nil {
		return Stdio{}
	}
	return Stdio{Terminal: s.Terminal, Stdin: s.Stdin, Stdout: s.Stdout, Stderr: s.Stderr && !s.Terminal}
}

// procIO connects a process to its streams of the IO session.
type procIO struct {
	log *logrus.Entry

	stdin, stdout, stderr iosession.Stream // nil when absent

	// Set up before start, handed to the process; closed after start.
	childEnds []*os.File
	// consoleSock receives the pty master from the container's init.
	consoleSock *os.File

	// stdinW is the agent's end of the process's stdin (the pty master
	// with a terminal).
	stdinMu     sync.Mutex
	stdinW      *os.File // guarded by stdinMu; nil once closed
	stdinClosed bool     // guarded by stdinMu

	console *os.File // pty master, with a terminal

	outs []*outCopy
}

// takeStreams takes the streams stdio names from the IO session, waiting
// for them until ctx is done. On error it closes those it took.
func takeStreams(ctx context.Context, srv *iosession.Server, containerID, execID string, stdio Stdio, log *logrus.Entry) (*procIO, error) {
	pio := &procIO{log: log}
	take := func(want bool, fd api.StreamHeader_Fd, dst *iosession.Stream) error {
		if !want {
			return nil
		}
		st, err := srv.Take(ctx, iosession.Key{ContainerID: containerID, ExecID: execID, Fd: fd})
		if err != nil {
			return err
		}
		*dst = st
		return nil
	}
	err := errors.Join(
		take(stdio.Stdin, api.StreamHeader_STDIN, &pio.stdin),
		take(stdio.Stdout, api.StreamHeader_STDOUT, &pio.stdout),
		take(stdio.Stderr, api.StreamHeader_STDERR, &pio.stderr),
	)
	if err != nil {
		pio.closeStreams()
		return nil, err
	}
	return pio, nil
}

func (pio *procIO) closeStreams() {
	for _, st := range []iosession.Stream{pio.stdin, pio.stdout, pio.stderr} {
		if st != nil {
			st.Close()
		}
	}
}

// prepare sets lp's standard streams: pipes to the streams, a console
// socket for a terminal, /dev/null for what has no stream.
func (pio *procIO) prepare(lp *libcontainerProcess, terminal bool) (err error) {
	defer func() {
		if err != nil {
			pio.abort()
		}
	}()
	if terminal {
		parent, child, err := utils.NewSockPair("console")
		if err != nil {
			return err
		}
		pio.consoleSock = parent
		pio.childEnds = append(pio.childEnds, child)
		lp.ConsoleSocket = child
		return nil
	}
	var null *os.File
	devNull := func() (*os.File, error) {
		if null == nil {
			f, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
			if err != nil {
				return nil, err
			}
			null = f
			pio.childEnds = append(pio.childEnds, f)
		}
		return null, nil
	}

	if pio.stdin != nil {
		r, w, err := os.Pipe()
		if err != nil {
			return err
		}
		pio.childEnds = append(pio.childEnds, r)
		pio.stdinW = w
		lp.Stdin = r
	} else {
		f, err := devNull()
		if err != nil {
			return err
		}
		lp.Stdin = f
	}
	for _, o := range []struct {
		st  iosession.Stream
		dst *io.Writer
	}{{pio.stdout, &lp.Stdout}, {pio.stderr, &lp.Stderr}} {
		if o.st == nil {
			f, err := devNull()
			if err != nil {
				return err
			}
			*o.dst = f
			continue
		}
		r, w, err := os.Pipe()
		if err != nil {
			return err
		}
		pio.childEnds = append(pio.childEnds, w)
		pio.outs = append(pio.outs, newOutCopy(r, o.st, pio.log))
		*o.dst = w
	}
	return nil
}

// started closes the process's ends and starts copying. With a terminal
// it first receives the pty master from the container.
func (pio *procIO) started() error {
	for _, f := range pio.childEnds {
		f.Close()
	}
	pio.childEnds = nil
	if pio.consoleSock != nil {
		m, err := utils.RecvFile(pio.consoleSock)
		pio.consoleSock.Close()
		pio.consoleSock = nil
		if err != nil {
			pio.abort()
			return fmt.Errorf("receiving the pty master: %w", err)
		}
		master, err := pollable(m)
		if err != nil {
			pio.abort()
			return err
		}
		pio.console = master
		pio.stdinW = master
		if pio.stdout != nil {
			o := newOutCopy(master, pio.stdout, pio.log)
			// The tty layer still holds bytes that TIOCINQ does not count
			// (its flip buffers): the count may not end a terminal's output.
			o.tty = true
			pio.outs = append(pio.outs, o)
		}
	}
	for _, o := range pio.outs {
		go o.run()
	}
	if pio.stdin != nil {
		go pio.copyStdin()
	}
	return nil
}

// pollable returns f as a non-blocking file that the Go runtime polls, so
// that read deadlines work on it, and closes f.
func pollable(f *os.File) (*os.File, error) {
	defer f.Close()
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		return nil, err
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// abort closes everything of a process that did not start.
func (pio *procIO) abort() {
	for _, f := range pio.childEnds {
		f.Close()
	}
	pio.childEnds = nil
	if pio.consoleSock != nil {
		pio.consoleSock.Close()
	}
	for _, o := range pio.outs {
		o.src.Close()
	}
	pio.outs = nil
	pio.stdinMu.Lock()
	if pio.stdinW != nil {
		pio.stdinW.Close()
		pio.stdinW = nil
	}
	pio.stdinMu.Unlock()
	if pio.console != nil {
		pio.console.Close()
	}
	pio.closeStreams()
}

// copyStdin copies the stdin stream into the process until the stream
// ends, then closes the process's stdin (not with a terminal: the pty
// carries the output too).
func (pio *procIO) copyStdin() {
	buf := make([]byte, copyBufSize)
	for {
		n, err := pio.stdin.Read(buf)
		if n > 0 {
			pio.stdinMu.Lock()
			w := pio.stdinW
			pio.stdinMu.Unlock()
			if w == nil {
				break
			}
			// Written outside the lock: it blocks while the process does
			// not read, and CloseStdin must be able to interrupt it.
			if _, werr := w.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded) {
				pio.log.WithError(err).Debug("stdin stream")
			}
			break
		}
	}
	pio.stdinMu.Lock()
	closedHere := pio.stdinClosed
	pio.stdinMu.Unlock()
	if pio.console == nil {
		pio.closeStdin()
	} else if !closedHere {
		// The host's end of the terminal went (its master closed, or the
		// exec's caller was killed) while the process runs: closing the
		// guest's master hangs the terminal up, and the kernel sends the
		// process SIGHUP, as it would on the host; a shell would wait on
		// it for ever otherwise. Its output had nobody left to read it.
		// (TIOCSIG cannot send SIGHUP.)
		pio.console.Close()
	}
	pio.stdin.Close()
}

// closeStdin closes the process's stdin; with a terminal, it only stops
// forwarding the stream.
func (pio *procIO) closeStdin() {
	pio.stdinMu.Lock()
	defer pio.stdinMu.Unlock()
	if pio.stdinClosed {
		return
	}
	pio.stdinClosed = true
	if pio.console == nil && pio.stdinW != nil {
		pio.stdinW.Close()
	}
	pio.stdinW = nil
	if pio.stdin != nil {
		// Wakes copyStdin if it waits for the host.
		pio.stdin.SetReadDeadline(time.Now())
	}
}

// exited tells the copies that the process has ended and waits until its
// output is all written to the streams (see drainGrace), or ctx is done.
func (pio *procIO) exited(ctx context.Context) {
	pio.closeStdin()
	for _, o := range pio.outs {
		o.exited()
	}
	for _, o := range pio.outs {
		select {
		case <-o.drained:
		case <-ctx.Done():
			return
		}
	}
}

// resize sets the terminal's window size.
func (pio *procIO) resize(width, height uint16) error {
	if pio.console == nil {
		return errNoTerminal
	}
	return unix.IoctlSetWinsize(int(pio.console.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: height, Col: width})
}

var errNoTerminal = errors.New("the process has no terminal")

// outCopy copies a process's output (a pipe or the pty master) to a
// stream, and closes the stream at the output's end. It copies no faster
// than the host reads: the stream's window blocks its writes, and the
// process's writes block on the full pipe.
//
// The host never sends on an output stream, so the stream's end from the
// host side means that nobody reads the output any more (the host's
// writer failed: a closed pipe, a consumer gone). The copy then closes
// the pipe, and the process gets EPIPE or SIGPIPE on its next write, as
// it would writing to that pipe on the host, instead of blocking for ever.
type outCopy struct {
	src *os.File
	dst iosession.Stream
	log *logrus.Entry

	ended     atomic.Bool  // the process has exited
	exitedAt  atomic.Int64 // when, in UnixNano
	left      atomic.Int64 // bytes in the pipe at the exit not yet copied
	closed    atomic.Bool  // this side ended the stream
	tty       bool         // src is a pty master (set before run)
	drained   chan struct{}
	drainOnce sync.Once
}

func newOutCopy(src *os.File, dst iosession.Stream, log *logrus.Entry) *outCopy {
	return &outCopy{src: src, dst: dst, log: log, drained: make(chan struct{})}
}

// exited starts the drain: the bytes in the pipe now are the process's
// last, and from now on a read that waits drainGrace for data marks the
// output as drained.
func (o *outCopy) exited() {
	// TIOCINQ is FIONREAD: what is left to read, for a pipe or a pty.
	// Through the raw fd: Fd() would make the file blocking, and its read
	// deadlines would stop working.
	if rc, err := o.src.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			if n, err := unix.IoctlGetInt(int(fd), unix.TIOCINQ); err == nil {
				o.left.Store(int64(n))
			}
		})
	}
	o.exitedAt.Store(time.Now().UnixNano())
	o.ended.Store(true)
	o.src.SetReadDeadline(time.Now().Add(drainGrace))
}

func (o *outCopy) markDrained() { o.drainOnce.Do(func() { close(o.drained) }) }

// watchHost closes the pipe and the stream when the host ends the stream
// first.
func (o *outCopy) watchHost() {
	_, _ = io.Copy(io.Discard, o.dst)
	if !o.closed.CompareAndSwap(false, true) {
		return
	}
	o.log.Debug("the host stopped reading the output")
	o.src.Close()
	// Wakes a write blocked on the window of a host that no longer reads.
	o.dst.Close()
}

// finishStream ends the stream once the process's output is all in it:
// the host has everything before the stream's end, and what comes later
// is dropped.
func (o *outCopy) finishStream() {
	o.markDrained()
	if o.closed.CompareAndSwap(false, true) {
		o.dst.Close()
	}
}

func (o *outCopy) run() {
	defer o.markDrained()
	go o.watchHost()
	buf := make([]byte, copyBufSize)
	broken := false // the stream ended or failed: keep reading, to not block the process
	for {
		// Only what is read after exited's count was in the pipe then
		// (or came later): a read before it counts for nothing.
		afterExit := o.ended.Load()
		n, err := o.src.Read(buf)
		if n > 0 && !broken {
			if _, werr := o.dst.Write(buf[:n]); werr != nil {
				if !o.closed.Load() { // not ended on purpose, by either side
					o.log.WithError(werr).Warn("output stream failed; discarding the rest")
				}
				broken = true
			}
		}
		if n > 0 && afterExit {
			o.left.Add(-int64(n))
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// Empty for drainGrace after the exit: all of the process's
			// own output is out. Go on without a deadline for whatever
			// holds the pipe open.
			o.finishStream()
			broken = true
			o.src.SetReadDeadline(time.Time{})
			continue
		}
		if err != nil {
			// EOF, or EIO from a pty master whose terminal is gone.
			if !errors.Is(err, io.EOF) && !errors.Is(err, unix.EIO) && !errors.Is(err, os.ErrClosed) {
				o.log.WithError(err).Debug("output")
			}
			break
		}
		if o.ended.Load() && !broken {
			if !o.tty && o.left.Load() <= 0 && time.Since(time.Unix(0, o.exitedAt.Load())) >= drainGrace {
				// Still data, all of it from what the process left running.
				o.finishStream()
				broken = true
				o.src.SetReadDeadline(time.Time{})
				continue
			}
			o.src.SetReadDeadline(time.Now().Add(drainGrace))
		}
	}
	o.closed.Store(true)
	o.src.Close()
	o.dst.Close()
}
