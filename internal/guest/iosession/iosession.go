// Package iosession serves the IO session: yamux sessions, opened by the
// host, whose streams carry the standard streams of container processes.
// The host is the yamux client and opens every stream; the agent accepts
// them, reads each one's StreamHeader and keeps it until the container
// engine takes it for the process it names.
//
// A stream may come before or after the call that creates its process
// (the host opens them before the call, but they travel on another
// channel): Take waits, boundedly, for one not there yet, and a stream
// nobody takes is closed after a while.
//
// A stream whose header asks for port forwarding is instead joined to a
// new TCP connection to that port on the guest's loopback: how the CRI's
// port forwarding reaches a server in a pod.
package iosession

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/sirupsen/logrus"

	api "github.com/hull-runtime/hull/api/agent/v1"
)

const (
	// headerTimeout bounds the wait for a stream's header.
	headerTimeout = 10 * time.Second
	// DefaultPendingTimeout is how long a stream waits to be taken.
	DefaultPendingTimeout = 30 * time.Second
	// maxStreamWindow is the most each stream may have in flight towards
	// the agent (stdin): yamux buffers up to it per stream.
	maxStreamWindow = 1 << 20
	// dialTimeout bounds a port-forward connection's dial.
	dialTimeout = 10 * time.Second
)

// Key names a stream: the process and which of its standard streams.
type Key struct {
	ContainerID string
	// ExecID is empty for the container's init.
	ExecID string
	Fd     api.StreamHeader_Fd
}

func (k Key) String() string {
	proc := k.ContainerID
	if k.ExecID != "" {
		proc += "/" + k.ExecID
	}
	return fmt.Sprintf("%s of %s", k.Fd, proc)
}

// Stream is one stream of the IO session. Close half-closes it: the host
// reads EOF, and the stream is gone once the host closes its side too.
type Stream = net.Conn

// Server matches the streams of all sessions to the processes that take
// them.
type Server struct {
	log            *logrus.Entry
	pendingTimeout time.Duration

	mu    sync.Mutex
	slots map[Key]*slot // guarded by mu
}

// slot is a stream that arrived and was not taken yet, or a Take that
// waits for one.
type slot struct {
	ch    chan Stream // holds the stream; one slot
	timer *time.Timer // closes an untaken stream
}

// NewServer returns a server that closes streams not taken within
// pendingTimeout (DefaultPendingTimeout when 0).
func NewServer(log *logrus.Entry, pendingTimeout time.Duration) *Server {
	if pendingTimeout <= 0 {
		pendingTimeout = DefaultPendingTimeout
	}
	return &Server{log: log, pendingTimeout: pendingTimeout, slots: make(map[Key]*slot)}
}

// Config returns the yamux configuration of the agent's side: a window
// large enough for throughput on a slow guest, no keepalive (a TCG guest
// may not answer one in time, and the host sees the VM go anyway), and a
// generous write timeout.
func (s *Server) Config() *yamux.Config {
	cfg := yamux.DefaultConfig()
	cfg.EnableKeepAlive = false
	cfg.ConnectionWriteTimeout = 30 * time.Second
	cfg.MaxStreamWindowSize = maxStreamWindow
	cfg.LogOutput = nil
	cfg.Logger = debugLogger{s.log}
	return cfg
}

// Serve accepts connections on l, each one a yamux session, until l
// fails.
func (s *Server) Serve(l net.Listener) error {
	for {
		conn, err := l.Accept()
		if err != nil {
			if ne, ok := err.(interface{ Temporary() bool }); ok && ne.Temporary() {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			return err
		}
		go s.ServeConn(conn)
	}
}

// ServeConn runs one yamux session on conn until it ends, and closes conn.
func (s *Server) ServeConn(conn net.Conn) {
	log := s.log.WithField("remote", conn.RemoteAddr().String())
	sess, err := yamux.Server(conn, s.Config())
	if err != nil {
		log.WithError(err).Error("IO session")
		conn.Close()
		return
	}
	defer sess.Close()
	log.Debug("IO session started")
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			log.WithError(err).Info("IO session ended")
			return
		}
		go s.arrive(st)
	}
}

// arrive reads a new stream's header and files the stream under it.
func (s *Server) arrive(st *yamux.Stream) {
	st.SetReadDeadline(time.Now().Add(headerTimeout))
	h, err := api.ReadStreamHeader(st)
	st.SetReadDeadline(time.Time{})
	if err != nil {
		s.log.WithError(err).Warn("IO stream without a valid header: closed")
		st.Close()
		return
	}
	if h.PortForward != 0 {
		s.forward(st, h)
		return
	}
	if h.ContainerId == "" || (h.Fd != api.StreamHeader_STDIN && h.Fd != api.StreamHeader_STDOUT && h.Fd != api.StreamHeader_STDERR) {
		s.log.Warnf("IO stream with bad header %v: closed", h)
		st.Close()
		return
	}
	s.Put(Key{ContainerID: h.ContainerId, ExecID: h.ExecId, Fd: h.Fd}, st)
}

// forward joins a port-forward stream to a TCP connection to its port on
// the loopback, both ways, half-closing each direction at its EOF.
func (s *Server) forward(st *yamux.Stream, h *api.StreamHeader) {
	log := s.log.WithFields(logrus.Fields{"pod": h.ContainerId, "port": h.PortForward})
	if h.PortForward > 65535 {
		log.Warn("port forward to a port out of range: closed")
		st.Close()
		return
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(h.PortForward)))
	c, err := net.DialTimeout("tcp4", addr, dialTimeout)
	if err != nil {
		// Closing the stream at once is how the host learns the dial
		// failed: its reader gets EOF before any byte.
		log.WithError(err).Debug("port forward")
		st.Close()
		return
	}
	tcp := c.(*net.TCPConn)
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(tcp, st)
		_ = tcp.CloseWrite()
		close(done)
	}()
	_, _ = io.Copy(st, tcp)
	_ = st.Close()
	<-done
	_ = tcp.Close()
}

// Put files stream under key, as a stream arriving with that header.
func (s *Server) Put(key Key, stream Stream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sl := s.slots[key]
	if sl == nil {
		sl = &slot{ch: make(chan Stream, 1)}
		s.slots[key] = sl
	}
	select {
	case sl.ch <- stream:
	default:
		s.log.Warnf("IO stream %s: one is there already; closed the new one", key)
		stream.Close()
		return
	}
	sl.timer = time.AfterFunc(s.pendingTimeout, func() { s.expire(key, sl) })
}

// expire closes the stream of sl if nobody took it.
func (s *Server) expire(key Key, sl *slot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.slots[key] != sl {
		return
	}
	select {
	case st := <-sl.ch:
		delete(s.slots, key)
		s.log.Warnf("IO stream %s: not taken within %s; closed", key, s.pendingTimeout)
		st.Close()
	default:
		// Taken meanwhile, or a Take waits on an empty slot.
	}
}

// Take returns the stream filed under key, waiting for it as long as ctx
// allows.
func (s *Server) Take(ctx context.Context, key Key) (Stream, error) {
	s.mu.Lock()
	sl := s.slots[key]
	if sl == nil {
		sl = &slot{ch: make(chan Stream, 1)}
		s.slots[key] = sl
	}
	s.mu.Unlock()

	var st Stream
	select {
	case st = <-sl.ch:
	case <-ctx.Done():
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if st == nil {
		// It may have come just now.
		select {
		case st = <-sl.ch:
		default:
		}
	}
	if s.slots[key] == sl {
		delete(s.slots, key)
	}
	if sl.timer != nil {
		sl.timer.Stop()
	}
	if st == nil {
		return nil, fmt.Errorf("IO stream %s did not arrive: %w", key, context.Cause(ctx))
	}
	return st, nil
}

// Pending returns how many streams wait to be taken.
func (s *Server) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, sl := range s.slots {
		n += len(sl.ch)
	}
	return n
}

// debugLogger sends yamux's log lines to the agent's log at debug level.
type debugLogger struct{ log *logrus.Entry }

func (l debugLogger) Print(v ...any)                 { l.log.Debug(v...) }
func (l debugLogger) Printf(format string, v ...any) { l.log.Debugf(format, v...) }
func (l debugLogger) Println(v ...any)               { l.log.Debugln(v...) }

var _ io.Closer = (*yamux.Stream)(nil)
