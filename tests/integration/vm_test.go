package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hull-runtime/hull/internal/config"
	"github.com/hull-runtime/hull/internal/image"
	"github.com/hull-runtime/hull/internal/sandbox"
	"github.com/hull-runtime/hull/internal/vmm/qemu"
)

func uniqueID(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

func boot(t *testing.T, cfg config.Config, id string) (*sandbox.Sandbox, error) {
	t.Helper()
	return sandbox.Boot(testContext(t), sandbox.Options{
		ID: id, Config: cfg, Accel: qemu.TCG,
		RunDir: filepath.Join(cfg.Runtime.Root, id),
	})
}

func TestBootCheckDetailsDestroy(t *testing.T) {
	requireVM(t)
	cfg := testConfig(t)
	cfg.Hypervisor.VCPUs = 2
	id := uniqueID("boot")
	s, err := boot(t, cfg, id)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	if err := s.Agent().Check(ctx); err != nil {
		t.Fatalf("check: %v", err)
	}
	v, err := s.Agent().Version(ctx)
	if err != nil {
		t.Fatalf("version: %v", err)
	}
	d, err := s.Agent().GuestDetails(ctx)
	if err != nil {
		t.Fatalf("guest details: %v", err)
	}
	m, err := image.LoadManifest(imageDir)
	if err != nil {
		t.Fatal(err)
	}
	if d.KernelRelease != m.KernelRelease {
		t.Errorf("guest kernel %q, image manifest says %q", d.KernelRelease, m.KernelRelease)
	}
	if d.OnlineCpus != 2 {
		t.Errorf("guest has %d cpus, want 2", d.OnlineCpus)
	}
	if mib := d.MemTotalBytes >> 20; mib < 150 || mib > 256 {
		t.Errorf("guest memory %d MiB, want about 256", mib)
	}
	if d.AgentVersion != v.AgentVersion || d.Channel != "serial" {
		t.Errorf("details %+v disagree with version %+v or channel", d, v)
	}
	if m.KernelPackage == image.OwnKernelPackage {
		// hull's kernel has its drivers built in: the channel this test
		// talks on proves virtio_console, the other tests the rest.
		if len(d.LoadedModules) != 0 || len(m.Modules) != 0 {
			t.Errorf("hull's kernel: modules %v loaded, image lists %v; want none", d.LoadedModules, m.Modules)
		}
	} else {
		for _, want := range []string{"virtio_console", "virtiofs", "virtio_net"} {
			if !strings.Contains(strings.Join(d.LoadedModules, ","), want) {
				t.Errorf("module %s not loaded: %v", want, d.LoadedModules)
			}
		}
	}
	pid := s.VMPid()
	start := time.Now()
	if err := s.Destroy(ctx); err != nil {
		t.Fatalf("destroy: %v", err)
	}
	t.Logf("boot %v, destroy %v", s.Timings(), time.Since(start))
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("qemu pid %d alive after destroy", pid)
	}
	assertNoLeaks(t, "hull-"+id, cfg.Runtime.Root)
}

// A QEMU killed under a call must fail the call promptly, and the sandbox
// must still clean up completely.
func TestQEMUKilledDuringCall(t *testing.T) {
	requireVM(t)
	cfg := testConfig(t)
	cfg.Agent.RequestTimeout = config.Duration(30 * time.Second)
	id := uniqueID("kill")
	s, err := boot(t, cfg, id)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	errc := make(chan error, 1)
	go func() {
		for {
			if _, err := s.Agent().GuestDetails(ctx); err != nil {
				errc <- err
				return
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	killed := time.Now()
	if err := syscall.Kill(s.VMPid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		t.Logf("call failed %v after the kill: %v", time.Since(killed), err)
	case <-time.After(5 * time.Second):
		t.Fatal("call still blocked 5s after QEMU was killed")
	}
	if err := s.Destroy(ctx); err != nil {
		t.Fatalf("destroy after kill: %v", err)
	}
	assertNoLeaks(t, "hull-"+id, cfg.Runtime.Root)
}

// fixtureImage builds an image whose /init is tests/fixtures/testinit.
func fixtureImage(t *testing.T) string {
	t.Helper()
	debs, _ := filepath.Glob(filepath.Join(cacheDir, "linux-image-*.deb"))
	require(t, len(debs) > 0, "no kernel package cached in %s (run make image)", cacheDir)
	dir := t.TempDir()
	init := filepath.Join(dir, "testinit")
	build := exec.Command("go", "build", "-o", init, "./tests/fixtures/testinit")
	build.Dir = repoRoot(t)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build testinit: %v\n%s", err, out)
	}
	out := filepath.Join(dir, "image")
	if _, err := image.Build(t.Context(), image.BuildOptions{OutDir: out, AgentPath: init, DebPath: debs[len(debs)-1], Modules: []string{}}); err != nil {
		t.Fatalf("fixture image: %v", err)
	}
	return out
}

func repoRoot(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(filepath.Dir(wd))
}

// A guest whose agent never answers: the boot fails at the deadline, says
// so, and leaves nothing behind.
func TestAgentNeverAnswers(t *testing.T) {
	requireVM(t)
	cfg := testConfig(t)
	cfg.Image.Dir = fixtureImage(t)
	cfg.Hypervisor.KernelParams = []string{"hull_fixture=sleep"}
	cfg.Hypervisor.BootTimeout = config.Duration(4 * time.Second)
	id := uniqueID("mute")
	start := time.Now()
	_, err := boot(t, cfg, id)
	took := time.Since(start)
	if err == nil {
		t.Fatal("boot succeeded with a mute agent")
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "boot_timeout") {
		t.Errorf("error does not say the deadline passed: %v", err)
	}
	if took > 4*time.Second+8*time.Second {
		t.Errorf("boot failed after %v, deadline 4s", took)
	}
	assertNoLeaks(t, "hull-"+id, cfg.Runtime.Root)
}

// A guest that powers off instead of serving: the boot fails at once, not at
// the deadline.
func TestGuestExitsBeforeAgent(t *testing.T) {
	requireVM(t)
	cfg := testConfig(t)
	cfg.Image.Dir = fixtureImage(t)
	cfg.Hypervisor.KernelParams = []string{"hull_fixture=poweroff"}
	cfg.Hypervisor.BootTimeout = config.Duration(60 * time.Second)
	id := uniqueID("exit")
	start := time.Now()
	_, err := boot(t, cfg, id)
	if err == nil {
		t.Fatal("boot succeeded without an agent")
	}
	if !strings.Contains(err.Error(), "exited before its agent answered") {
		t.Errorf("error does not say the VM exited: %v", err)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("boot took %v to notice the VM exited", took)
	}
	assertNoLeaks(t, "hull-"+id, cfg.Runtime.Root)
}

// A sandbox with a shared directory: virtiofsd serves it, the guest mounts
// it, and destroy leaves neither virtiofsd nor QEMU behind.
func TestSharedDirectory(t *testing.T) {
	requireVM(t)
	cfg := testConfig(t)
	shared := filepath.Join(t.TempDir(), "shared")
	id := uniqueID("shared")
	s, err := sandbox.Boot(testContext(t), sandbox.Options{
		ID: id, Config: cfg, Accel: qemu.TCG,
		RunDir: filepath.Join(cfg.Runtime.Root, id), SharedDir: shared, Hostname: "hull-test",
	})
	if err != nil {
		t.Fatal(err)
	}
	fsPid := s.VirtiofsdPid()
	if fsPid == 0 || syscall.Kill(fsPid, 0) != nil {
		t.Fatalf("virtiofsd not running (pid %d)", fsPid)
	}
	// A second CreateSandbox is refused: the sandbox exists.
	if err := s.Agent().CreateSandbox(testContext(t), sandbox.SharedFSTag, ""); err == nil {
		t.Error("second CreateSandbox accepted")
	}
	if err := s.Destroy(testContext(t)); err != nil {
		t.Fatal(err)
	}
	if syscall.Kill(fsPid, 0) == nil {
		t.Errorf("virtiofsd pid %d alive after destroy", fsPid)
	}
	assertNoLeaks(t, "hull-"+id, cfg.Runtime.Root)
	if _, err := os.Stat(shared); !os.IsNotExist(err) {
		t.Errorf("shared directory left: %v", err)
	}
}

// A shared directory that cannot be made: a clear error, nothing started.
func TestSharedDirectoryMissing(t *testing.T) {
	requireVM(t)
	cfg := testConfig(t)
	id := uniqueID("noshare")
	_, err := sandbox.Boot(testContext(t), sandbox.Options{
		ID: id, Config: cfg, Accel: qemu.TCG,
		RunDir: filepath.Join(cfg.Runtime.Root, id), SharedDir: "/nonexistent/x/shared",
	})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/x/shared") {
		t.Fatalf("want an error naming the directory, got %v", err)
	}
	assertNoLeaks(t, "hull-"+id, cfg.Runtime.Root)
}
