package shim

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// stdinFIFO is a process's stdin FIFO as the copy into the guest reads it.
//
// CloseIO means "the client has no more input", not "drop what it wrote":
// containerd (CRI's exec and attach, Docker) often sends it right after
// the last write, while its own writer stays open. So CloseIO does not
// close the FIFO under the copy: the copy stops waiting, takes what the
// FIFO still holds, and then sees EOF, which closes the process's stdin
// in the guest. runc's shim gets the same by holding a writer of its own
// until CloseIO, but then a client that only closes its writer (ctr 1.6)
// never ends the input; here either way ends it.
type stdinFIFO struct {
	// fifo opens the FIFO once the client's writer is there (containerd's
	// fifo package); reads go to file, a duplicate of its descriptor,
	// because only an *os.File can be woken with a deadline.
	fifo io.ReadCloser

	// closeFIFO closes fifo once: containerd's fifo must not be closed
	// from two goroutines at once.
	closeFIFO func() error
	// grace is stdinOpenGrace when the FIFO was opened.
	grace time.Duration

	mu      sync.Mutex
	file    *os.File // guarded by mu; nil until the first read
	closing bool     // guarded by mu
	closed  bool     // guarded by mu
}

func newStdinFIFO(fifo io.ReadCloser) *stdinFIFO {
	return &stdinFIFO{fifo: fifo, closeFIFO: sync.OnceValue(fifo.Close), grace: stdinOpenGrace}
}

// Read reads the FIFO until the client's writers are gone or, after
// closeInput, until it holds nothing more.
func (s *stdinFIFO) Read(b []byte) (int, error) {
	f, err := s.open()
	if err != nil {
		if s.isClosing() {
			return 0, io.EOF
		}
		return 0, err
	}
	if s.isClosing() {
		return s.drain(f, b)
	}
	n, err := f.Read(b)
	if errors.Is(err, os.ErrDeadlineExceeded) && s.isClosing() {
		return s.drain(f, b)
	}
	return n, err
}

// open returns the descriptor to read, waiting for the FIFO to open: that
// is when the client's writer connects, or never if closeInput or close
// comes first, which closes the FIFO and ends the wait.
func (s *stdinFIFO) open() (*os.File, error) {
	s.mu.Lock()
	f := s.file
	s.mu.Unlock()
	if f != nil {
		return f, nil
	}
	sc, ok := s.fifo.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("stdin FIFO %T has no descriptor", s.fifo)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(raw uintptr) {
		fd, derr = unix.FcntlInt(raw, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, os.NewSyscallError("dup stdin FIFO", derr)
	}
	// Non-blocking, so that the runtime polls it and deadlines apply.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("stdin FIFO non-blocking", err)
	}
	nf := os.NewFile(uintptr(fd), "stdin")
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		nf.Close()
		return nil, os.ErrClosed
	case s.file != nil:
		// Another read opened it first.
		nf.Close()
		return s.file, nil
	}
	s.file = nf
	if s.closing {
		nf.SetReadDeadline(time.Now())
	}
	return nf, nil
}

// drain takes one read of what the FIFO holds now, without waiting: EOF
// once it is empty. It reads through Control, which ignores deadlines:
// closeInput may set one at any time (a second CloseIO does), and a read
// that honoured it would end the input with data still in the FIFO. The
// descriptor is non-blocking, so the read cannot wait. (Nothing may call
// Fd on either file: that would make the shared description blocking.)
func (s *stdinFIFO) drain(f *os.File, b []byte) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, io.EOF
	}
	var n int
	var rerr error
	if err := rc.Control(func(fd uintptr) {
		for {
			n, rerr = unix.Read(int(fd), b)
			if rerr != unix.EINTR {
				return
			}
		}
	}); err != nil {
		return 0, io.EOF
	}
	switch {
	case n > 0:
		return n, nil
	case rerr == nil || rerr == unix.EAGAIN:
		return 0, io.EOF
	default:
		return 0, os.NewSyscallError("read stdin FIFO", rerr)
	}
}

func (s *stdinFIFO) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// stdinOpenGrace bounds how long closeInput waits for a FIFO that no
// writer has opened yet before it gives up on it. A writer that opens
// just as it runs out may lose what it writes. A variable for the tests.
var stdinOpenGrace = 2 * time.Second

// closeInput ends the input once the FIFO holds nothing more (CloseIO).
func (s *stdinFIFO) closeInput() {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return
	}
	s.closing = true
	f := s.file
	s.mu.Unlock()
	if f != nil {
		// Wakes a read waiting for data; later reads drain.
		f.SetReadDeadline(time.Now())
		return
	}
	// Not read from yet. The FIFO opens once the client's writer is there,
	// which a client that sends CloseIO has normally opened: open it here,
	// so that what was written is drained. If no writer comes, closing the
	// FIFO ends the wait (and the input).
	go func() {
		opened := make(chan struct{})
		go func() {
			s.open()
			close(opened)
		}()
		select {
		case <-opened:
		case <-time.After(s.grace):
			s.mu.Lock()
			unopened := s.file == nil
			s.mu.Unlock()
			if unopened {
				s.closeFIFO()
			}
		}
	}()
}

// Close releases both descriptors; a read in progress ends with an error.
func (s *stdinFIFO) Close() error {
	s.mu.Lock()
	s.closed = true
	f := s.file
	s.mu.Unlock()
	err := s.closeFIFO()
	if f != nil {
		err = errors.Join(err, f.Close())
	}
	return err
}
