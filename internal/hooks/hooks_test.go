package hooks

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestRunHooks(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	st := specs.State{Version: specs.Version, ID: "c1", Status: specs.StateCreating, Pid: 42, Bundle: "/b"}
	hooks := []specs.Hook{
		{Path: "/bin/sh", Args: []string{"sh", "-c", "cat > " + out + "; echo $FOO >> " + out}, Env: []string{"FOO=bar"}},
	}
	if err := Run(context.Background(), "createRuntime", hooks, st); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	if !strings.Contains(string(b), `"id":"c1"`) || !strings.Contains(string(b), `"pid":42`) || !strings.HasSuffix(string(b), "bar\n") {
		t.Fatalf("hook saw %q", b)
	}

	one := 1
	for name, tc := range map[string]struct {
		hooks []specs.Hook
		want  string
	}{
		"failing hook names itself": {[]specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "echo broken >&2; exit 3"}}}, "prestart hook 0 (/bin/sh): exit status 3: broken"},
		"timeout":                   {[]specs.Hook{{Path: "/bin/sleep", Args: []string{"sleep", "10"}, Timeout: &one}}, "timed out after 1s"},
		"missing binary":            {[]specs.Hook{{Path: "/nonexistent/hook"}}, "/nonexistent/hook"},
	} {
		t.Run(name, func(t *testing.T) {
			err := Run(context.Background(), "prestart", tc.hooks, st)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error with %q, got %v", tc.want, err)
			}
		})
	}
}

// Poststart and poststop hooks all run: a failure is a warning, not the
// end of the list.
func TestRunAllGoesOn(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	st := specs.State{Version: specs.Version, ID: "c1", Status: specs.StateStopped}
	hooks := []specs.Hook{
		{Path: "/bin/sh", Args: []string{"sh", "-c", "exit 2"}},
		{Path: "/bin/sh", Args: []string{"sh", "-c", "echo second >> " + out}},
	}
	err := RunAll(context.Background(), "poststop", hooks, st)
	if err == nil || !strings.Contains(err.Error(), "poststop hook 0") {
		t.Errorf("want hook 0's failure, got %v", err)
	}
	if b, _ := os.ReadFile(out); string(b) != "second\n" {
		t.Errorf("the hook after the failing one did not run: %q", b)
	}
}

// A hook that times out goes with everything it started.
func TestHookTimeoutKillsItsChildren(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	one := 1
	hooks := []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "sleep 100 & echo $! > " + pidFile + "; wait"}, Timeout: &one}}
	if err := Run(context.Background(), "prestart", hooks, specs.State{}); err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("want a timeout, got %v", err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if s, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); strings.Contains(string(s), ") Z ") {
			break // a zombie, reaped by init in time
		}
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the hook's child %d outlived its timeout", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
