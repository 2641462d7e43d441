// Package integration tests hull end to end with real parts: real QEMU VMs
// booted from the real guest image, the real hull binary. They need root
// and the image that `make image` installs (or HULL_IMAGE_DIR). Under
// HULL_INTEGRATION=1 (make test) a missing prerequisite fails the test
// instead of skipping it, so CI cannot pass by testing nothing.
package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/log"

	"github.com/hull-runtime/hull/internal/config"
	"github.com/hull-runtime/hull/internal/image"
	"github.com/hull-runtime/hull/internal/vmm/qemu"
)

// Fixtures, in one place.
var (
	imageDir = envOr("HULL_IMAGE_DIR", "/usr/local/share/hull")
	cacheDir = envOr("HULL_CACHE_DIR", "/var/cache/hull")
	hullBin  = os.Getenv("HULL_BIN")
)

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// require skips, or fails under HULL_INTEGRATION=1, when cond is false.
func require(t *testing.T, cond bool, format string, args ...any) {
	t.Helper()
	if cond {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("HULL_INTEGRATION") == "1" {
		t.Fatalf("prerequisite missing: %s", msg)
	}
	t.Skip(msg)
}

func requireVM(t *testing.T) {
	t.Helper()
	require(t, os.Geteuid() == 0, "needs root")
	_, err := qemu.LookBinary("qemu-system-x86_64")
	require(t, err == nil, "%v", err)
	_, _, _, err = image.Verify(imageDir)
	require(t, err == nil, "guest image: %v (run make image)", err)
}

func requireHull(t *testing.T) {
	t.Helper()
	requireVM(t)
	require(t, hullBin != "", "HULL_BIN names no hull binary (make test sets it)")
}

// testConfig is the configuration of a test sandbox: TCG is forced so the
// tests do not depend on the host's KVM, and state lives in a temp dir.
func testConfig(t *testing.T) config.Config {
	c := config.Default()
	c.Image.Dir = imageDir
	c.Hypervisor.Accelerator = "tcg"
	c.Runtime.Root = t.TempDir()
	c.Hypervisor.BootTimeout = config.Duration(30 * time.Second)
	return c
}

func testContext(t *testing.T) context.Context {
	return log.WithLogger(t.Context(), log.L)
}

// qemuPids returns the pids of QEMU processes whose command line contains
// needle: a VM's name is unique to its test.
func qemuPids(needle string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.HasPrefix(b, []byte("qemu-system")) && !bytes.Contains(b, []byte("/qemu-system")) {
			continue
		}
		if bytes.Contains(b, []byte(needle)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// assertNoLeaks checks that nothing of a sandbox is left: no QEMU whose
// command line names it, nothing under the runtime root.
func assertNoLeaks(t *testing.T, name, root string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(qemuPids(name)) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if pids := qemuPids(name); len(pids) > 0 {
		t.Errorf("qemu of %s still running: pids %v", name, pids)
	}
	if root == "" {
		return
	}
	var left []string
	_ = filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		// The image check's and the KVM probe's records are runtime-wide,
		// not a sandbox's.
		if err == nil && p != root && p != filepath.Join(root, image.VerifiedCacheFile) && p != filepath.Join(root, qemu.ProbeCacheFile) && p != filepath.Join(root, qemu.VersionCacheFile) {
			left = append(left, p)
		}
		return nil
	})
	if len(left) > 0 {
		t.Errorf("left under %s: %v", root, left)
	}
	mounts, _ := os.ReadFile("/proc/mounts")
	if strings.Contains(string(mounts), root) {
		t.Errorf("mounts left under %s", root)
	}
}

// runHull runs the hull binary and returns its output and exit code. The
// output goes through files, not pipes: `hull create` leaves a supervisor
// that keeps the container's stdio open, as runc's container process does,
// so a pipe would not reach EOF when hull exits.
func runHull(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	o, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	e, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	cmd := exec.CommandContext(ctx, hullBin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = o, e
	err = cmd.Run()
	code = 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("hull %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	ob, _ := os.ReadFile(o.Name())
	eb, _ := os.ReadFile(e.Name())
	return string(ob), string(eb), code
}
