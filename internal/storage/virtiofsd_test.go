package storage

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A virtiofsd that refuses its options exits at once; the start does not
// wait for that, and ExitedAtStart reports it with what it printed.
func TestVirtiofsdExitedAtStart(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "virtiofsd")
	script := "#!/bin/sh\necho 'fuse: unknown option(s): bad' >&2\nexit 1\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	shared := filepath.Join(dir, "shared")
	os.Mkdir(shared, 0o755)
	start := time.Now()
	v, err := StartVirtiofsd(context.Background(), VirtiofsdConfig{Binary: bin, SharedDir: shared, RunDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Stop()
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("start took %s", d)
	}
	err = v.ExitedAtStart(5 * time.Second)
	if err == nil || !strings.Contains(err.Error(), "unknown option") {
		t.Fatalf("ExitedAtStart: %v, want virtiofsd's own message", err)
	}
}

// One that ends cleanly, as when QEMU failed on another device and left
// it, is not the cause.
func TestVirtiofsdCleanExitIsNotTheCause(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "virtiofsd")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	shared := filepath.Join(dir, "shared")
	os.Mkdir(shared, 0o755)
	v, err := StartVirtiofsd(context.Background(), VirtiofsdConfig{Binary: bin, SharedDir: shared, RunDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Stop()
	<-v.Done()
	if err := v.ExitedAtStart(time.Second); err != nil {
		t.Fatalf("ExitedAtStart after a clean exit: %v", err)
	}
}

// One that runs is reported as running once the wait is over.
func TestVirtiofsdRunning(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "virtiofsd")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nexec sleep 30\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	shared := filepath.Join(dir, "shared")
	os.Mkdir(shared, 0o755)
	v, err := StartVirtiofsd(context.Background(), VirtiofsdConfig{Binary: bin, SharedDir: shared, RunDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Stop()
	if err := v.ExitedAtStart(100 * time.Millisecond); err != nil {
		t.Fatalf("ExitedAtStart of a running virtiofsd: %v", err)
	}
}
