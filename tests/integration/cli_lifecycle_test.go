package integration

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestCLILifecycle(t *testing.T) {
	e := newCLIEnv(t)
	bundle := busyboxBundle(t)
	writeSpec(t, bundle, busyboxSpec("sh", "-c", "echo started; sleep 100"))
	pidFile := filepath.Join(t.TempDir(), "pid")
	if out, errOut, code := e.hull("create", "--bundle", bundle, "--pid-file", pidFile, "life"); code != 0 {
		t.Fatalf("create: %d %s %s", code, out, errOut)
	}
	st := e.state("life")
	if st["status"] != "created" {
		t.Fatalf("after create: %v", st)
	}
	pid, _ := os.ReadFile(pidFile)
	if strconv.Itoa(int(st["pid"].(float64))) != string(pid) {
		t.Errorf("pid file %q, state pid %v", pid, st["pid"])
	}
	// The runtime spec: deleting a container that is not stopped has no
	// effect and is an error (runc departs from it for created ones).
	if _, _, code := e.hull("delete", "life"); code == 0 {
		t.Error("deleted a created container without --force")
	}
	if _, errOut, code := e.hull("start", "life"); code != 0 {
		t.Fatalf("start: %s", errOut)
	}
	if st := e.state("life"); st["status"] != "running" {
		t.Fatalf("after start: %v", st)
	}
	out, _, _ := e.hull("list", "--format", "json")
	if !strings.Contains(out, `"id":"life"`) {
		t.Errorf("list: %s", out)
	}
	if _, errOut, code := e.hull("kill", "life", "KILL"); code != 0 {
		t.Fatalf("kill: %s", errOut)
	}
	deadline := time.Now().Add(30 * time.Second)
	for e.state("life")["status"] != "stopped" && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if st := e.state("life"); st["status"] != "stopped" {
		t.Fatalf("after kill: %v", st)
	}
	if _, errOut, code := e.hull("delete", "life"); code != 0 {
		t.Fatalf("delete: %s", errOut)
	}
	if _, _, code := e.hull("state", "life"); code == 0 {
		t.Error("state of a deleted container")
	}
}

func TestCLIRunExitCodeAndOutput(t *testing.T) {
	e := newCLIEnv(t)
	bundle := busyboxBundle(t)
	writeSpec(t, bundle, busyboxSpec("sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 7"))
	// --no-subreaper, a runc flag some callers pass, changes nothing here.
	out, errOut, code := e.hull("run", "--no-subreaper", "--bundle", bundle, "runner")
	if code != 7 {
		t.Errorf("exit %d, want 7 (stderr %q)", code, errOut)
	}
	if out != "to-stdout\n" || !strings.Contains(errOut, "to-stderr") {
		t.Errorf("stdout %q, stderr %q", out, errOut)
	}
	// As runc's run, the container is gone once it exited...
	if _, _, code := e.hull("state", "runner"); code == 0 {
		t.Error("state of a container that run already deleted")
	}
	// ...unless --keep.
	if _, errOut, code := e.hull("run", "--keep", "--bundle", bundle, "kept"); code != 7 {
		t.Fatalf("run --keep: exit %d, %s", code, errOut)
	}
	if out, errOut, code := e.hull("state", "kept"); code != 0 || !strings.Contains(out, `"stopped"`) {
		t.Errorf("state after run --keep: %q %s", out, errOut)
	}
	if _, errOut, code := e.hull("delete", "kept"); code != 0 {
		t.Fatalf("delete: %s", errOut)
	}
}

// A container whose process exits at once: a kill soon after start either
// reaches it while hull still reports it running (and, as kill(2) on a
// zombie, is taken), or finds it stopped and says so. Never an error from
// the guest ("process already finished") or from a sandbox going away: the
// delays cover the time between the exit and hull's record of it.
func TestCLIKillRightAfterExit(t *testing.T) {
	e := newCLIEnv(t)
	bundle := busyboxBundle(t)
	writeSpec(t, bundle, busyboxSpec("true"))
	for i, delay := range []time.Duration{0, 50 * time.Millisecond, 100 * time.Millisecond, 150 * time.Millisecond, 200 * time.Millisecond} {
		id := "quick" + strconv.Itoa(i)
		if out, errOut, code := e.hull("create", "--bundle", bundle, id); code != 0 {
			t.Fatalf("create: %d %s %s", code, out, errOut)
		}
		if _, errOut, code := e.hull("start", id); code != 0 {
			t.Fatalf("start: %s", errOut)
		}
		time.Sleep(delay)
		_, errOut, code := e.hull("kill", id, "KILL")
		t.Logf("kill %s after start: exit %d %s", delay, code, strings.TrimSpace(errOut))
		if code != 0 && !strings.Contains(errOut, "is not running") {
			t.Errorf("kill %s after start: exit %d, %s", delay, code, errOut)
		}
		deadline := time.Now().Add(30 * time.Second)
		for e.state(id)["status"] != "stopped" && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if _, errOut, code := e.hull("delete", id); code != 0 {
			t.Fatalf("delete: %s", errOut)
		}
	}
}

// An exec that still runs when the container's init exits gets a status
// and its output, not an error from a VM that went first. Without a PID
// namespace of its own the kernel does not end the exec with the init:
// the teardown kills it, as runc's delete does.
func TestCLIExecOutlivedByInit(t *testing.T) {
	e := newCLIEnv(t)
	bundle := busyboxBundle(t)
	// The init ends by itself once the exec runs.
	spec := busyboxSpec("sh", "-c", "while [ ! -e /exec-ready ]; do sleep 1; done")
	spec.Root.Readonly = false
	var nss []specs.LinuxNamespace
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type != specs.PIDNamespace {
			nss = append(nss, ns)
		}
	}
	spec.Linux.Namespaces = nss
	writeSpec(t, bundle, spec)
	if out, errOut, code := e.hull("create", "--bundle", bundle, "outlived"); code != 0 {
		t.Fatalf("create: %d %s %s", code, out, errOut)
	}
	if _, errOut, code := e.hull("start", "outlived"); code != 0 {
		t.Fatalf("start: %s", errOut)
	}
	type result struct {
		out, errOut string
		code        int
	}
	done := make(chan result, 1)
	go func() {
		o, eo, c := runHull(t, nil, "--root", e.root, "--config", e.config, "exec", "outlived", "sh", "-c", "echo in-exec; : > /exec-ready; exec sleep 100")
		done <- result{o, eo, c}
	}()
	// The file appears on the host through virtio-fs once the exec has
	// written its line.
	ready := filepath.Join(bundle, "rootfs", "exec-ready")
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the exec never ran")
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case r := <-done:
		if r.code != 137 || r.out != "in-exec\n" {
			t.Errorf("exec that outlived its container's init: exit %d, stdout %q, stderr %q; want 137 and its output", r.code, r.out, r.errOut)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("exec still waiting 90 s after its container was killed")
	}
	for e.state("outlived")["status"] != "stopped" && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if _, errOut, code := e.hull("delete", "outlived"); code != 0 {
		t.Fatalf("delete: %s", errOut)
	}
}

// A spec that hull-init does not set up (here a tmpfs with tmpcopyup) goes
// to libcontainer in the guest, and runs and takes execs as any other.
func TestCLILibcontainerSetsUpWhatHullInitDoesNot(t *testing.T) {
	e := newCLIEnv(t)
	bundle := busyboxBundle(t)
	if err := os.WriteFile(filepath.Join(bundle, "rootfs", "etc", "seed"), []byte("seeded\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := busyboxSpec("sh", "-c", "cat /etc/seed; touch /etc/new && echo writable; exec sleep 1000")
	spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/etc", Type: "tmpfs", Source: "tmpfs", Options: []string{"tmpcopyup", "mode=755"}})
	writeSpec(t, bundle, spec)
	const id = "copyup"
	if _, errOut, code := e.hull("run", "-d", "--bundle", bundle, id); code != 0 {
		t.Fatalf("run -d: %s", errOut)
	}
	defer e.hull("delete", "--force", id)
	out, errOut, code := e.hull("exec", id, "sh", "-c", "cat /etc/seed; ls /etc/new")
	if code != 0 || out != "seeded\n/etc/new\n" {
		t.Errorf("exec: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(bundle, "rootfs", "etc", "new")); err == nil {
		t.Error("the file written to the tmpfs reached the rootfs")
	}
	if _, errOut, code := e.hull("delete", "--force", id); code != 0 {
		t.Errorf("delete --force: %s", errOut)
	}
}

// A configuration broken while containers run (a typo) refuses new
// containers by name, but must not keep the running ones from being
// listed, stopped and deleted.
func TestBrokenConfigStillDeletes(t *testing.T) {
	e := newCLIEnv(t)
	startSleeper(t, e, "typo")
	bad := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(bad, []byte("[hypervisor]\nvcpu = 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	withBad := func(args ...string) (string, string, int) {
		return runHull(t, nil, append([]string{"--root", e.root, "--config", bad}, args...)...)
	}
	bundle := busyboxBundle(t)
	writeSpec(t, bundle, busyboxSpec("true"))
	if _, errOut, code := withBad("create", "--bundle", bundle, "new"); code == 0 || !strings.Contains(errOut, "vcpu") {
		t.Errorf("create with a broken config: exit %d, %q", code, errOut)
	}
	if out, errOut, code := withBad("state", "typo"); code != 0 || !strings.Contains(out, `"running"`) {
		t.Errorf("state: exit %d, %q %q", code, out, errOut)
	}
	if out, _, code := withBad("list", "-q"); code != 0 || !strings.Contains(out, "typo") {
		t.Errorf("list: exit %d, %q", code, out)
	}
	if _, errOut, code := withBad("delete", "--force", "typo"); code != 0 {
		t.Fatalf("delete --force: %s", errOut)
	}
	e.assertClean()
}
