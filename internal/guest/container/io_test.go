package container

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// newTestCopy returns an output copy from a pipe to one end of a
// net.Pipe, the pipe's write end (the process's stdout) and the stream's
// host end.
func newTestCopy(t *testing.T) (*outCopy, *os.File, net.Conn) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	guest, host := net.Pipe()
	t.Cleanup(func() { r.Close(); w.Close(); guest.Close(); host.Close() })
	o := newOutCopy(r, guest, logrus.NewEntry(logrus.New()))
	go o.run()
	return o, w, host
}

func waitDrained(t *testing.T, o *outCopy, within time.Duration) {
	t.Helper()
	select {
	case <-o.drained:
	case <-time.After(within):
		t.Fatalf("output not drained within %v", within)
	}
}

// All of the process's output arrives, then the stream's end.
func TestOutCopyAllThenEnd(t *testing.T) {
	o, w, host := newTestCopy(t)
	want := bytes.Repeat([]byte("0123456789abcdef"), 8<<10) // 128 KiB
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(host)
		got <- b
	}()
	if _, err := w.Write(want); err != nil {
		t.Fatal(err)
	}
	w.Close()
	o.exited()
	waitDrained(t, o, 5*time.Second)
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("got %d bytes, want %d", len(b), len(want))
	}
}

// The host stops reading (its consumer went away) and ends the stream:
// the process's next write fails as a write to a closed pipe does.
func TestOutCopyHostGone(t *testing.T) {
	_, w, host := newTestCopy(t)
	if _, err := w.Write([]byte("first\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n, err := host.Read(buf); err != nil || string(buf[:n]) != "first\n" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	host.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := w.Write([]byte("more\n"))
		if errors.Is(err, syscall.EPIPE) {
			return
		}
		if err != nil {
			t.Fatalf("write after the host left: %v, want EPIPE", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("writes still succeed 5 s after the host ended the stream")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Something the process left running keeps writing after the exit: the
// output still counts as drained once what was in the pipe at the exit is
// out, the stream ends, and the writer is not blocked.
func TestOutCopyLeftoverWriter(t *testing.T) {
	o, w, host := newTestCopy(t)
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(host)
		got <- b
	}()
	if _, err := w.Write([]byte("last words\n")); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	wrote := make(chan error, 1)
	go func() {
		// Never quiet for drainGrace: a line every 50 ms.
		for {
			select {
			case <-stop:
				wrote <- nil
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := w.Write([]byte("leftover\n")); err != nil {
				wrote <- err
				return
			}
		}
	}()
	time.Sleep(20 * time.Millisecond)
	o.exited()
	waitDrained(t, o, 5*drainGrace)
	b := <-got
	if !bytes.HasPrefix(b, []byte("last words\n")) {
		t.Errorf("stream starts %q, want the output from before the exit", b)
	}
	// The leftover still writes without blocking or failing.
	time.Sleep(200 * time.Millisecond)
	close(stop)
	if err := <-wrote; err != nil {
		t.Errorf("the leftover's writes failed after the stream ended: %v", err)
	}
}

// A host that reads slowly still gets every byte the process wrote before
// its exit, though the drain then takes longer than drainGrace and the
// pipe stays open (held by something the process left running).
func TestOutCopySlowReaderGetsAll(t *testing.T) {
	o, w, host := newTestCopy(t)
	want := bytes.Repeat([]byte("abcdefghijklmnop"), 16<<10) // 256 KiB
	wrote := make(chan error, 1)
	go func() {
		_, err := w.Write(want)
		wrote <- err
	}()
	got := make(chan []byte)
	go func() {
		var b []byte
		buf := make([]byte, 8<<10)
		for {
			n, err := host.Read(buf)
			b = append(b, buf[:n]...)
			if err != nil {
				got <- b
				return
			}
			time.Sleep(25 * time.Millisecond) // about 320 KiB/s
		}
	}()
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	// The process exits with its last bytes still in the pipe; w stays
	// open, as a leftover's copy of it would.
	o.exited()
	waitDrained(t, o, 20*time.Second)
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("got %d bytes, want %d", len(b), len(want))
	}
}
