package integration

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// `hull run ... | head -1`: the reader goes away while the container
// writes. As on the host (and with runc), the container's writer gets
// SIGPIPE, and the container goes on to its own end; the supervisor must
// not die of the SIGPIPE itself and skip the teardown.
func TestCLIRunReaderGone(t *testing.T) {
	e := newCLIEnv(t)
	bundle := busyboxBundle(t)
	// Not yes as the container's PID 1, which the kernel spares the
	// SIGPIPE (as with runc): a child of it. The shell goes on, so that
	// its own exit status (7) tells a container that ended by itself from
	// a supervisor killed by the SIGPIPE (141 too).
	writeSpec(t, bundle, busyboxSpec("sh", "-c", "busybox yes; echo yes ended $? >&2; exit 7"))
	errFile, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer errFile.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(hullBin, "--root", e.root, "--config", e.config, "run", "--bundle", bundle, "yes")
	cmd.Stdout, cmd.Stderr = w, errFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil || line != "y\n" {
		t.Errorf("first line %q, %v", line, err)
	}
	r.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		e.hull("delete", "--force", "yes")
		t.Fatal("hull run still runs 60 s after its stdout's reader went away")
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 7 {
		t.Errorf("hull run: %v, want the container's exit status 7", err)
	}
	if b, _ := os.ReadFile(errFile.Name()); !strings.Contains(string(b), "yes ended 141") {
		t.Errorf("stderr %q: the writer did not end by SIGPIPE", b)
	}
	e.assertClean()
}

// An exec that leaves a process behind holding its stdout, writing now
// and then: the exec's status comes back at once, as with runc, not after
// the leftover ends (it never does here).
func TestCLIExecLeftoverWriter(t *testing.T) {
	e := newCLIEnv(t)
	startSleeper(t, e, "bg")
	start := time.Now()
	out, errOut, code := e.hull("exec", "bg", "sh", "-c", "(while :; do echo tick; sleep 0.1; done) & echo started; exit 3")
	took := time.Since(start)
	if code != 3 || !strings.HasPrefix(out, "started\n") {
		t.Errorf("exec: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// The exec itself takes well under a second even under TCG; the
	// host's own bound on waiting for output is 10 s.
	if took > 8*time.Second {
		t.Errorf("exec returned after %v: it waited for the leftover", took)
	}
	if _, errOut, code := e.hull("delete", "--force", "bg"); code != 0 {
		t.Fatalf("delete --force: %s", errOut)
	}
	e.assertClean()
}
