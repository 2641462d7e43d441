package shim

import (
	"context"
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types/task"
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

// The init's TaskExit comes after those of its running execs (their exits
// follow the init's when its pid namespace ends), as runc's shim orders
// them: clients take the init's exit for the container's last event.
func TestInitExitAfterExecExits(t *testing.T) {
	s := &service{events: make(chan event, 128), containers: map[string]*container{}}
	c := &container{id: "c", execs: map[string]*process{}}
	c.init = newProcess("c", "", stdioPaths{}, nil)
	e := newProcess("c", "e", stdioPaths{}, nil)
	e.status = task.Status_RUNNING
	c.execs["e"] = e
	s.containers["c"] = c

	s.exited(c, c.init, 137, time.Now())
	select {
	case ev := <-s.events:
		t.Fatalf("sent %+v while an exec runs", ev.msg)
	default:
	}
	s.exited(c, e, 137, time.Now())
	var ids []string
	for len(ids) < 2 {
		select {
		case ev := <-s.events:
			ids = append(ids, ev.msg.(*eventstypes.TaskExit).ID)
		case <-time.After(5 * time.Second):
			t.Fatalf("exits sent: %v", ids)
		}
	}
	if ids[0] != "e" || ids[1] != "c" {
		t.Errorf("exits in the order %v, want the exec's, then the init's", ids)
	}

	// Without running execs the init's exit goes at once.
	c2 := &container{id: "c2", execs: map[string]*process{}}
	c2.init = newProcess("c2", "", stdioPaths{}, nil)
	s.exited(c2, c2.init, 0, time.Now())
	select {
	case ev := <-s.events:
		if id := ev.msg.(*eventstypes.TaskExit).ID; id != "c2" {
			t.Errorf("sent the exit of %q", id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the init's exit was held with no exec running")
	}
}
