package iosession

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/sirupsen/logrus"

	api "github.com/hull-runtime/hull/api/agent/v1"
)

func newTestServer(pending time.Duration) *Server {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return NewServer(logrus.NewEntry(l), pending)
}

// A stream that comes before Take and one that comes after are both found;
// a Take for one that never comes gives up with ctx.
func TestPutTake(t *testing.T) {
	s := newTestServer(time.Minute)
	k := Key{ContainerID: "c", Fd: api.StreamHeader_STDOUT}
	a, _ := net.Pipe()
	s.Put(k, a)
	if got, err := s.Take(context.Background(), k); err != nil || got != a {
		t.Fatalf("Take = %v, %v", got, err)
	}

	k2 := Key{ContainerID: "c", ExecID: "e", Fd: api.StreamHeader_STDIN}
	b, _ := net.Pipe()
	time.AfterFunc(50*time.Millisecond, func() { s.Put(k2, b) })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if got, err := s.Take(ctx, k2); err != nil || got != b {
		t.Fatalf("Take before Put = %v, %v", got, err)
	}

	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.Take(ctx, Key{ContainerID: "none"}); err == nil {
		t.Fatal("Take of a stream that never comes did not fail")
	}
	if n := s.Pending(); n != 0 {
		t.Errorf("%d pending", n)
	}
}

// A stream nobody takes is closed; a second stream under the same key is
// refused.
func TestPendingExpires(t *testing.T) {
	s := newTestServer(50 * time.Millisecond)
	k := Key{ContainerID: "c", Fd: api.StreamHeader_STDERR}
	a, peerA := net.Pipe()
	b, peerB := net.Pipe()
	s.Put(k, a)
	s.Put(k, b)
	for name, peer := range map[string]net.Conn{"duplicate": peerB, "untaken": peerA} {
		peer.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := peer.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("%s stream: read %v, want EOF (closed)", name, err)
		}
	}
	if n := s.Pending(); n != 0 {
		t.Errorf("%d pending after expiry", n)
	}
}

// Streams of a yamux session are filed under their headers; bad headers
// close the stream.
func TestServeConn(t *testing.T) {
	s, sess := newTestSession(t)

	bad, _ := sess.OpenStream()
	bad.Write([]byte{0xff, 0xff, 0xff, 0xff})
	noID, _ := sess.OpenStream()
	api.WriteStreamHeader(noID, &api.StreamHeader{Fd: api.StreamHeader_STDOUT})
	for _, st := range []*yamux.Stream{bad, noID} {
		st.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := st.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("stream with a bad header: read %v, want EOF", err)
		}
	}

	good, _ := sess.OpenStream()
	api.WriteStreamHeader(good, &api.StreamHeader{ContainerId: "c", ExecId: "e", Fd: api.StreamHeader_STDOUT})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := s.Take(ctx, Key{ContainerID: "c", ExecID: "e", Fd: api.StreamHeader_STDOUT})
	if err != nil {
		t.Fatal(err)
	}
	st.Write([]byte("hi"))
	st.Close()
	b, err := io.ReadAll(good)
	if err != nil || string(b) != "hi" {
		t.Errorf("host read %q, %v", b, err)
	}
}

// A port-forward stream is joined to a TCP connection to its port on the
// loopback, both ways, with half-closes; a refused port closes the stream.
func TestPortForward(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		b, _ := io.ReadAll(c) // until the host half-closes
		c.Write(append([]byte("echo:"), b...))
		c.Close()
	}()
	_, sess := newTestSession(t)

	st, _ := sess.OpenStream()
	api.WriteStreamHeader(st, &api.StreamHeader{ContainerId: "pod", PortForward: uint32(l.Addr().(*net.TCPAddr).Port)})
	st.Write([]byte("ping"))
	st.Close() // half-close
	st.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(st)
	if err != nil || string(b) != "echo:ping" {
		t.Errorf("forwarded: %q, %v", b, err)
	}

	// A closed port: the stream ends before any byte.
	closed, _ := net.Listen("tcp4", "127.0.0.1:0")
	port := closed.Addr().(*net.TCPAddr).Port
	closed.Close()
	refused, _ := sess.OpenStream()
	api.WriteStreamHeader(refused, &api.StreamHeader{ContainerId: "pod", PortForward: uint32(port)})
	refused.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := refused.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("refused port: read %v, want EOF", err)
	}
}

// newTestSession serves a server on one end of a pipe and returns it with
// the host's yamux session on the other end.
func newTestSession(t *testing.T) (*Server, *yamux.Session) {
	t.Helper()
	s := newTestServer(time.Minute)
	guest, host := net.Pipe()
	go s.ServeConn(guest)
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	sess, err := yamux.Client(host, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	return s, sess
}
