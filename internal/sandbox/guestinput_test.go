package sandbox

import (
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
)

// A process's output stream leaves the IO session once the agent closed
// it and its output is copied. Before, the host never closed its side, and
// every exec left a stream, with its receive buffer, until the VM ended.
func TestCopyOutReleasesTheStream(t *testing.T) {
	hostConn, guestConn := net.Pipe()
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = io.Discard
	host, err := yamux.Client(hostConn, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	guest, err := yamux.Server(guestConn, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer guest.Close()
	go func() {
		for {
			st, err := guest.AcceptStream()
			if err != nil {
				return
			}
			st.Write([]byte("output"))
			st.Close()
		}
	}()

	for i := 0; i < 3; i++ {
		c, err := host.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		copyOut(&out, c, &outputProgress{})
		if out.String() != "output" {
			t.Fatalf("copied %q", out.String())
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for host.NumStreams() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := host.NumStreams(); n != 0 {
		t.Errorf("%d streams left in the session after their output was copied", n)
	}
}

// The console lines quoted in a boot error are the guest's: cut and
// escaped.
func TestConsoleTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	log := "early\r\n\x1b]0;owned\x07title\n" + strings.Repeat("y", 5000) + "\nlast line\n"
	if err := os.WriteFile(path, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	got := consoleTail(path, 3)
	if strings.ContainsAny(got, "\x1b\x07\r\n") {
		t.Errorf("control characters kept: %q", got)
	}
	if !strings.Contains(got, `\x1b]0;owned\atitle`) || !strings.HasSuffix(got, " | last line") || strings.Contains(got, "early") {
		t.Errorf("tail %q", got)
	}
	if len(got) > 3*(consoleLineMax+10) {
		t.Errorf("tail of %d bytes", len(got))
	}
	if got := consoleTail(filepath.Join(t.TempDir(), "none"), 3); got != "(empty)" {
		t.Errorf("missing log: %q", got)
	}
}
