package agentclient

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// A guest that stops reading its end must not hold a call past the
// client's bound, nor the calls after it: ttrpc writes under a lock and
// heeds no context while it writes.
func TestCallBoundedWhenGuestStopsReading(t *testing.T) {
	host, guest := net.Pipe() // unbuffered: a write waits for a read
	defer guest.Close()
	c := New(host, 200*time.Millisecond)
	defer c.Close()
	for i := 0; i < 2; i++ {
		done := make(chan error, 1)
		go func() {
			_, err := c.Version(context.Background())
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("a call to a guest that reads nothing succeeded")
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("call %d still blocked 5 s after its 200 ms bound", i)
		}
	}
}

// countHook counts the log entries at error level.
type countHook struct{ n atomic.Int64 }

func (h *countHook) Levels() []logrus.Level { return []logrus.Level{logrus.ErrorLevel} }
func (h *countHook) Fire(*logrus.Entry) error {
	h.n.Add(1)
	return nil
}

// Frames from the agent that answer no pending request end the
// connection at the first: ttRPC's client would log an error for each and
// read on, and a guest could fill the host's logs ten bytes a line.
func TestAgentFramesEndAtAStrayAnswer(t *testing.T) {
	hook := &countHook{}
	logrus.AddHook(hook)
	defer logrus.StandardLogger().ReplaceHooks(logrus.LevelHooks{})
	host, guest := net.Pipe()
	defer guest.Close()
	c := New(host, time.Second)
	defer c.Close()
	go func() {
		// 1000 answers on stream 99, which the host never opened.
		frame := []byte{0, 0, 0, 0, 0, 0, 0, 99, 2, 0}
		for i := 0; i < 1000; i++ {
			if _, err := guest.Write(frame); err != nil {
				return
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	if _, err := c.Version(context.Background()); err == nil {
		t.Fatal("a call over a connection the agent broke succeeded")
	}
	if n := hook.n.Load(); n > 10 {
		t.Errorf("%d error lines logged for the stray answers", n)
	}
}
