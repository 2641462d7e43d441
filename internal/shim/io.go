package shim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/fifo"
	"github.com/containerd/log"

	"github.com/hull-runtime/hull/internal/sandbox"
)

// stdioPaths are a process's standard streams as containerd names them:
// FIFO paths, or for output a binary:// or file:// URI.
type stdioPaths struct {
	Stdin, Stdout, Stderr string
	Terminal              bool
}

// hostIO is a process's opened standard streams on the host.
type hostIO struct {
	stdin   *stdinFIFO // nil without stdin
	stdout  io.WriteCloser
	stderr  io.WriteCloser
	closers []io.Closer
	logger  *exec.Cmd // the binary:// logger, nil otherwise
	once    sync.Once
}

// loggerReadyTimeout bounds the wait for a binary:// logger to say it is
// ready, as containerd's own shims do.
const loggerReadyTimeout = 10 * time.Second

// openIO opens a process's streams. FIFOs are opened the way containerd's
// client expects: it has opened the other ends already, so opening for
// writing does not block for long; stdin opens without blocking and its
// reads wait for a writer.
func openIO(ctx context.Context, id, ns string, p stdioPaths) (_ *hostIO, retErr error) {
	h := &hostIO{}
	defer func() {
		if retErr != nil {
			h.close()
		}
	}()
	if p.Stdin != "" {
		f, err := fifo.OpenFifo(ctx, p.Stdin, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil, fmt.Errorf("open stdin %s: %w", p.Stdin, err)
		}
		h.stdin = newStdinFIFO(f)
		h.closers = append(h.closers, h.stdin)
	}
	u, err := url.Parse(p.Stdout)
	if err != nil {
		return nil, fmt.Errorf("stdout %q: %w: %w", p.Stdout, err, errdefs.ErrInvalidArgument)
	}
	switch u.Scheme {
	case "binary":
		if err := h.startLogger(ctx, id, ns, u); err != nil {
			return nil, err
		}
	case "file":
		if u.Path == "" {
			return nil, fmt.Errorf("stdout %q names no file: %w", p.Stdout, errdefs.ErrInvalidArgument)
		}
		f, err := os.OpenFile(u.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return nil, fmt.Errorf("open log file: %w", err)
		}
		h.stdout, h.stderr = f, f
		h.closers = append(h.closers, f)
	case "", "fifo":
		for _, o := range []struct {
			path string
			dst  *io.WriteCloser
		}{{p.Stdout, &h.stdout}, {p.Stderr, &h.stderr}} {
			if o.path == "" {
				continue
			}
			f, err := fifo.OpenFifo(ctx, o.path, syscall.O_WRONLY, 0)
			if err != nil {
				return nil, fmt.Errorf("open %s: %w", o.path, err)
			}
			*o.dst = f
			h.closers = append(h.closers, f)
			// A reader of our own, which never reads, as containerd's
			// shims keep: while containerd is away (restarting), writes
			// fill the FIFO and then wait for it to come back, rather than
			// fail with EPIPE, which would end the output's stream and
			// (in the guest) the container's writer with SIGPIPE.
			keep, err := os.OpenFile(o.path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
			if err != nil {
				return nil, fmt.Errorf("open %s: %w", o.path, err)
			}
			h.closers = append(h.closers, keep)
		}
	default:
		return nil, fmt.Errorf("stdout scheme %q is not fifo, binary or file: %w", u.Scheme, errdefs.ErrNotImplemented)
	}
	if p.Terminal {
		// A terminal merges stderr into stdout in the guest.
		h.stderr = nil
	}
	return h, nil
}

// startLogger starts a binary:// logging driver the way containerd
// defines it: the process's stdout and stderr on fds 3 and 4, and fd 5
// closed by the driver once it is ready.
func (h *hostIO) startLogger(ctx context.Context, id, ns string, u *url.URL) error {
	if u.Path == "" {
		return fmt.Errorf("binary logger URI %q names no binary: %w", u.String(), errdefs.ErrInvalidArgument)
	}
	var args []string
	q := u.Query()
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, k)
		if v := q.Get(k); v != "" {
			args = append(args, v)
		}
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return err
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		for _, f := range []*os.File{outR, outW, errR, errW} {
			f.Close()
		}
		return err
	}
	cmd := exec.Command(u.Path, args...)
	cmd.Env = append(os.Environ(), "CONTAINER_ID="+id, "CONTAINER_NAMESPACE="+ns)
	cmd.ExtraFiles = []*os.File{outR, errR, readyW}
	err = cmd.Start()
	outR.Close()
	errR.Close()
	readyW.Close()
	if err != nil {
		outW.Close()
		errW.Close()
		readyR.Close()
		return fmt.Errorf("start logger %s: %w", u.Path, err)
	}
	h.logger = cmd
	h.stdout, h.stderr = outW, errW
	h.closers = append(h.closers, outW, errW)
	ready := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, readyR)
		close(ready)
	}()
	defer readyR.Close()
	select {
	case <-ready:
		return nil
	case <-time.After(loggerReadyTimeout):
		return fmt.Errorf("logger %s not ready within %s: %w", u.Path, loggerReadyTimeout, context.DeadlineExceeded)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stdio returns the streams in the form the sandbox copies them.
func (h *hostIO) stdio(terminal bool) sandbox.Stdio {
	s := sandbox.Stdio{Terminal: terminal}
	if h.stdin != nil {
		s.Stdin = h.stdin
	}
	if h.stdout != nil {
		s.Stdout = h.stdout
	}
	if h.stderr != nil {
		s.Stderr = h.stderr
	}
	return s
}

// closeStdin ends the process's stdin once the copy into the guest has
// taken what the client wrote: the guest side then sees EOF.
func (h *hostIO) closeStdin() {
	if h.stdin != nil {
		h.stdin.closeInput()
	}
}

// close closes every stream, which containerd reads as the end of the
// output, and waits (bounded) for a logger to finish writing.
func (h *hostIO) close() {
	h.once.Do(func() {
		var errs []error
		for _, c := range h.closers {
			errs = append(errs, c.Close())
		}
		if h.logger != nil {
			done := make(chan error, 1)
			go func() { done <- h.logger.Wait() }()
			select {
			case err := <-done:
				errs = append(errs, err)
			case <-time.After(loggerReadyTimeout):
				_ = h.logger.Process.Kill()
				errs = append(errs, <-done)
			}
		}
		if err := errors.Join(errs...); err != nil {
			log.L.WithError(err).Debug("closing process io")
		}
	})
}
