package shim

import (
	"context"
	"testing"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
)

// Wait on an exec that was deleted before it started returns, as runc's
// does: CRI waits on execs without a deadline.
func TestWaitOnDeletedCreatedExec(t *testing.T) {
	s := &service{events: make(chan event, 128), containers: map[string]*container{}}
	c := &container{id: "c", execs: map[string]*process{}}
	c.init = newProcess("c", "", stdioPaths{}, nil)
	e := newProcess("c", "e", stdioPaths{}, nil)
	c.execs["e"] = e
	s.containers["c"] = c
	done := make(chan error, 1)
	go func() {
		_, err := s.Wait(context.Background(), &taskAPI.WaitRequest{ID: "c", ExecID: "e"})
		done <- err
	}()
	time.Sleep(100 * time.Millisecond) // let Wait find the exec first
	if _, err := s.Delete(context.Background(), &taskAPI.DeleteRequest{ID: "c", ExecID: "e"}); err != nil {
		t.Fatal(err)
	}
	if !e.hasExited() {
		t.Error("a deleted exec that never started is not over")
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Wait still blocked after the created exec was deleted")
	}
}
