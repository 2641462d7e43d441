package state

import (
	"errors"
	"os"
	"os/exec"
	"testing"

	"github.com/containerd/errdefs"
)

func TestLifecycle(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h, err := s.Create("c1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create("c1"); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("duplicate id: %v", err)
	}
	start, _ := StartTime(os.Getpid())
	if err := h.Save(&State{ID: "c1", Status: Running, Supervisor: os.Getpid(), SupervisorStart: start}); err != nil {
		t.Fatal(err)
	}
	st, err := s.Read("c1")
	if err != nil || st.Status != Running {
		t.Fatalf("read: %+v %v", st, err)
	}
	ids, _ := s.List()
	if len(ids) != 1 || ids[0] != "c1" {
		t.Fatalf("list %v", ids)
	}
	if err := h.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Read("c1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("read after remove: %v", err)
	}
}

func TestDeadSupervisorMeansStopped(t *testing.T) {
	s, _ := Open(t.TempDir())
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	h, _ := s.Create("gone")
	h.Save(&State{ID: "gone", Status: Running, Supervisor: cmd.Process.Pid, SupervisorStart: 12345})
	st, err := s.Read("gone")
	if err != nil || st.Status != Stopped {
		t.Fatalf("state of a container whose supervisor died: %+v %v", st, err)
	}
	// A live pid with another start time is a reused pid: stopped too.
	h.Save(&State{ID: "gone", Status: Running, Supervisor: os.Getpid(), SupervisorStart: 1})
	if st, _ := s.Read("gone"); st.Status != Stopped {
		t.Fatalf("reused pid taken for the supervisor: %+v", st)
	}
}

func TestInvalidIDs(t *testing.T) {
	s, _ := Open(t.TempDir())
	for _, id := range []string{"", "../x", "a/b", ".hidden", "a..b", "-x"} {
		if _, err := s.Create(id); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("id %q accepted: %v", id, err)
		}
	}
}
