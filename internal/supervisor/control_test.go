package supervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/hull-runtime/hull/internal/state"
)

// The answer to `ps` carries every pid the agent may report (up to 65,536,
// about 720 KB of JSON); it once broke past 64 KiB as "supervisor closed
// the connection".
func TestCallForTakesALargeProcessList(t *testing.T) {
	dir := t.TempDir()
	l, err := net.Listen("unix", filepath.Join(dir, state.SocketFile))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	pids := make([]uint32, 1<<16)
	for i := range pids {
		pids[i] = 4000000000 + uint32(i)
	}
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		bufio.NewReader(c).ReadString('\n')
		json.NewEncoder(c).Encode(Response{Pids: pids})
	}()
	r, err := CallFor(context.Background(), dir, Request{Op: "ps"})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Pids) != len(pids) || r.Pids[len(pids)-1] != pids[len(pids)-1] {
		t.Fatalf("%d pids back", len(r.Pids))
	}
}

// An error the supervisor answers with keeps its class, and its text is
// not given the class's words a second time.
func TestAnswerErrorKeepsClassOnce(t *testing.T) {
	c := &client{sc: bufio.NewScanner(strings.NewReader(`{"error":"container x is paused: failed precondition","kind":"failed_precondition"}` + "\n"))}
	_, err := c.next()
	if !errdefs.IsFailedPrecondition(err) || err.Error() != "container x is paused: failed precondition" {
		t.Errorf("got %q (failed precondition: %v)", err, errdefs.IsFailedPrecondition(err))
	}
}
