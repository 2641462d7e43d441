package agentclient

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	agent "github.com/hull-runtime/hull/api/agent/v1"
)

func frame(typ byte, flags uint16, stream, length uint32, payload []byte) []byte {
	h := make([]byte, frameHeaderSize)
	h[1] = typ
	binary.BigEndian.PutUint16(h[2:4], flags)
	binary.BigEndian.PutUint32(h[4:8], stream)
	binary.BigEndian.PutUint32(h[8:12], length)
	return append(h, payload...)
}

func TestGuestFramesScan(t *testing.T) {
	// A payload that looks like a SYN header must pass: it is data.
	lookalike := frame(2, frameFlagSYN, 0, 7, nil)
	var legit []byte
	legit = append(legit, frame(1, 2, 1, 1<<18, nil)...)                        // window update, ACK
	legit = append(legit, frame(0, 0, 1, uint32(len(lookalike)), lookalike)...) // data
	legit = append(legit, frame(0, 4, 1, 0, nil)...)                            // FIN
	legit = append(legit, frame(2, 2, 0, 9, nil)...)                            // a ping's answer
	syn := frame(2, frameFlagSYN, 0, 9, nil)
	open := frame(1, frameFlagSYN, 2, 0, nil)

	for _, step := range []int{1, 3, 12, 13, len(legit)} {
		g := &guestFrames{}
		for b := legit; len(b) > 0; {
			n := min(step, len(b))
			if err := g.scan(b[:n]); err != nil {
				t.Fatalf("legit frames in reads of %d: %v", step, err)
			}
			b = b[n:]
		}
		for _, bad := range [][]byte{syn, open} {
			g2 := *g
			var err error
			for b := bad; len(b) > 0 && err == nil; {
				n := min(step, len(b))
				err = g2.scan(b[:n])
				b = b[n:]
			}
			if !errors.Is(err, errGuestProtocol) {
				t.Errorf("SYN frame in reads of %d: %v", step, err)
			}
		}
	}
}

// pipeSession is a host IO session and the guest's yamux over a pipe.
func pipeSession(t *testing.T) (*IOSession, *yamux.Session) {
	t.Helper()
	hostConn, guestConn := net.Pipe()
	s, err := NewIOSession(hostConn)
	if err != nil {
		t.Fatal(err)
	}
	cfg := yamux.DefaultConfig()
	cfg.EnableKeepAlive = false
	cfg.LogOutput = io.Discard
	g, err := yamux.Server(guestConn, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); g.Close() })
	return s, g
}

func waitClosed(t *testing.T, s *IOSession, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !s.sess.IsClosed() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !s.sess.IsClosed() {
		t.Errorf("the host's session survived %s", what)
	}
}

func TestIOSessionEndsOnGuestSYN(t *testing.T) {
	// An honest guest: streams work both ways.
	s, g := pipeSession(t)
	go func() {
		st, err := g.AcceptStream()
		if err != nil {
			return
		}
		if _, err := agent.ReadStreamHeader(st); err == nil {
			st.Write([]byte("hello"))
		}
		st.Close()
	}()
	c, err := s.Open("c", "", agent.StreamHeader_STDOUT)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(c)
	if !bytes.Equal(got, []byte("hello")) || s.sess.IsClosed() {
		t.Fatalf("honest guest: read %q, session closed %v", got, s.sess.IsClosed())
	}

	// A guest that pings: the host would answer each in a goroutine.
	s, g = pipeSession(t)
	go g.Ping()
	waitClosed(t, s, "a ping from the guest")

	// A guest that opens streams the host never accepts.
	s, g = pipeSession(t)
	go g.OpenStream()
	waitClosed(t, s, "a stream opened by the guest")
}
