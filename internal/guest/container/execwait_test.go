package container

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// execLaterEnv makes the test binary act as a container's init: named as
// libcontainer names it, it executes sleep after 300 ms.
const execLaterEnv = "HULL_TEST_EXEC_LATER"

// exitInInitEnv makes the test binary end, named as the init, after
// 300 ms.
const exitInInitEnv = "HULL_TEST_EXIT_IN_INIT"

func TestMain(m *testing.M) {
	if os.Getenv(exitInInitEnv) != "" {
		os.WriteFile("/proc/self/comm", []byte(initComm), 0)
		time.Sleep(300 * time.Millisecond)
		os.Exit(1)
	}
	if os.Getenv(execLaterEnv) != "" {
		// /proc/self/comm names the thread group leader, which /proc/PID/stat
		// shows, whatever thread this goroutine runs on.
		os.WriteFile("/proc/self/comm", []byte(initComm), 0)
		time.Sleep(300 * time.Millisecond)
		sleep, _ := exec.LookPath("sleep")
		syscall.Exec(sleep, []string{"sleep", "5"}, os.Environ())
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		line  string
		comm  string
		state byte
	}{
		{"42 (runc:[2:INIT]) S 1 42 42 0 -1", initComm, 'S'},
		{"7 (a) b)) R 1 2", "a) b)", 'R'},
		{"9 (sh) Z 1", "sh", 'Z'},
	} {
		comm, state, err := parseStat([]byte(tc.line))
		if err != nil || comm != tc.comm || state != tc.state {
			t.Errorf("parseStat(%q) = %q, %q, %v; want %q, %q", tc.line, comm, state, err, tc.comm, tc.state)
		}
	}
	for _, bad := range []string{"", "1 (x", "1 x) S", "1 (x)"} {
		if _, _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q): no error", bad)
		}
	}
}

func TestWaitExec(t *testing.T) {
	// A process that runs a program other than the init's name.
	cmd := exec.Command("sleep", "5")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	execd, err := waitExec(cmd.Process.Pid, time.Second, time.Millisecond)
	if err != nil || !execd {
		t.Fatalf("waitExec(sleep) = %v, %v; want true", execd, err)
	}

	// A process named as libcontainer names the init, which executes its
	// program 300 ms later: the wait lasts until then.
	later := exec.Command(os.Args[0])
	later.Env = append(os.Environ(), execLaterEnv+"=1")
	if err := later.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { later.Process.Kill(); later.Wait() }()
	waitComm(t, later.Process.Pid, initComm)
	start := time.Now()
	execd, err = waitExec(later.Process.Pid, 5*time.Second, time.Millisecond)
	if err != nil || !execd || time.Since(start) < 100*time.Millisecond {
		t.Fatalf("waitExec(init) = %v, %v after %s; want true after the exec", execd, err, time.Since(start))
	}
	// And a limit that passes first is an error.
	stuck := exec.Command(os.Args[0])
	stuck.Env = append(os.Environ(), execLaterEnv+"=1")
	if err := stuck.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stuck.Process.Kill(); stuck.Wait() }()
	waitComm(t, stuck.Process.Pid, initComm)
	if _, err := waitExec(stuck.Process.Pid, 20*time.Millisecond, time.Millisecond); err == nil {
		t.Fatal("waitExec past its limit: no error")
	}

	// A program that ran and exited, unreaped: it ran (a zombie keeps its
	// name), however fast it was.
	done := exec.Command("true")
	if err := done.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	start = time.Now()
	execd, err = waitExec(done.Process.Pid, 5*time.Second, time.Millisecond)
	if err != nil || !execd || time.Since(start) > time.Second {
		t.Fatalf("waitExec(zombie of a program) = %v, %v after %s; want true, nil at once", execd, err, time.Since(start))
	}
	done.Wait()
	if execd, err := waitExec(done.Process.Pid, time.Second, time.Millisecond); !errors.Is(err, errInitGone) || execd {
		t.Fatalf("waitExec(reaped) = %v, %v; want false, errInitGone", execd, err)
	}
	// An init that ended before it ran the program (a startContainer hook
	// failed): false, no error.
	died := exec.Command(os.Args[0])
	died.Env = append(os.Environ(), exitInInitEnv+"=1")
	if err := died.Start(); err != nil {
		t.Fatal(err)
	}
	defer died.Wait()
	waitComm(t, died.Process.Pid, initComm)
	execd, err = waitExec(died.Process.Pid, 5*time.Second, time.Millisecond)
	if err != nil || execd {
		t.Fatalf("waitExec(init that ended) = %v, %v; want false, nil", execd, err)
	}
}

// waitComm waits until process pid is named comm.
func waitComm(t *testing.T, pid int, comm string) {
	t.Helper()
	for range 200 {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err == nil {
			if c, _, err := parseStat(data); err == nil && c == comm {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("process %d never named %q", pid, comm)
}
