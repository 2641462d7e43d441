package integration

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/hull-runtime/hull/internal/config"
	"github.com/hull-runtime/hull/internal/oci"
	"github.com/hull-runtime/hull/internal/sandbox"
	"github.com/hull-runtime/hull/internal/vmm/qemu"
)

// busyboxBundle makes an OCI bundle whose rootfs holds busybox-static and
// its applets: the test image, built locally (there is no registry).
func busyboxBundle(t *testing.T, args ...string) string {
	t.Helper()
	const busybox = "/bin/busybox"
	_, err := os.Stat(busybox)
	require(t, err == nil, "busybox-static not installed: %v", err)
	b := t.TempDir()
	bin := filepath.Join(b, "rootfs", "bin")
	for _, d := range []string{bin, filepath.Join(b, "rootfs", "proc"), filepath.Join(b, "rootfs", "dev"), filepath.Join(b, "rootfs", "sys"), filepath.Join(b, "rootfs", "tmp"), filepath.Join(b, "rootfs", "etc")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, applet := range []string{"sh", "echo", "cat", "sleep", "id", "true", "false", "ls", "hostname", "stty", "dd", "wc"} {
		if err := os.Symlink("busybox", filepath.Join(bin, applet)); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(b, "rootfs", "etc", "passwd"), []byte("root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(b, "rootfs", "etc", "group"), []byte("root:x:0:\nnogroup:x:65534:\n"), 0o644)
	return b
}

func busyboxSpec(args ...string) *oci.Spec {
	s := oci.Default()
	s.Process.Terminal = false
	s.Process.Args = args
	return s
}

// bootWithShare boots a sandbox with a shared directory for containers.
func bootWithShare(t *testing.T) (*sandbox.Sandbox, config.Config) {
	t.Helper()
	requireVM(t)
	cfg := testConfig(t)
	id := uniqueID("ctr")
	shared := filepath.Join(cfg.Runtime.Root, id+"-shared")
	if err := os.Mkdir(shared, 0o700); err != nil {
		t.Fatal(err)
	}
	s, err := sandbox.Boot(testContext(t), sandbox.Options{
		ID: id, Config: cfg, Accel: qemu.TCG, RunDir: filepath.Join(cfg.Runtime.Root, id), SharedDir: shared,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Destroy(context.Background())
		os.Remove(shared)
		assertNoLeaks(t, "hull-"+id, cfg.Runtime.Root)
	})
	return s, cfg
}
