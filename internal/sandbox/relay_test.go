package sandbox

import (
	"io"
	"net"
	"testing"
	"time"
)

// halfCloser is a guest stream whose Close only ends the host's side of
// it, as closing an IO stream does.
type halfCloser struct{ net.Conn }

func (halfCloser) Close() error { return nil }

// A guest that keeps a forwarded connection open and silent after the
// host's client sent all it had ends the relay after the idle bound, not
// never; the host's client sees the end of the connection.
func TestRelayEndsOnSilentGuest(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	host, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	guestEnd, relayEnd := net.Pipe()
	defer guestEnd.Close()
	got := make(chan string, 1)
	go func() {
		// The guest reads the request and then neither answers nor closes.
		b := make([]byte, 16)
		n, _ := guestEnd.Read(b)
		got <- string(b[:n])
		_, _ = io.Copy(io.Discard, guestEnd)
	}()

	ended := make(chan struct{})
	go func() {
		relay(host, halfCloser{relayEnd}, 200*time.Millisecond)
		close(ended)
	}()
	if _, err := client.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	client.(*net.TCPConn).CloseWrite()
	if s := <-got; s != "hi" {
		t.Errorf("guest got %q", s)
	}
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the relay still runs 10 s after the host's client finished, with a silent guest")
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := client.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("client read %d, %v; want EOF", n, err)
	}
}

// A guest that keeps answering is not cut off by the bound.
func TestRelayKeepsTalkingGuest(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	host, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	guestEnd, relayEnd := net.Pipe()
	go func() {
		b := make([]byte, 16)
		guestEnd.Read(b)
		// Answers slowly, each piece within the bound, longer than it
		// in all, then closes.
		for i := 0; i < 5; i++ {
			time.Sleep(100 * time.Millisecond)
			guestEnd.Write([]byte("x"))
		}
		guestEnd.Close()
	}()
	go relay(host, halfCloser{relayEnd}, 200*time.Millisecond)
	client.Write([]byte("hi"))
	client.(*net.TCPConn).CloseWrite()
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(client)
	if err != nil || string(b) != "xxxxx" {
		t.Errorf("client got %q, %v; want the whole slow answer", b, err)
	}
}
