package shim

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/fifo"
)

// stdinPair opens a stdin FIFO the way containerd and the shim do: the
// client's writer (opened first, without waiting for a reader) and the
// shim's hostIO.
func stdinPair(t *testing.T, withWriter bool) (io.WriteCloser, *hostIO) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "stdin")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	var w io.WriteCloser
	if withWriter {
		f, err := fifo.OpenFifo(ctx, path, syscall.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			t.Fatal(err)
		}
		w = f
		t.Cleanup(func() { f.Close() })
	}
	h, err := openIO(ctx, "c", "ns", stdioPaths{Stdin: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.close)
	return w, h
}

// readAll reads r to its end, failing the test if that takes longer than
// a few seconds.
func readAll(t *testing.T, r io.Reader) []byte {
	t.Helper()
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := io.ReadAll(r)
		done <- result{b, err}
	}()
	select {
	case res := <-done:
		if res.err != nil {
			t.Fatalf("read stdin: %v (after %d bytes)", res.err, len(res.b))
		}
		return res.b
	case <-time.After(5 * time.Second):
		t.Fatal("stdin did not end")
		return nil
	}
}

func TestStdinCloseIOKeepsWhatWasWritten(t *testing.T) {
	w, h := stdinPair(t, true)
	// Less than a pipe's buffer: all of it is in the FIFO, none read yet,
	// and the client's writer stays open, as containerd's does.
	data := bytes.Repeat([]byte("0123456789abcdef"), 3<<10)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	h.closeStdin()
	if got := readAll(t, h.stdio(false).Stdin); !bytes.Equal(got, data) {
		t.Errorf("read %d bytes after CloseIO, want the %d written", len(got), len(data))
	}
}

func TestStdinCloseIOEndsAWaitingRead(t *testing.T) {
	w, h := stdinPair(t, true)
	if _, err := w.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	r := h.stdio(false).Stdin
	buf := make([]byte, 8)
	if n, err := r.Read(buf); n != 1 || err != nil {
		t.Fatalf("first read: %d, %v", n, err)
	}
	// The next read waits for data that will not come.
	time.AfterFunc(100*time.Millisecond, h.closeStdin)
	if got := readAll(t, r); len(got) != 0 {
		t.Errorf("read %q after CloseIO", got)
	}
}

func TestStdinEndsWhenTheWriterCloses(t *testing.T) {
	w, h := stdinPair(t, true)
	if _, err := w.Write([]byte("last words")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if got := readAll(t, h.stdio(false).Stdin); string(got) != "last words" {
		t.Errorf("read %q", got)
	}
}

func TestStdinCloseIOBeforeAnyWriter(t *testing.T) {
	grace := stdinOpenGrace
	stdinOpenGrace = 200 * time.Millisecond
	t.Cleanup(func() { stdinOpenGrace = grace })
	_, h := stdinPair(t, false)
	r := h.stdio(false).Stdin
	time.AfterFunc(100*time.Millisecond, h.closeStdin)
	if got := readAll(t, r); len(got) != 0 {
		t.Errorf("read %q", got)
	}
}

// smallReads reads r 8 bytes at a time, so that a copy is still draining
// when CloseIO comes.
type smallReads struct{ r io.Reader }

func (s smallReads) Read(b []byte) (int, error) { return s.r.Read(b[:min(len(b), 8)]) }

// CloseIO, twice, while the copy drains in small reads: its deadline must
// not end the input early.
func TestStdinCloseIOWhileDraining(t *testing.T) {
	data := bytes.Repeat([]byte("z"), 48<<10)
	for i := range 50 {
		w, h := stdinPair(t, true)
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
		r := h.stdio(false).Stdin
		buf := make([]byte, 8)
		if _, err := io.ReadFull(r, buf); err != nil {
			t.Fatal(err)
		}
		go func() {
			h.closeStdin()
			time.Sleep(time.Duration(i) * 20 * time.Microsecond)
			h.closeStdin()
		}()
		rest := readAll(t, smallReads{r})
		if got := len(buf) + len(rest); got != len(data) {
			t.Fatalf("round %d: %d of %d bytes read", i, got, len(data))
		}
	}
}
