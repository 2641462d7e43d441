package sandbox

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/hull-runtime/hull/internal/network"
	"github.com/hull-runtime/hull/internal/state"
)

func TestRecordRoundTrip(t *testing.T) {
	dir := t.TempDir()
	rec := &Record{
		Version: recordVersion, ID: "sb1",
		QEMU:      &ProcessRecord{Pid: 123, Start: 456},
		Virtiofsd: &ProcessRecord{Pid: 124, Start: 457},
		SharedDir: "/run/hull/c1/shared", View: "/run/hull/c1/shared/view",
		Network: &network.Record{Path: "/var/run/netns/x", NSDev: 4, NSIno: 4026532000, Links: []network.LinkRecord{{
			Name: "eth0", Index: 2, MAC: "02:00:00:00:00:01", MTU: 1500, Up: true, Tap: "tap0_hull", Ingress: true,
			Addrs:  []network.AddrRecord{{Addr: "10.0.0.2/24", Flags: 0x80, PreferedLft: -1, ValidLft: -1}},
			Routes: []network.RouteRecord{{Family: unix.AF_INET, Gw: "10.0.0.1", Protocol: 3, Table: 254, Type: 1}},
		}}},
	}
	if err := writeRecord(dir, rec); err != nil {
		t.Fatal(err)
	}
	if err := writeRecord(dir, rec); err != nil { // replaces
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, RecordFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("record file: %v %v", st.Mode(), err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("files left beside the record: %v", ents)
	}
	back, err := ReadRecord(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, rec) {
		t.Fatalf("read back\n%+v\nwant\n%+v", back, rec)
	}

	if _, err := ReadRecord(t.TempDir()); !errdefs.IsNotFound(err) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing record: %v", err)
	}
	for name, bad := range map[string]Record{
		"version":  {Version: 99},
		"relative": {Version: recordVersion, SharedDir: "run/x"},
		"root":     {Version: recordVersion, SharedDir: "/"},
		"unclean":  {Version: recordVersion, SharedDir: "/run/../x"},
		"view":     {Version: recordVersion, SharedDir: "/run/x", View: "/elsewhere/view"},
	} {
		if err := writeRecord(dir, &bad); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadRecord(dir); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: %v", name, err)
		}
	}
	os.WriteFile(filepath.Join(dir, RecordFile), []byte("{"), 0o600)
	if _, err := ReadRecord(dir); !errdefs.IsInvalidArgument(err) {
		t.Errorf("corrupt record: %v", err)
	}
	os.Chmod(filepath.Join(dir, RecordFile), 0o622)
	if _, err := ReadRecord(dir); !errdefs.IsInvalidArgument(err) {
		t.Errorf("writable by others: %v", err)
	}
}

// sleeper starts a process that stands for QEMU or virtiofsd.
func sleeper(t *testing.T) (*exec.Cmd, *ProcessRecord) {
	t.Helper()
	cmd := exec.Command("sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	p := processRecord(cmd.Process.Pid)
	if p == nil || p.Start == 0 {
		t.Fatalf("no start time for pid %d", cmd.Process.Pid)
	}
	return cmd, p
}

func exited(cmd *exec.Cmd) bool {
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(5 * time.Second):
		return false
	}
}

// A sandbox whose owner died: processes, a view mount with a container
// mount in it, a console log. Reclaim releases it all, and a second call
// is a no-op.
func TestReclaim(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mounts)")
	}
	root := t.TempDir()
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "keep"), []byte("host data"), 0o600)
	runDir := filepath.Join(root, "vm")
	shared := filepath.Join(root, "shared")
	view := filepath.Join(shared, "view")
	for _, d := range []string{runDir, filepath.Join(shared, "fs", "c1", "rootfs"), view} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// The shared directory on itself, unbindable, as storage.NewShared
	// leaves it.
	if err := unix.Mount(shared, shared, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(shared, unix.MNT_DETACH) })
	if err := unix.Mount("", shared, "", unix.MS_PRIVATE, ""); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(filepath.Join(shared, "fs"), view, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(view, unix.MNT_DETACH) })
	if err := unix.Mount("", shared, "", unix.MS_UNBINDABLE, ""); err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(view, "c1", "rootfs")
	if err := unix.Mount(src, rootfs, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(rootfs, unix.MNT_DETACH) })
	os.WriteFile(filepath.Join(runDir, "console.log"), []byte("boot"), 0o600)

	qemuCmd, qemuRec := sleeper(t)
	fsCmd, fsRec := sleeper(t)
	rec := &Record{Version: recordVersion, ID: "sb", QEMU: qemuRec, Virtiofsd: fsRec, SharedDir: shared, View: view}
	if err := writeRecord(runDir, rec); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := Reclaim(ctx, runDir); err != nil {
		t.Fatal(err)
	}
	if !exited(qemuCmd) || !exited(fsCmd) {
		t.Fatal("recorded processes still run")
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), root) {
		t.Fatalf("mounts left under %s", root)
	}
	for _, p := range []string{runDir, shared} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s left: %v", p, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(src, "keep")); err != nil || string(b) != "host data" {
		t.Fatalf("the mounted source was touched: %q %v", b, err)
	}
	if err := Reclaim(ctx, runDir); err != nil {
		t.Fatalf("second reclaim: %v", err)
	}
}

// A recorded pid now names another process (its start time differs):
// Reclaim must leave it alone.
func TestReclaimSparesRecycledPid(t *testing.T) {
	runDir := filepath.Join(t.TempDir(), "vm")
	os.Mkdir(runDir, 0o700)
	cmd, p := sleeper(t)
	p.Start++
	if err := writeRecord(runDir, &Record{Version: recordVersion, ID: "sb", QEMU: p}); err != nil {
		t.Fatal(err)
	}
	if err := Reclaim(t.Context(), runDir); err != nil {
		t.Fatal(err)
	}
	if !state.Alive(cmd.Process.Pid, p.Start-1) {
		t.Fatal("a process with another start time was killed")
	}
	if _, err := os.Lstat(runDir); !os.IsNotExist(err) {
		t.Fatalf("run dir left: %v", err)
	}
}

func TestReclaimWithoutRecord(t *testing.T) {
	parent := t.TempDir()
	runDir := filepath.Join(parent, "vm")
	if err := Reclaim(t.Context(), runDir); err != nil {
		t.Fatalf("missing run dir: %v", err)
	}
	os.Mkdir(runDir, 0o700)
	os.WriteFile(filepath.Join(runDir, "console.log"), nil, 0o600)
	if err := Reclaim(t.Context(), runDir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(runDir); !os.IsNotExist(err) {
		t.Fatalf("run dir left: %v", err)
	}
	// A file hull does not make stays, and says so.
	os.Mkdir(runDir, 0o700)
	os.WriteFile(filepath.Join(runDir, "other"), []byte("x"), 0o600)
	if err := Reclaim(t.Context(), runDir); err == nil {
		t.Fatal("a run dir with a foreign file was reported removed")
	}
	if _, err := os.Stat(filepath.Join(runDir, "other")); err != nil {
		t.Fatal(err)
	}
}

// A record that cannot be read stops Reclaim, and stays.
func TestReclaimCorruptRecord(t *testing.T) {
	runDir := t.TempDir()
	os.WriteFile(filepath.Join(runDir, RecordFile), []byte("not json"), 0o600)
	if err := Reclaim(t.Context(), runDir); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("corrupt record: %v", err)
	}
	if _, err := os.Stat(filepath.Join(runDir, RecordFile)); err != nil {
		t.Fatal(err)
	}
}
