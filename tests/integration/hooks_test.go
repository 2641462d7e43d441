package integration

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Hooks run on the host, in the order and with the state the runtime spec
// gives, and a failing createRuntime hook fails create with nothing left.
func TestHooks(t *testing.T) {
	e := newCLIEnv(t)
	bundle := busyboxBundle(t)
	log := filepath.Join(t.TempDir(), "hooks.log")
	hook := func(name string) specs.Hook {
		// Each hook appends its name and the status from its stdin state.
		return specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c",
			`st=$(cat | sed -n 's/.*"status":"\([a-z]*\)".*/\1/p'); echo "` + name + ` $st" >> ` + log}}
	}
	s := busyboxSpec("sleep", "1000")
	// startContainer hooks resolve and run in the container (the runtime
	// spec): /chook is in the rootfs only, and what it writes stays in
	// the container's /tmp.
	chook := "#!/bin/sh\ncat > /tmp/startContainer.state\necho \"$0 $1\" >> /tmp/startContainer.state\n"
	if err := os.WriteFile(filepath.Join(bundle, "rootfs", "chook"), []byte(chook), 0o755); err != nil {
		t.Fatal(err)
	}
	s.Mounts = append(s.Mounts, specs.Mount{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs"})
	s.Hooks = &specs.Hooks{
		Prestart:        []specs.Hook{hook("prestart")},
		CreateRuntime:   []specs.Hook{hook("createRuntime")},
		CreateContainer: []specs.Hook{hook("createContainer")},
		StartContainer:  []specs.Hook{{Path: "/chook", Args: []string{"chook", "in-container"}}},
		Poststart:       []specs.Hook{hook("poststart")},
		Poststop:        []specs.Hook{hook("poststop")},
	}
	writeSpec(t, bundle, s)
	if _, errOut, code := e.hull("create", "--bundle", bundle, "hooked"); code != 0 {
		t.Fatalf("create: %s", errOut)
	}
	if _, errOut, code := e.hull("start", "hooked"); code != 0 {
		t.Fatalf("start: %s", errOut)
	}
	out, errOut, code := e.hull("exec", "hooked", "cat", "/tmp/startContainer.state")
	for _, want := range []string{`"status":"created"`, `"id":"hooked"`, `"bundle":"` + bundle + `"`, "chook in-container"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("startContainer hook in the container: exit %d, %q (no %s), %s", code, out, want, errOut)
		}
	}
	if _, errOut, code := e.hull("kill", "hooked", "KILL"); code != 0 {
		t.Fatalf("kill: %s", errOut)
	}
	deadline := time.Now().Add(30 * time.Second)
	for e.state("hooked")["status"] != "stopped" && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	// delete runs the poststop hooks of the spec the container was
	// created from, as runc does, not those of the bundle as it is now.
	changed := busyboxSpec("sleep", "1000")
	changed.Hooks = &specs.Hooks{Poststop: []specs.Hook{hook("changed-bundle")}}
	writeSpec(t, bundle, changed)
	if _, errOut, code := e.hull("delete", "hooked"); code != 0 {
		t.Fatalf("delete: %s", errOut)
	}
	b, _ := os.ReadFile(log)
	want := "prestart creating\ncreateRuntime creating\ncreateContainer creating\npoststart running\npoststop stopped\n"
	if string(b) != want {
		t.Errorf("hooks ran as\n%s\nwant\n%s", b, want)
	}

	// A startContainer hook that fails fails the start, and the container
	// is stopped (the runtime spec).
	failing := busyboxBundle(t)
	s = busyboxSpec("sleep", "1000")
	s.Hooks = &specs.Hooks{StartContainer: []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "exit 3"}}}}
	writeSpec(t, failing, s)
	if _, errOut, code := e.hull("create", "--bundle", failing, "failing"); code != 0 {
		t.Fatalf("create: %s", errOut)
	}
	if _, errOut, code := e.hull("start", "failing"); code == 0 || !strings.Contains(errOut, "startContainer hook failed") {
		t.Errorf("start with a failing startContainer hook: exit %d, %q", code, errOut)
	}
	e.waitStatus("failing", "stopped")
	if _, errOut, code := e.hull("delete", "failing"); code != 0 {
		t.Errorf("delete: %s", errOut)
	}

	bad := busyboxBundle(t)
	s = busyboxSpec("true")
	undone := filepath.Join(t.TempDir(), "undone")
	s.Hooks = &specs.Hooks{
		CreateRuntime: []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "echo no network for you >&2; exit 1"}}},
		// The spec's lifecycle goes on to the deletion: poststop runs, to
		// undo what the creation hooks did.
		Poststop: []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "cat > " + undone}}},
	}
	writeSpec(t, bad, s)
	_, errOut, code = e.hull("create", "--bundle", bad, "refused")
	if code == 0 || !strings.Contains(errOut, "createRuntime hook 0") || !strings.Contains(errOut, "no network for you") {
		t.Errorf("failing hook: exit %d, %q", code, errOut)
	}
	if b, err := os.ReadFile(undone); err != nil || !strings.Contains(string(b), `"status":"stopped"`) {
		t.Errorf("poststop after the failed create: %q, %v", b, err)
	}
	e.assertClean()
}

// A hook that leaves a process running in the background (a helper
// daemon) must not hold up `hull create`: nothing of the report's pipe may
// reach it.
func TestHookBackgroundChildDoesNotHoldCreate(t *testing.T) {
	e := newCLIEnv(t)
	bundle := busyboxBundle(t)
	pidFile := filepath.Join(t.TempDir(), "pid")
	s := busyboxSpec("sleep", "1000")
	s.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c",
		"sleep 60 </dev/null >/dev/null 2>&1 & echo $! > " + pidFile}}}}
	writeSpec(t, bundle, s)
	start := time.Now()
	_, errOut, code := e.hull("create", "--bundle", bundle, "daemonhook")
	took := time.Since(start)
	if b, err := os.ReadFile(pidFile); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if code != 0 {
		t.Fatalf("create: %s", errOut)
	}
	// The hook's child lives 60 s: a create that waited for it took that.
	if took > 45*time.Second {
		t.Errorf("create took %s: it waited for the hook's background child", took)
	}
	if _, errOut, code := e.hull("delete", "--force", "daemonhook"); code != 0 {
		t.Fatalf("delete --force: %s", errOut)
	}
	e.assertClean()
}
