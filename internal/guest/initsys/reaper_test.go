package initsys

import (
	"os/exec"
	"testing"
	"time"
)

func TestReaperStartWait(t *testing.T) {
	r := StartReaper()
	defer r.Stop()

	for _, tc := range []struct {
		script string
		want   int
	}{
		{"exit 0", 0},
		{"exit 3", 3},
		{"kill -9 $$", 128 + 9},
	} {
		cmd := exec.Command("/bin/sh", "-c", tc.script)
		s, err := r.Start(cmd)
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.Wait(cmd, s)
		if err != nil || got != tc.want {
			t.Errorf("%q: status %d, %v; want %d", tc.script, got, err, tc.want)
		}
	}
}

// An orphan's exit, and exits nobody asked for, must not stall the reaper
// or a subscriber that waits for its own child.
func TestReaperFanOut(t *testing.T) {
	r := StartReaper()
	defer r.Stop()

	idle := r.Subscribe() // never reads: Close must unblock the reaper
	all := r.Subscribe()
	defer all.Close()

	var pids []int
	for i := 0; i < 40; i++ {
		cmd := exec.Command("/bin/true")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pids = append(pids, cmd.Process.Pid)
	}
	time.AfterFunc(50*time.Millisecond, idle.Close)

	seen := map[int]bool{}
	timeout := time.After(10 * time.Second)
	for len(seen) < len(pids) {
		select {
		case e := <-all.C:
			if e.Status != 0 {
				t.Errorf("pid %d status %d", e.Pid, e.Status)
			}
			seen[e.Pid] = true
		case <-timeout:
			t.Fatalf("saw %d of %d exits", len(seen), len(pids))
		}
	}
	for _, p := range pids {
		if !seen[p] {
			t.Errorf("exit of %d not seen", p)
		}
	}
}
