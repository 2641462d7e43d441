package qemu

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCachedProbe(t *testing.T) {
	path := filepath.Join(t.TempDir(), ProbeCacheFile)
	now := func() time.Time { return time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC) }
	calls := 0
	probeWith := func(err error) func() error {
		return func() error { calls++; return err }
	}

	if err := cachedProbe(path, "k1", now, probeWith(nil)); err != nil || calls != 1 {
		t.Fatalf("first probe: %v, %d calls", err, calls)
	}
	if err := cachedProbe(path, "k1", now, probeWith(errors.New("must not run"))); err != nil || calls != 1 {
		t.Fatalf("same key: %v, %d calls; want the recorded success without a probe", err, calls)
	}

	// Another key (a module loaded, QEMU upgraded...) probes again, and a
	// failure is remembered with what it said.
	broken := errors.New("qemu with kvm cannot run a guest here: assertion failed")
	if err := cachedProbe(path, "k2", now, probeWith(broken)); err != broken || calls != 2 {
		t.Fatalf("new key: %v, %d calls", err, calls)
	}
	err := cachedProbe(path, "k2", now, probeWith(nil))
	if err == nil || calls != 2 || !strings.Contains(err.Error(), broken.Error()) || !strings.Contains(err.Error(), "hull check") {
		t.Fatalf("recorded failure: %v, %d calls", err, calls)
	}

	// A timeout is not KVM's verdict: not recorded.
	slow := fmt.Errorf("kvm guest did not run within 5s: %w", errProbeTimeout)
	if err := cachedProbe(path, "k3", now, probeWith(slow)); !errors.Is(err, errProbeTimeout) || calls != 3 {
		t.Fatalf("timeout: %v, %d calls", err, calls)
	}
	if err := cachedProbe(path, "k3", now, probeWith(nil)); err != nil || calls != 4 {
		t.Fatalf("after a timeout: %v, %d calls; want a new probe", err, calls)
	}

	// A record that is not one costs a probe, nothing more.
	os.WriteFile(path, []byte("{nope"), 0o600)
	if err := cachedProbe(path, "k3", now, probeWith(nil)); err != nil || calls != 5 {
		t.Fatalf("corrupt record: %v, %d calls", err, calls)
	}
	// A directory that cannot take the record costs a probe each time.
	gone := filepath.Join(t.TempDir(), "missing", ProbeCacheFile)
	for i := 0; i < 2; i++ {
		if err := cachedProbe(gone, "k1", now, probeWith(nil)); err != nil {
			t.Fatal(err)
		}
	}
	if calls != 7 {
		t.Fatalf("%d calls, want 7", calls)
	}
}

func TestProbeKey(t *testing.T) {
	dir := t.TempDir()
	oldBoot, oldKVM := bootIDPath, kvmDevPath
	t.Cleanup(func() { bootIDPath, kvmDevPath = oldBoot, oldKVM })
	bootIDPath = filepath.Join(dir, "boot_id")
	kvmDevPath = filepath.Join(dir, "kvm")
	mods := filepath.Join(dir, "module")
	qemuBin := filepath.Join(dir, "qemu")
	os.WriteFile(bootIDPath, []byte("b1\n"), 0o644)
	os.WriteFile(qemuBin, []byte("qemu 7.2"), 0o755)
	os.MkdirAll(filepath.Join(mods, "kvm"), 0o755)
	os.MkdirAll(filepath.Join(mods, "ext4"), 0o755)

	key := func() string {
		t.Helper()
		k, err := probeKey(qemuBin, mods)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	seen := map[string]string{}
	step := func(what string) {
		t.Helper()
		k := key()
		if prev, ok := seen[k]; ok {
			t.Errorf("%s: same key as %s", what, prev)
		}
		seen[k] = what
	}
	step("start")
	if key() != key() {
		t.Fatal("the key of an unchanged host changes")
	}
	os.MkdirAll(filepath.Join(mods, "kvm_intel"), 0o755)
	step("kvm_intel loaded")
	os.MkdirAll(filepath.Join(mods, "xfs"), 0o755)
	if _, ok := seen[key()]; !ok {
		t.Error("a module other than kvm's changed the key")
	}
	os.WriteFile(kvmDevPath, nil, 0o600)
	step("/dev/kvm appeared")
	os.Chmod(kvmDevPath, 0o666)
	step("/dev/kvm permissions")
	os.WriteFile(qemuBin, []byte("qemu 8.0, longer"), 0o755)
	step("qemu replaced")
	os.WriteFile(bootIDPath, []byte("b2\n"), 0o644)
	step("reboot")
	if _, err := probeKey(filepath.Join(dir, "no-qemu"), mods); err == nil {
		t.Error("a missing QEMU binary gave a key")
	}
}
