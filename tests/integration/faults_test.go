package integration

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hull-runtime/hull/internal/state"
)

// startSleeper creates and starts a container that sleeps, and returns its
// recorded state.
func startSleeper(t *testing.T, e *cliEnv, id string) *state.State {
	t.Helper()
	bundle := busyboxBundle(t)
	writeSpec(t, bundle, busyboxSpec("sleep", "1000"))
	return startBundle(t, e, id, bundle)
}

// startBundle creates and starts a container from bundle, and returns its
// recorded state, which must name the supervisor, QEMU and virtiofsd.
func startBundle(t *testing.T, e *cliEnv, id, bundle string) *state.State {
	t.Helper()
	if _, errOut, code := e.hull("create", "--bundle", bundle, id); code != 0 {
		t.Fatalf("create: %s", errOut)
	}
	if _, errOut, code := e.hull("start", id); code != 0 {
		t.Fatalf("start: %s", errOut)
	}
	store, err := state.Open(e.root)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Read(id)
	if err != nil {
		t.Fatal(err)
	}
	if st.QEMU == 0 || st.Virtiofsd == 0 || st.Supervisor == 0 {
		t.Fatalf("state lacks pids: %+v", st)
	}
	return st
}

func waitGone(t *testing.T, what string, pid int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("%s (pid %d) still running", what, pid)
}

// alive is false for a process that is gone or a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z'
}

// QEMU killed under a running container: the supervisor notices, cleans up
// and exits; the container reads as stopped; delete removes the rest.
func TestQEMUKilledUnderContainer(t *testing.T) {
	e := newCLIEnv(t)
	st := startSleeper(t, e, "victim")
	if err := syscall.Kill(st.QEMU, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, "supervisor", st.Supervisor)
	waitGone(t, "virtiofsd", st.Virtiofsd)
	if s := e.state("victim"); s["status"] != "stopped" {
		t.Errorf("after QEMU died: %v", s)
	}
	mounts, _ := os.ReadFile("/proc/mounts")
	if strings.Contains(string(mounts), e.root) {
		t.Errorf("mounts left under %s after the supervisor cleaned up", e.root)
	}
	if _, errOut, code := e.hull("delete", "victim"); code != 0 {
		t.Fatalf("delete: %s", errOut)
	}
}

// The supervisor killed: delete --force removes QEMU, virtiofsd, mounts
// and state.
func TestSupervisorKilled(t *testing.T) {
	e := newCLIEnv(t)
	st := startSleeper(t, e, "orphan")
	if err := syscall.Kill(st.Supervisor, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, "supervisor", st.Supervisor)
	if s := e.state("orphan"); s["status"] != "stopped" {
		t.Errorf("after the supervisor died: %v", s)
	}
	if _, errOut, code := e.hull("delete", "--force", "orphan"); code != 0 {
		t.Fatalf("delete --force: %s", errOut)
	}
	waitGone(t, "qemu", st.QEMU)
	waitGone(t, "virtiofsd", st.Virtiofsd)
	if _, err := os.Stat(filepath.Join(e.root, "orphan")); !os.IsNotExist(err) {
		t.Errorf("state directory left: %v", err)
	}
}

func TestCLIExec(t *testing.T) {
	e := newCLIEnv(t)
	startSleeper(t, e, "host")
	out, errOut, code := e.hull("exec", "host", "sh", "-c", "echo in-exec; echo exec-err >&2; exit 6")
	if code != 6 || out != "in-exec\n" || !strings.Contains(errOut, "exec-err") {
		t.Errorf("exec: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// runc's exec flags: accepted where they mean something in a VM,
	// refused by name where they cannot.
	if out, errOut, code := e.hull("exec", "--ignore-paused", "host", "echo", "ok"); code != 0 || out != "ok\n" {
		t.Errorf("exec --ignore-paused: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	for _, flags := range [][]string{{"--preserve-fds", "1"}, {"--cgroup", "sub"}} {
		args := append(append([]string{"exec"}, flags...), "host", "true")
		if _, errOut, code := e.hull(args...); code == 0 || !strings.Contains(errOut, flags[0]) || !strings.Contains(errOut, "not implemented") {
			t.Errorf("exec %v: exit %d, %q; want a refusal naming the flag", flags, code, errOut)
		}
	}
	out, _, code = e.hull("ps", "--format", "json", "host")
	if code != 0 || !strings.HasPrefix(out, "[") {
		t.Errorf("ps: exit %d, %q", code, out)
	}
	// The table has ps -ef's columns, as runc's, with the guest's pids.
	out, _, code = e.hull("ps", "host")
	if lines := strings.Split(out, "\n"); code != 0 || lines[0] != "UID        PID  PPID  C STIME TTY          TIME CMD" || !strings.Contains(out, " sleep 1000\n") || !strings.HasPrefix(lines[1], "root ") {
		t.Errorf("ps table: exit %d, %q", code, out)
	}
	if _, errOut, code := e.hull("delete", "host"); code == 0 || !strings.Contains(errOut, "running") {
		t.Errorf("delete of a running container without --force: exit %d, %q", code, errOut)
	}
	if _, errOut, code := e.hull("kill", "host", "KILL"); code != 0 {
		t.Fatalf("kill: %s", errOut)
	}
	deadline := time.Now().Add(30 * time.Second)
	for e.state("host")["status"] != "stopped" && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if _, errOut, code := e.hull("exec", "host", "true"); code == 0 || !strings.Contains(errOut, "stopped") {
		t.Errorf("exec into a stopped container: exit %d, %q", code, errOut)
	}
	if _, errOut, code := e.hull("delete", "host"); code != 0 {
		t.Fatalf("delete: %s", errOut)
	}
}

func TestCLIDuplicateID(t *testing.T) {
	e := newCLIEnv(t)
	startSleeper(t, e, "twice")
	bundle := busyboxBundle(t)
	writeSpec(t, bundle, busyboxSpec("true"))
	if _, errOut, code := e.hull("create", "--bundle", bundle, "twice"); code == 0 || !strings.Contains(errOut, "already exists") {
		t.Errorf("duplicate id: exit %d, %q", code, errOut)
	}
	if _, errOut, code := e.hull("delete", "--force", "twice"); code != 0 {
		t.Fatalf("delete --force: %s", errOut)
	}
}

// A supervisor that died while its state file was already gone (a crash
// in the middle of a delete): delete --force still finds the directory and
// removes the mounts, processes and files left in it.
func TestForceDeleteWithoutState(t *testing.T) {
	e := newCLIEnv(t)
	st := startSleeper(t, e, "halfgone")
	if err := syscall.Kill(st.Supervisor, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, "supervisor", st.Supervisor)
	if err := os.Remove(filepath.Join(e.root, "halfgone", "state.json")); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := e.hull("delete", "--force", "halfgone"); code != 0 {
		t.Fatalf("delete --force: %s", errOut)
	}
	waitGone(t, "qemu", st.QEMU)
}

// A created container that kill stopped reads as stopped as soon as kill
// returns, so a delete right after (no --force) removes it; before the
// kill, that delete is refused, as the runtime spec says.
func TestDeleteCreated(t *testing.T) {
	e := newCLIEnv(t)
	bundle := busyboxBundle(t)
	writeSpec(t, bundle, busyboxSpec("sleep", "1000"))
	if _, errOut, code := e.hull("create", "--bundle", bundle, "killed"); code != 0 {
		t.Fatalf("create: %s", errOut)
	}
	if _, errOut, code := e.hull("delete", "killed"); code == 0 || !strings.Contains(errOut, "created") {
		t.Errorf("delete of a created container without --force: exit %d, %q", code, errOut)
	}
	if _, errOut, code := e.hull("kill", "killed", "KILL"); code != 0 {
		t.Fatalf("kill: %s", errOut)
	}
	if s := e.state("killed"); s["status"] != "stopped" {
		t.Errorf("right after kill of a created container: %v", s["status"])
	}
	if _, errOut, code := e.hull("delete", "killed"); code != 0 {
		t.Fatalf("delete: exit %d, %s", code, errOut)
	}
	e.assertClean()
}

// `hull run` whose supervisor (the state's pid) is killed by a signal
// exits as a shell reports a process killed by it, 128+n, and the
// container is cleaned up.
func TestRunSupervisorKilled(t *testing.T) {
	e := newCLIEnv(t)
	bundle := busyboxBundle(t)
	writeSpec(t, bundle, busyboxSpec("sleep", "1000"))
	cmd := exec.Command(hullBin, "--root", e.root, "--config", e.config, "run", "--bundle", bundle, "runner")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	store, err := state.Open(e.root)
	if err != nil {
		t.Fatal(err)
	}
	var st *state.State
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if st, err = store.Read("runner"); err == nil && st.Status == state.Running {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st == nil || st.Status != state.Running {
		t.Fatalf("the container did not start: %+v, %v", st, err)
	}
	if err := syscall.Kill(st.Supervisor, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 128+int(syscall.SIGKILL) {
		t.Errorf("hull run after its supervisor was killed: %v, want exit status 137", err)
	}
	waitGone(t, "qemu", st.QEMU)
	e.assertClean()
}

// The command that creates a container killed while the VM boots: nobody
// learns that the container exists, so its supervisor removes it once
// the VM is up instead of leaving it running unmanaged.
func TestCreateKilledWhileBooting(t *testing.T) {
	e := newCLIEnv(t)
	bundle := busyboxBundle(t)
	writeSpec(t, bundle, busyboxSpec("sleep", "1000"))
	cmd := exec.Command(hullBin, "--root", e.root, "--config", e.config, "create", "--bundle", bundle, "unwanted")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	store, err := state.Open(e.root)
	if err != nil {
		t.Fatal(err)
	}
	var st *state.State
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if st, err = store.Read("unwanted"); err == nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st == nil || st.Status != state.Creating {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("not caught while creating: %+v, %v", st, err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	waitGone(t, "supervisor", st.Supervisor)
	e.assertClean()
}

// exec with a pid file that cannot be written fails, as runc's does, and
// the process does not go on without its caller.
func TestExecPidFileUnwritable(t *testing.T) {
	e := newCLIEnv(t)
	bundle := busyboxBundle(t)
	spec := busyboxSpec("sleep", "1000")
	spec.Root.Readonly = false // for the marker, which tells that the exec ran on
	writeSpec(t, bundle, spec)
	startBundle(t, e, "pidless", bundle)
	marker := "/tmp/hull-exec-ran"
	if _, errOut, code := e.hull("exec", "pidless", "sh", "-c", "touch "+marker+".probe"); code != 0 {
		t.Fatalf("the container's /tmp is not writable: %s", errOut)
	}
	_, errOut, code := e.hull("exec", "--pid-file", filepath.Join(t.TempDir(), "missing", "pid"), "pidless",
		"sh", "-c", "sleep 3; touch "+marker)
	if code == 0 || !strings.Contains(errOut, "--pid-file") {
		t.Errorf("exec with an unwritable pid file: exit %d, %q", code, errOut)
	}
	time.Sleep(4 * time.Second)
	if _, errOut, code := e.hull("exec", "pidless", "sh", "-c", "[ ! -e "+marker+" ]"); code != 0 {
		t.Errorf("the exec ran on after its caller failed: %s", errOut)
	}
	if _, errOut, code := e.hull("delete", "--force", "pidless"); code != 0 {
		t.Fatalf("delete --force: %s", errOut)
	}
}
