package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// waitStatus polls `state` until the container has status, or fails.
func (e *cliEnv) waitStatus(id, status string) map[string]any {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		s := e.state(id)
		if s["status"] == status {
			return s
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s still %v, not %s, after 60 s", id, s["status"], status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A signal that ends a created container's init (not only KILL or TERM)
// leaves it stopped, as with runc.
func TestCLICreatedContainerKilledBySignal(t *testing.T) {
	e := newCLIEnv(t)
	bundle := busyboxBundle(t)
	writeSpec(t, bundle, busyboxSpec("sleep", "1000"))
	if _, errOut, code := e.hull("create", "--bundle", bundle, "hup"); code != 0 {
		t.Fatalf("create: %s", errOut)
	}
	if _, errOut, code := e.hull("kill", "hup", "HUP"); code != 0 {
		t.Fatalf("kill HUP: %s", errOut)
	}
	if s := e.waitStatus("hup", "stopped"); s["pid"] != float64(0) {
		t.Errorf("stopped with pid %v", s["pid"])
	}
	if _, errOut, code := e.hull("start", "hup"); code == 0 || !strings.Contains(errOut, "stopped") {
		t.Errorf("start of the stopped container: exit %d, %q", code, errOut)
	}
	if _, errOut, code := e.hull("delete", "hup"); code != 0 {
		t.Fatalf("delete: %s", errOut)
	}
}

// kill 0, kill --all and ps of a stopped container, the state's fields and
// the count of arguments, as runc has them.
func TestCLIRuncVerbsAndState(t *testing.T) {
	e := newCLIEnv(t)
	bundle := busyboxBundle(t)
	spec := busyboxSpec("sleep", "1000")
	spec.Version = "1.0.2"
	// The rootfs elsewhere than <bundle>/rootfs, by absolute path.
	rootfs := filepath.Join(filepath.Dir(bundle), filepath.Base(bundle)+"-rootfs")
	if err := os.Rename(filepath.Join(bundle, "rootfs"), rootfs); err != nil {
		t.Fatal(err)
	}
	spec.Root.Path = rootfs
	writeSpec(t, bundle, spec)
	startBundle(t, e, "v", bundle)

	out, errOut, code := e.hull("state", "v")
	if code != 0 || strings.HasSuffix(out, "\n") {
		t.Errorf("state: exit %d, %q (runc ends it without a newline), %s", code, out, errOut)
	}
	s := e.state("v")
	if s["ociVersion"] != "1.0.2" || s["rootfs"] != rootfs || s["owner"] != "root" {
		t.Errorf("state: ociVersion %v, rootfs %v, owner %v; want the bundle's 1.0.2, %s, root", s["ociVersion"], s["rootfs"], s["owner"], rootfs)
	}
	if _, errOut, code := e.hull("kill", "v", "0"); code != 0 {
		t.Errorf("kill 0 of a running container: exit %d, %s", code, errOut)
	}
	for _, args := range [][]string{{"state", "v", "w"}, {"start", "v", "w"}, {"delete", "v", "w"}, {"kill", "v", "KILL", "w"}, {"ps", "v", "-o", "pid"}} {
		if _, errOut, code := e.hull(args...); code == 0 || errOut == "" {
			t.Errorf("%v: exit %d; want a refusal", args, code)
		}
	}
	if s := e.state("v"); s["status"] != "running" {
		t.Fatalf("the refused calls changed the container: %v", s["status"])
	}
	// exec: --no-new-privs=false lifts the spec's; the runtime's own
	// failures exit 255, as runc's exec's.
	if out, errOut, code := e.hull("exec", "--no-new-privs=false", "v", "cat", "/proc/self/status"); code != 0 || !strings.Contains(out, "NoNewPrivs:\t0") {
		t.Errorf("exec --no-new-privs=false: exit %d, %q, %s", code, out, errOut)
	}
	if out, _, code := e.hull("exec", "v", "cat", "/proc/self/status"); code != 0 || !strings.Contains(out, "NoNewPrivs:\t1") {
		t.Errorf("exec: exit %d, %q; want the spec's no_new_privs", code, out)
	}
	if _, errOut, code := e.hull("exec", "nosuch", "true"); code != 255 || !strings.Contains(errOut, "nosuch") {
		t.Errorf("exec into no container: exit %d, %q; want 255", code, errOut)
	}

	// kill KILL returns once the container reads as stopped, so that a
	// delete right after it works, as with runc.
	if _, errOut, code := e.hull("kill", "v", "KILL"); code != 0 {
		t.Fatalf("kill: %s", errOut)
	}
	if s := e.state("v"); s["status"] != "stopped" {
		t.Errorf("right after kill KILL: %v", s["status"])
	}
	e.waitStatus("v", "stopped")
	if _, errOut, code := e.hull("exec", "v", "true"); code != 255 || !strings.Contains(errOut, "stopped") {
		t.Errorf("exec into a stopped container: exit %d, %q; want 255", code, errOut)
	}
	if _, errOut, code := e.hull("kill", "v", "0"); code == 0 || !strings.Contains(errOut, "not running") {
		t.Errorf("kill 0 of a stopped container: exit %d, %q", code, errOut)
	}
	if _, errOut, code := e.hull("kill", "--all", "v", "KILL"); code != 0 {
		t.Errorf("kill --all of a stopped container: exit %d, %s", code, errOut)
	}
	if out, errOut, code := e.hull("ps", "--format", "json", "v"); code != 0 || out != "null\n" {
		t.Errorf("ps of a stopped container: exit %d, %q, %s", code, out, errOut)
	}
	if _, errOut, code := e.hull("delete", "v"); code != 0 {
		t.Fatalf("delete: %s", errOut)
	}
	if out, _, code := e.hull("list", "--format", "json"); code != 0 || out != "null\n" {
		t.Errorf("list of nothing: exit %d, %q", code, out)
	}
}

// A foreground run passes on every signal it can catch, as runc's does,
// not only the usual stop signals.
func TestCLIRunForwardsSignals(t *testing.T) {
	e := newCLIEnv(t)
	bundle := busyboxBundle(t)
	spec := busyboxSpec("sh", "-c", "trap 'exit 4' ALRM; trap 'exit 6' TTIN; : > /ready; while :; do sleep 1; done")
	spec.Root.Readonly = false // for /ready, which tells the traps are set
	writeSpec(t, bundle, spec)
	for _, tc := range []struct {
		sig  syscall.Signal
		want int
	}{{syscall.SIGALRM, 4}, {syscall.SIGTTIN, 6}} {
		os.Remove(filepath.Join(bundle, "rootfs", "ready"))
		cmd := exec.Command(hullBin, "--root", e.root, "--config", e.config, "run", "--bundle", bundle, "sig")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			if _, err := os.Stat(filepath.Join(bundle, "rootfs", "ready")); err == nil {
				break
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				e.hull("delete", "--force", "sig")
				t.Fatal("the container's shell never set its traps")
			}
			time.Sleep(50 * time.Millisecond)
		}
		cmd.Process.Signal(tc.sig)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			<-done
			e.hull("delete", "--force", "sig")
			t.Fatalf("%v: hull run did not end", tc.sig)
		}
		if code := cmd.ProcessState.ExitCode(); code != tc.want {
			t.Errorf("%v: hull run exited %d, want the container's %d", tc.sig, code, tc.want)
		}
	}
}

// pause freezes the container's processes and resume thaws them; update
// changes its limits in the guest.
func TestCLIPauseResumeUpdate(t *testing.T) {
	e := newCLIEnv(t)
	bundle := busyboxBundle(t)
	spec := busyboxSpec("sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > /count; sleep 0.2; done")
	spec.Root.Readonly = false
	writeSpec(t, bundle, spec)
	startBundle(t, e, "p", bundle)
	count := filepath.Join(bundle, "rootfs", "count")
	read := func() string {
		b, _ := os.ReadFile(count)
		return strings.TrimSpace(string(b))
	}
	// The loop runs: the count moves.
	waitMoves := func(what string) {
		t.Helper()
		first := read()
		deadline := time.Now().Add(30 * time.Second)
		for read() == first {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the count stays at %q", what, first)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitMoves("running")

	if _, errOut, code := e.hull("resume", "p"); code == 0 || !strings.Contains(errOut, "not paused") {
		t.Errorf("resume of a running container: exit %d, %q", code, errOut)
	}
	if _, errOut, code := e.hull("pause", "p"); code != 0 {
		t.Fatalf("pause: %s", errOut)
	}
	if s := e.state("p"); s["status"] != "paused" {
		t.Errorf("state after pause: %v", s["status"])
	}
	frozen := read()
	time.Sleep(1500 * time.Millisecond) // seven turns of the loop, were it running
	if got := read(); got != frozen {
		t.Errorf("the count moved from %q to %q while paused", frozen, got)
	}
	if _, errOut, code := e.hull("exec", "p", "true"); code != 255 || !strings.Contains(errOut, "--ignore-paused") {
		t.Errorf("exec into a paused container: exit %d, %q", code, errOut)
	}
	// runc's --ignore-paused starts a process that freezes at once and
	// waits on it for ever: refused here, with the reason.
	if _, errOut, code := e.hull("exec", "--ignore-paused", "p", "true"); code != 255 || !strings.Contains(errOut, "resume") {
		t.Errorf("exec --ignore-paused into a paused container: exit %d, %q", code, errOut)
	}
	if _, errOut, code := e.hull("resume", "p"); code != 0 {
		t.Fatalf("resume: %s", errOut)
	}
	if s := e.state("p"); s["status"] != "running" {
		t.Errorf("state after resume: %v", s["status"])
	}
	waitMoves("resumed")

	if _, errOut, code := e.hull("update", "--pids-limit", "42", "--memory", "96m", "p"); code != 0 {
		t.Fatalf("update: %s", errOut)
	}
	out, errOut, code := e.hull("exec", "p", "cat", "/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/memory.max")
	if code != 0 || strings.Fields(out)[0] != "42" || strings.Fields(out)[1] != "100663296" {
		t.Errorf("limits after update: exit %d, %q, %s", code, out, errOut)
	}
	if _, errOut, code := e.hull("update", "--cpu-rt-period", "1000", "p"); code == 0 || !strings.Contains(errOut, "cpu-rt-period") {
		t.Errorf("update --cpu-rt-period: exit %d, %q", code, errOut)
	}
	if _, errOut, code := e.hull("delete", "--force", "p"); code != 0 {
		t.Fatalf("delete: %s", errOut)
	}
}

// Signals sent to `hull exec`, and to the stand-in of `exec -d` whose pid
// conmon and containerd signal, reach the process in the guest; the
// caller's stdin is not kept by the supervisor once the exec ended; an
// exec that cannot start exits 255, as runc's.
func TestCLIExecSignalsAndStdin(t *testing.T) {
	e := newCLIEnv(t)
	bundle := busyboxBundle(t)
	spec := busyboxSpec("sleep", "1000")
	spec.Root.Readonly = false
	writeSpec(t, bundle, spec)
	st := startBundle(t, e, "x", bundle)
	rootfs := filepath.Join(bundle, "rootfs")
	waitFile := func(name string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			if _, err := os.Stat(filepath.Join(rootfs, name)); err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never appeared", name)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// Foreground: TERM goes to the process, whose trap decides the status.
	cmd := exec.Command(hullBin, "--root", e.root, "--config", e.config, "exec", "x", "sh", "-c", "trap 'exit 7' TERM; : > /fg-ready; while :; do sleep 1; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFile("fg-ready")
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
		if code := cmd.ProcessState.ExitCode(); code != 7 {
			t.Errorf("exec after SIGTERM: exit %d, want the trap's 7", code)
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Error("SIGTERM to hull exec did not reach its process")
	}

	// exec -d: SIGKILL of the stand-in ends the process too.
	pidFile := filepath.Join(t.TempDir(), "pid")
	if _, errOut, code := e.hull("exec", "-d", "--pid-file", pidFile, "x", "sh", "-c", ": > /bg-ready; exec sleep 1000"); code != 0 {
		t.Fatalf("exec -d: %s", errOut)
	}
	waitFile("bg-ready")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(string(b))
	syscall.Kill(pid, syscall.SIGKILL)
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, _, _ := e.hull("ps", "--format", "json", "x")
		var pids []int
		json.Unmarshal([]byte(out), &pids)
		if len(pids) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the exec of a killed stand-in still runs: pids %v", pids)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// The caller's stdin (a FIFO whose writer the test holds) is not
	// among the supervisor's files once the exec returned.
	fifo := filepath.Join(t.TempDir(), "in")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r, err := os.Open(fifo)
	if err != nil {
		t.Fatal(err)
	}
	ex := exec.Command(hullBin, "--root", e.root, "--config", e.config, "exec", "x", "true")
	ex.Stdin = r
	if out, err := ex.CombinedOutput(); err != nil {
		t.Fatalf("exec with a FIFO for stdin: %v: %s", err, out)
	}
	r.Close()
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", st.Supervisor))
	for _, fd := range fds {
		if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", st.Supervisor, fd.Name())); strings.Contains(target, fifo) {
			t.Errorf("the supervisor keeps the exec's caller's stdin (fd %s -> %s)", fd.Name(), target)
		}
	}

	if _, errOut, code := e.hull("exec", "x", "/no/such/program"); code != 255 {
		t.Errorf("exec of a missing program: exit %d, want runc's 255 (%s)", code, errOut)
	}
	if _, errOut, code := e.hull("delete", "--force", "x"); code != 0 {
		t.Fatalf("delete: %s", errOut)
	}
}

// A tmpfs takes the mode of the image's directory it is mounted on, as
// runc's does; on a destination the image lacks it keeps tmpfs's own 1777,
// so that a non-root process can write to it (`podman --tmpfs /scratch`).
func TestCLITmpfsModes(t *testing.T) {
	e := newCLIEnv(t)
	bundle := busyboxBundle(t)
	if err := os.Mkdir(filepath.Join(bundle, "rootfs", "m700"), 0o700); err != nil {
		t.Fatal(err)
	}
	spec := busyboxSpec("sh", "-c", "stat -c '%n %a' /fresh /m700 /set; touch /fresh/x && echo written")
	spec.Process.User = specs.User{UID: 1000, GID: 1000}
	spec.Mounts = append(spec.Mounts,
		specs.Mount{Destination: "/fresh", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid"}},
		specs.Mount{Destination: "/m700", Type: "tmpfs", Source: "tmpfs"},
		specs.Mount{Destination: "/set", Type: "tmpfs", Source: "tmpfs", Options: []string{"mode=750"}})
	writeSpec(t, bundle, spec)
	out, errOut, code := e.hull("run", "--bundle", bundle, "tmpfsmodes")
	if want := "/fresh 1777\n/m700 700\n/set 750\nwritten\n"; code != 0 || out != want {
		t.Errorf("exit %d, stdout %q (want %q), stderr %q", code, out, want, errOut)
	}
	// Mount points in file systems mounted before them (/dev/pts in the
	// /dev tmpfs) are the guest's to make, not the image's, as with runc
	// (`podman diff` showed them).
	for _, p := range []string{"dev/pts", "dev/shm", "dev/mqueue", "sys/fs"} {
		if _, err := os.Stat(filepath.Join(bundle, "rootfs", p)); err == nil {
			t.Errorf("%s was made in the image", p)
		}
	}
	e.assertClean()
}

// Sockets handed over by systemd's socket activation (LISTEN_FDS for this
// process) cannot go into a VM: create refuses them by name rather than
// start a service with none, and leaves nothing behind.
func TestCLISocketActivationRefused(t *testing.T) {
	e := newCLIEnv(t)
	bundle := busyboxBundle(t)
	writeSpec(t, bundle, busyboxSpec("true"))
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$@" 3</dev/null`, "sh",
		hullBin, "--root", e.root, "--config", e.config, "run", "--bundle", bundle, "activated")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "LISTEN_FDS") {
		t.Errorf("run with LISTEN_FDS: %v, %q; want a refusal that names it", err, out)
	}
	e.assertClean()
	// LISTEN_PID of another process (an inherited environment) is not
	// this one's: runc ignores it too.
	cmd = exec.Command("/bin/sh", "-c", `LISTEN_PID=1 LISTEN_FDS=1 exec "$@"`, "sh",
		hullBin, "--root", e.root, "--config", e.config, "run", "--bundle", bundle, "inherited")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("run with another process's LISTEN_PID: %v, %q", err, out)
	}
	e.assertClean()
}

// A container with a user namespace of its own, as `podman --uidmap` makes
// it: mapped to host ids 100000 and up, with runc's default mounts (sysfs
// needs a network namespace that the user namespace owns), and with the
// identity mapping.
func TestCLIUserNamespace(t *testing.T) {
	e := newCLIEnv(t)
	for _, host := range []uint32{100000, 0} {
		bundle := busyboxBundle(t)
		spec := busyboxSpec("sh", "-c", "id -u; cat /proc/self/uid_map; ls /sys/class/net; echo ok > /tmp/f && cat /tmp/f")
		spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		spec.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: host, Size: 65536}}
		spec.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: host, Size: 65536}}
		spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs"})
		writeSpec(t, bundle, spec)
		out, errOut, code := e.hull("run", "--bundle", bundle, fmt.Sprintf("userns%d", host))
		fields := strings.Fields(out)
		if code != 0 || len(fields) < 5 || fields[0] != "0" || fields[1] != "0" || fields[2] != strconv.Itoa(int(host)) || !strings.Contains(out, "\nlo\n") || !strings.HasSuffix(out, "ok\n") {
			t.Errorf("host id %d: exit %d, stdout %q, stderr %q", host, code, out, errOut)
		}
	}
	e.assertClean()
}

// The container's pid on the host is the supervisor's. What joins its
// mount namespace (podman cp, nsenter -m) finds the container's root and
// volumes there, not the host's files: a copy into the container must
// never write to the host's /.
func TestCLIPidMountNamespaceIsTheContainers(t *testing.T) {
	e := newCLIEnv(t)
	bundle := busyboxBundle(t)
	if err := os.WriteFile(filepath.Join(bundle, "rootfs", "marker"), []byte("in the container\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	vol := t.TempDir()
	spec := busyboxSpec("sleep", "1000")
	spec.Root.Readonly = false
	spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: vol, Options: []string{"rbind", "rw"}})
	writeSpec(t, bundle, spec)
	st := startBundle(t, e, "mntns", bundle)
	defer e.hull("delete", "--force", "mntns")
	nsenter := func(args ...string) (string, error) {
		out, err := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(st.Supervisor), "-m", "/bin/busybox"}, args...)...).CombinedOutput()
		return string(out), err
	}
	if out, err := nsenter("cat", "/marker"); err != nil || out != "in the container\n" {
		t.Errorf("cat /marker in the pid's mount namespace: %q, %v", out, err)
	}
	escape := "/hull-escape-test-" + strconv.Itoa(os.Getpid())
	defer os.Remove(escape)
	if out, err := nsenter("sh", "-c", "echo copied > /data/f && echo copied > "+escape); err != nil {
		t.Fatalf("write in the pid's mount namespace: %q, %v", out, err)
	}
	if _, err := os.Stat(escape); err == nil {
		t.Errorf("a write to %s in the container's pid's mount namespace reached the host's /", escape)
	}
	if b, err := os.ReadFile(filepath.Join(bundle, "rootfs", escape)); err != nil || string(b) != "copied\n" {
		t.Errorf("the write did not reach the rootfs: %q, %v", b, err)
	}
	if out, errOut, code := e.hull("exec", "mntns", "cat", "/data/f"); code != 0 || out != "copied\n" {
		t.Errorf("the volume in the container: exit %d, %q, %s", code, out, errOut)
	}
}

// A created container takes execs, as runc's does: in its namespaces,
// before its own process starts; then it starts as any other. Both ways
// the guest sets a container up: hull-init's, and libcontainer's (a tmpfs
// with tmpcopyup is libcontainer's alone).
func TestCLIExecIntoCreatedContainer(t *testing.T) {
	e := newCLIEnv(t)
	for _, copyup := range []bool{false, true} {
		bundle := busyboxBundle(t)
		spec := busyboxSpec("sh", "-c", "echo started > /tmp/started; exec sleep 1000")
		spec.Hostname = "created-exec"
		opts := []string{"mode=1777"}
		if copyup {
			opts = append(opts, "tmpcopyup")
		}
		spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: opts})
		writeSpec(t, bundle, spec)
		id := fmt.Sprintf("created%v", copyup)
		if _, errOut, code := e.hull("create", "--bundle", bundle, id); code != 0 {
			t.Fatalf("create: %s", errOut)
		}
		out, errOut, code := e.hull("exec", id, "sh", "-c", "hostname; ls /tmp")
		if code != 0 || out != "created-exec\n" {
			t.Errorf("exec into the created container (copyup %v): exit %d, %q, %s", copyup, code, out, errOut)
		}
		if s := e.state(id); s["status"] != "created" {
			t.Errorf("after the exec: %v", s["status"])
		}
		if _, errOut, code := e.hull("start", id); code != 0 {
			t.Fatalf("start: %s", errOut)
		}
		if out, errOut, code := e.hull("exec", id, "cat", "/tmp/started"); code != 0 || out != "started\n" {
			t.Errorf("exec after the start (copyup %v): exit %d, %q, %s", copyup, code, out, errOut)
		}
		if _, errOut, code := e.hull("delete", "--force", id); code != 0 {
			t.Errorf("delete --force: %s", errOut)
		}
	}
	e.assertClean()
}
