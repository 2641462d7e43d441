package initsys

import (
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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

// A claimed child is left to its owner, who gets its status from its own
// wait; children nobody claimed are still reaped, once the owner is done.
func TestReaperClaim(t *testing.T) {
	r := StartReaper()
	defer r.Stop()
	all := r.Subscribe()
	defer all.Close()

	release := r.Hold()
	owned := exec.Command("/bin/sh", "-c", "exit 7")
	if err := owned.Start(); err != nil {
		t.Fatal(err)
	}
	unclaim := r.Claim(owned.Process.Pid)
	release()
	other := exec.Command("/bin/true")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // both have ended; the reaper has looked

	st, err := owned.Process.Wait()
	if err != nil || st.ExitCode() != 7 {
		t.Fatalf("owner's wait: %v, %v (the reaper took the status?)", st, err)
	}
	unclaim()
	waitExit(t, all, other.Process.Pid)
}

// While a hold is taken nothing is reaped; its release reaps what ended.
func TestReaperHold(t *testing.T) {
	r := StartReaper()
	defer r.Stop()
	all := r.Subscribe()
	defer all.Close()

	release := r.Hold()
	cmd := exec.Command("/bin/true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, cmd.Process.Pid, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil); err != nil || siginfoPid(&info) != cmd.Process.Pid {
		t.Fatalf("child reaped during a hold: %v", err)
	}
	release()
	waitExit(t, all, cmd.Process.Pid)
}

// Orphans that the kernel hands to the agent (a subreaper here, PID 1 in
// the VM) are reaped.
func TestReaperOrphans(t *testing.T) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Skip(err)
	}
	defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	r := StartReaper()
	defer r.Stop()
	all := r.Subscribe()
	defer all.Close()

	rd, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	cmd := exec.Command("/bin/sh", "-c", "sleep 0.2 >/dev/null & echo $!")
	cmd.Stdout = wr
	s, err := r.Start(cmd)
	wr.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Wait(cmd, s); err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(rd)
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	waitExit(t, all, pid)
}

func waitExit(t *testing.T, s *Subscription, pid int) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e := <-s.C:
			if e.Pid == pid {
				return
			}
		case <-timeout:
			t.Fatalf("exit of %d not reaped", pid)
		}
	}
}
