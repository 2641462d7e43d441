package integration

import (
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"path/filepath"
	"strings"
	"testing"
)

func TestCLIBadInput(t *testing.T) {
	e := newCLIEnv(t)
	good := busyboxBundle(t)
	writeSpec(t, good, busyboxSpec("true"))
	for _, tc := range []struct {
		name  string
		setup func(b string) []string // returns the hull arguments
		want  string
	}{
		{"malformed config.json", func(b string) []string {
			os.WriteFile(filepath.Join(b, "config.json"), []byte("{nope"), 0o644)
			return []string{"create", "--bundle", b, "bad1"}
		}, "malformed"},
		{"missing process.args", func(b string) []string {
			s := busyboxSpec()
			writeSpec(t, b, s)
			return []string{"create", "--bundle", b, "bad2"}
		}, "process.args"},
		{"missing rootfs", func(b string) []string {
			s := busyboxSpec("true")
			s.Root.Path = "nothere"
			writeSpec(t, b, s)
			return []string{"create", "--bundle", b, "bad3"}
		}, "nothere"},
		{"rootfs symlinked out of the bundle", func(b string) []string {
			os.Symlink("/", filepath.Join(b, "escape"))
			s := busyboxSpec("true")
			s.Root.Path = "escape"
			writeSpec(t, b, s)
			return []string{"create", "--bundle", b, "bad4"}
		}, "outside the bundle"},
		{"invalid id", func(b string) []string { return []string{"create", "--bundle", good, "../x"} }, "invalid container id"},
		{"host namespace path", func(b string) []string {
			s := busyboxSpec("true")
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.IPCNamespace, Path: "/proc/1/ns/ipc"})
			writeSpec(t, b, s)
			return []string{"create", "--bundle", b, "bad5"}
		}, "cannot join a host namespace"},
		{"unknown signal", func(b string) []string { return []string{"kill", "nobody", "SIGBOGUS"} }, "unknown signal"},
		{"kill unknown id", func(b string) []string { return []string{"kill", "nobody", "KILL"} }, "does not exist"},
		{"delete unknown id", func(b string) []string { return []string{"delete", "nobody"} }, "does not exist"},
		{"start unknown id", func(b string) []string { return []string{"start", "nobody"} }, "does not exist"},
		{"pid file in a missing directory", func(b string) []string {
			// Found only once the container exists: it must go again.
			return []string{"create", "--pid-file", filepath.Join(b, "missing", "pid"), "--bundle", good, "bad6"}
		}, "--pid-file"},
		{"rootless spec", func(b string) []string {
			os.Remove(filepath.Join(b, "config.json"))
			return []string{"spec", "--rootless", "--bundle", b}
		}, "--rootless"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := busyboxBundle(t)
			args := tc.setup(b)
			out, errOut, code := e.hull(args...)
			if code == 0 {
				t.Fatalf("exit 0: %s %s", out, errOut)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q does not name %q", errOut, tc.want)
			}
			e.assertClean()
		})
	}
}
