package integration

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// deleteAtEnd force-deletes container id when the test ends, whatever
// happened (t.Context is done by then, so not through e.hull).
func (e *cliEnv) deleteAtEnd(id string) {
	e.t.Cleanup(func() {
		exec.Command(hullBin, "--root", e.root, "--config", e.config, "delete", "--force", id).Run()
	})
}

// consoleSocket listens as conmon does on a console socket and hands over
// the pty master that the runtime sends (SCM_RIGHTS).
func consoleSocket(t *testing.T) (string, <-chan *os.File) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "console.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ch := make(chan *os.File, 1)
	go func() {
		defer close(ch)
		conn, err := l.AcceptUnix()
		if err != nil {
			return
		}
		defer conn.Close()
		buf := make([]byte, 4096)
		oob := make([]byte, unix.CmsgSpace(4))
		n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		if err != nil {
			t.Errorf("console socket: %v", err)
			return
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			t.Errorf("console socket: control messages %v %v", msgs, err)
			return
		}
		fds, err := unix.ParseUnixRights(&msgs[0])
		if err != nil || len(fds) != 1 {
			t.Errorf("console socket: fds %v %v", fds, err)
			return
		}
		ch <- os.NewFile(uintptr(fds[0]), string(buf[:n]))
	}()
	return path, ch
}

func recvMaster(t *testing.T, ch <-chan *os.File) *os.File {
	t.Helper()
	select {
	case m := <-ch:
		if m == nil {
			t.Fatal("no pty master on the console socket")
		}
		t.Cleanup(func() { m.Close() })
		return m
	case <-time.After(2 * time.Minute):
		t.Fatal("no pty master on the console socket")
	}
	return nil
}

// ttyOutput collects what a pty master reads until the slave is gone.
type ttyOutput struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	done chan struct{}
}

func readTTY(f *os.File) *ttyOutput {
	o := &ttyOutput{done: make(chan struct{})}
	go func() {
		defer close(o.done)
		b := make([]byte, 4096)
		for {
			n, err := f.Read(b)
			o.mu.Lock()
			o.buf.Write(b[:n])
			o.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return o
}

func (o *ttyOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// waitFor waits until the output holds s; each poll runs poke first, if
// given (to ask the container again).
func (o *ttyOutput) waitFor(t *testing.T, s string, d time.Duration, poke func()) bool {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if strings.Contains(o.String(), s) {
			return true
		}
		if poke != nil {
			poke()
		}
		time.Sleep(500 * time.Millisecond)
	}
	return strings.Contains(o.String(), s)
}

func (o *ttyOutput) waitEnd(t *testing.T) {
	t.Helper()
	select {
	case <-o.done:
	case <-time.After(time.Minute):
		t.Errorf("the pty master did not end; output %q", o.String())
	}
}

func setSize(t *testing.T, f *os.File, rows, cols uint16) {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) {
		err = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	})
	if err != nil {
		t.Fatalf("TIOCSWINSZ: %v", err)
	}
}

// subreaper makes this test the parent of the supervisors that `hull
// create` leaves behind, as conmon is, so that it can wait for their exit
// status; pids lists those to reap at the end, whatever happened.
func subreaper(t *testing.T) *[]int {
	t.Helper()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	var pids []int
	t.Cleanup(func() {
		unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
		for _, pid := range pids {
			for range 100 {
				var ws unix.WaitStatus
				if n, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); n == pid || err != nil {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	})
	return &pids
}

func pidOf(t *testing.T, pidFile string) int {
	t.Helper()
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	for _, c := range strings.TrimSpace(string(b)) {
		pid = pid*10 + int(c-'0')
	}
	return pid
}

// waitExit waits for the supervisor (a child of the subreaper) and
// returns its exit status, the container's.
func waitExit(t *testing.T, pid int) int {
	t.Helper()
	got := make(chan int, 1)
	go func() {
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil {
			t.Errorf("wait4 %d: %v", pid, err)
			got <- -1
			return
		}
		got <- ws.ExitStatus()
	}()
	select {
	case s := <-got:
		return s
	case <-time.After(2 * time.Minute):
		t.Fatalf("supervisor %d did not exit", pid)
	}
	return -1
}

func TestTTYCreateConsoleSocket(t *testing.T) {
	e := newCLIEnv(t)
	reap := subreaper(t)
	bundle := busyboxBundle(t)
	spec := busyboxSpec("sh", "-c", "stty size; tty; exit 4")
	spec.Process.Terminal = true
	writeSpec(t, bundle, spec)
	sock, masters := consoleSocket(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	e.deleteAtEnd("tty")
	if out, errOut, code := e.hull("create", "--bundle", bundle, "--console-socket", sock, "--pid-file", pidFile, "tty"); code != 0 {
		t.Fatalf("create: %d %s %s", code, out, errOut)
	}
	pid := pidOf(t, pidFile)
	*reap = append(*reap, pid)
	master := recvMaster(t, masters)
	// The size set before start is the one the process starts with.
	setSize(t, master, 40, 100)
	out := readTTY(master)
	if _, errOut, code := e.hull("start", "tty"); code != 0 {
		t.Fatalf("start: %s", errOut)
	}
	if status := waitExit(t, pid); status != 4 {
		t.Errorf("exit status %d, want 4", status)
	}
	out.waitEnd(t)
	if s := out.String(); !strings.Contains(s, "40 100") || !strings.Contains(s, "/dev/pts/") {
		t.Errorf("terminal output %q, want the size 40 100 and a /dev/pts path", s)
	}
	if st := e.state("tty"); st["status"] != "stopped" {
		t.Errorf("after exit: %v", st)
	}
	if _, errOut, code := e.hull("delete", "tty"); code != 0 {
		t.Fatalf("delete: %s", errOut)
	}
}

func TestTTYResizeWhileRunning(t *testing.T) {
	e := newCLIEnv(t)
	reap := subreaper(t)
	bundle := busyboxBundle(t)
	// Every line in prints the size; end of input (^D) ends it.
	spec := busyboxSpec("sh", "-c", "while read x; do stty size; done; exit 6")
	spec.Process.Terminal = true
	writeSpec(t, bundle, spec)
	sock, masters := consoleSocket(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	e.deleteAtEnd("resize")
	if out, errOut, code := e.hull("run", "--detach", "--bundle", bundle, "--console-socket", sock, "--pid-file", pidFile, "resize"); code != 0 {
		t.Fatalf("run --detach: %d %s %s", code, out, errOut)
	}
	pid := pidOf(t, pidFile)
	*reap = append(*reap, pid)
	master := recvMaster(t, masters)
	out := readTTY(master)
	setSize(t, master, 50, 120)
	if !out.waitFor(t, "50 120", time.Minute, func() { master.Write([]byte("x\n")) }) {
		t.Fatalf("no size 50 120 after a resize; output %q", out.String())
	}
	// The guest's terminal echoes, the host's pty is raw: one echo each.
	if strings.Contains(out.String(), "xx") {
		t.Errorf("input echoed twice: %q", out.String())
	}
	master.Write([]byte{4}) // ^D: end of input
	if status := waitExit(t, pid); status != 6 {
		t.Errorf("exit status %d, want 6; output %q", status, out.String())
	}
	if _, errOut, code := e.hull("delete", "resize"); code != 0 {
		t.Fatalf("delete: %s", errOut)
	}
}

// openPty opens a pty pair for a test that plays the user's terminal.
func openPty(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	var n uint32
	rc, _ := m.SyscallConn()
	rc.Control(func(fd uintptr) {
		if err = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); err == nil {
			n, err = unix.IoctlGetUint32(int(fd), unix.TIOCGPTN)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile("/dev/pts/"+itoa(int(n)), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func termios(t *testing.T, f *os.File) unix.Termios {
	t.Helper()
	var tio *unix.Termios
	var err error
	rc, _ := f.SyscallConn()
	rc.Control(func(fd uintptr) { tio, err = unix.IoctlGetTermios(int(fd), unix.TCGETS) })
	if err != nil {
		t.Fatal(err)
	}
	return *tio
}

// TestTTYRunForeground runs `hull run` as a user would in a terminal: the
// container gets the caller's terminal, and the caller's settings are back
// afterwards.
func TestTTYRunForeground(t *testing.T) {
	e := newCLIEnv(t)
	bundle := busyboxBundle(t)
	spec := busyboxSpec("sh", "-c", "stty size; echo hello-tty; exit 2")
	spec.Process.Terminal = true
	writeSpec(t, bundle, spec)
	master, slave := openPty(t)
	setSize(t, master, 33, 77)
	before := termios(t, slave)
	if before.Lflag&unix.ECHO == 0 || before.Lflag&unix.ICANON == 0 {
		t.Fatalf("a fresh pty is not cooked: %+v", before)
	}
	out := readTTY(master)
	cmd := exec.Command(hullBin, "--root", e.root, "--config", e.config, "run", "--bundle", bundle, "fg")
	cmd.Stdin, cmd.Stdout = slave, slave
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	// Its own session with the pty as its terminal, as a shell gives it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatalf("hull run did not end; output %q", out.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != 2 {
		t.Errorf("exit status %d, want 2 (stderr %q)", code, stderr.String())
	}
	if !out.waitFor(t, "hello-tty", 10*time.Second, nil) {
		t.Errorf("terminal output %q, want hello-tty", out.String())
	}
	if !strings.Contains(out.String(), "33 77") {
		t.Errorf("terminal output %q, want the caller's size 33 77", out.String())
	}
	after := termios(t, slave)
	if after.Lflag != before.Lflag || after.Iflag != before.Iflag || after.Oflag != before.Oflag {
		t.Errorf("terminal settings not restored: before %+v after %+v", before, after)
	}
	// run deletes the container once it exited, as runc's does.
	if _, _, code := e.hull("state", "fg"); code == 0 {
		t.Error("state of the foreground container after run")
	}
}

func TestTTYExecConsoleSocket(t *testing.T) {
	e := newCLIEnv(t)
	bundle := busyboxBundle(t)
	writeSpec(t, bundle, busyboxSpec("sleep", "100"))
	e.deleteAtEnd("ex")
	if _, errOut, code := e.hull("run", "--detach", "--bundle", bundle, "ex"); code != 0 {
		t.Fatalf("run --detach: %s", errOut)
	}
	// Not in a terminal and no console socket: refused.
	if _, errOut, code := e.hull("exec", "-t", "ex", "true"); code == 0 || !strings.Contains(errOut, "--console-socket") {
		t.Errorf("exec -t without a terminal: %d %q", code, errOut)
	}
	sock, masters := consoleSocket(t)
	type result struct {
		out, errOut string
		code        int
	}
	res := make(chan result, 1)
	go func() {
		o, eo, c := e.hull("exec", "-t", "--console-socket", sock, "ex", "sh", "-c", "while read x; do stty size; done; tty; exit 3")
		res <- result{o, eo, c}
	}()
	master := recvMaster(t, masters)
	out := readTTY(master)
	setSize(t, master, 30, 90)
	if !out.waitFor(t, "30 90", time.Minute, func() { master.Write([]byte("x\n")) }) {
		t.Fatalf("no size 30 90 in the exec's terminal; output %q", out.String())
	}
	// waitExit waits for the exec of res to end with status want.
	waitExit := func(want int, what string) {
		t.Helper()
		select {
		case r := <-res:
			if r.code != want {
				t.Errorf("%s: exit %d, want %d (%q)", what, r.code, want, r.errOut)
			}
		case <-time.After(2 * time.Minute):
			t.Fatalf("%s did not end", what)
		}
	}
	master.Write([]byte{4})
	waitExit(3, "exec")
	out.waitEnd(t)
	if s := out.String(); !strings.Contains(s, "/dev/pts/") {
		t.Errorf("exec terminal output %q, want a /dev/pts path", s)
	}

	// Closing the master hangs the terminal up: the process gets SIGHUP,
	// as on the host (an interactive shell would wait for ever).
	sock2, masters2 := consoleSocket(t)
	go func() {
		o, eo, c := e.hull("exec", "-t", "--console-socket", sock2, "ex", "sh", "-c", "echo ready; while :; do sleep 1; done")
		res <- result{o, eo, c}
	}()
	master = recvMaster(t, masters2)
	out = readTTY(master)
	if !out.waitFor(t, "ready", time.Minute, func() {}) {
		t.Fatalf("the second exec never ran; output %q", out.String())
	}
	master.Close()
	waitExit(129, "exec whose master closed (SIGHUP)")
	// In the foreground in a terminal, exec -t gives the process the
	// caller's terminal and size.
	ptyM, ptyS := openPty(t)
	setSize(t, ptyM, 20, 60)
	fgOut := readTTY(ptyM)
	cmd := exec.Command(hullBin, "--root", e.root, "--config", e.config, "exec", "-t", "ex", "sh", "-c", "stty size; echo exec-fg; exit 5")
	cmd.Stdin, cmd.Stdout = ptyS, ptyS
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		if code := cmd.ProcessState.ExitCode(); code != 5 {
			t.Errorf("foreground exec -t: exit status %d, want 5 (stderr %q)", code, stderr.String())
		}
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		<-done
		t.Errorf("foreground exec -t did not end; output %q", fgOut.String())
	}
	if !fgOut.waitFor(t, "exec-fg", 10*time.Second, nil) || !strings.Contains(fgOut.String(), "20 60") {
		t.Errorf("foreground exec -t output %q, want the size 20 60 and exec-fg", fgOut.String())
	}
	t.Logf("console-socket exec output %q; foreground exec output %q", out.String(), fgOut.String())

	if _, errOut, code := e.hull("kill", "ex", "KILL"); code != 0 {
		t.Fatalf("kill: %s", errOut)
	}
	deadline := time.Now().Add(30 * time.Second)
	for e.state("ex")["status"] != "stopped" && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if _, errOut, code := e.hull("delete", "ex"); code != 0 {
		t.Fatalf("delete: %s", errOut)
	}
}

// TestTTYNeedsConsoleSocket: a terminal needs a console socket (or, for
// run in the foreground, the caller's terminal); without one nothing is
// created.
func TestTTYNeedsConsoleSocket(t *testing.T) {
	e := newCLIEnv(t)
	bundle := busyboxBundle(t)
	spec := busyboxSpec("true")
	spec.Process.Terminal = true
	writeSpec(t, bundle, spec)
	for _, args := range [][]string{
		{"create", "--bundle", bundle, "nosock"},
		{"run", "--bundle", bundle, "nosock"},
		{"run", "--detach", "--bundle", bundle, "nosock"},
	} {
		if _, errOut, code := e.hull(args...); code == 0 || !strings.Contains(errOut, "--console-socket") {
			t.Errorf("%v: %d %q, want an error naming --console-socket", args, code, errOut)
		}
	}
	// A console socket without a terminal is refused too, as runc does.
	writeSpec(t, bundle, busyboxSpec("true"))
	if _, errOut, code := e.hull("create", "--bundle", bundle, "--console-socket", filepath.Join(t.TempDir(), "s"), "nosock"); code == 0 || !strings.Contains(errOut, "--console-socket") {
		t.Errorf("console socket without a terminal: %d %q", code, errOut)
	}
}

// As runc, `run` of a terminal process takes the caller's terminal from
// stdout (or stderr, or /dev/tty) when stdin is redirected.
func TestTTYRunForegroundStdinRedirected(t *testing.T) {
	e := newCLIEnv(t)
	bundle := busyboxBundle(t)
	spec := busyboxSpec("sh", "-c", "stty size; echo hello-tty; exit 3")
	spec.Process.Terminal = true
	writeSpec(t, bundle, spec)
	master, slave := openPty(t)
	setSize(t, master, 21, 61)
	out := readTTY(master)
	cmd := exec.Command(hullBin, "--root", e.root, "--config", e.config, "run", "--bundle", bundle, "fgpipe")
	cmd.Stdin = strings.NewReader("")
	cmd.Stdout = slave
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 1}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatalf("hull run did not end; output %q", out.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != 3 {
		t.Errorf("exit status %d, want 3 (stderr %q)", code, stderr.String())
	}
	if !out.waitFor(t, "hello-tty", 10*time.Second, nil) || !strings.Contains(out.String(), "21 61") {
		t.Errorf("terminal output %q, want hello-tty and the size 21 61 of stdout's terminal", out.String())
	}
}
