package agentclient

import (
	"context"
	"net"
	"testing"
	"time"
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
