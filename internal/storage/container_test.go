package storage

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func requireRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
}

func bundle(t *testing.T) string {
	b := t.TempDir()
	for _, d := range []string{"rootfs/bin", "data"} {
		if err := os.MkdirAll(filepath.Join(b, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(b, "rootfs/bin/sh"), []byte("x"), 0o755)
	os.WriteFile(filepath.Join(b, "data/file"), []byte("data"), 0o644)
	return b
}

func mountedUnder(dir string) bool {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	return strings.Contains(string(b), dir)
}

func TestPrepareContainer(t *testing.T) {
	requireRoot(t)
	b := bundle(t)
	shared := newShared(t)
	spec := &specs.Spec{
		Root: &specs.Root{Path: "rootfs", Readonly: true},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/data", Type: "bind", Source: "data", Options: []string{"rbind", "ro"}},
			{Destination: "/etc/f", Source: filepath.Join(b, "data/file"), Options: []string{"bind"}},
			{Destination: "/new/dir", Type: "tmpfs", Source: "tmpfs"},
		},
	}
	c, guest, err := PrepareContainer(shared, "c1", b, spec)
	if err != nil {
		t.Fatal(err)
	}
	if guest.Root.Path != "/run/hull/shared/c1/rootfs" || spec.Root.Path != "rootfs" {
		t.Errorf("guest root %q, spec root %q (the input must not change)", guest.Root.Path, spec.Root.Path)
	}
	if guest.Mounts[0].Source != "proc" || guest.Mounts[1].Source != "/run/hull/shared/c1/mount-1" || guest.Mounts[2].Source != "/run/hull/shared/c1/mount-2" {
		t.Errorf("guest mounts %+v", guest.Mounts)
	}
	if _, err := os.Stat(filepath.Join(shared.View, "c1/rootfs/bin/sh")); err != nil {
		t.Errorf("rootfs not shared: %v", err)
	}
	// Read-only is the host's doing: not even root writes there, nor in
	// the tree around the container mounts.
	for _, p := range []string{"c1/rootfs/new", "c1/mount-1/new", "c1/new", "new"} {
		if err := os.WriteFile(filepath.Join(shared.View, p), nil, 0o644); err == nil {
			t.Errorf("wrote %s in the read-only view", p)
		}
	}
	// Missing mount points are made in the rootfs, a file for a file.
	if st, err := os.Stat(filepath.Join(b, "rootfs/new/dir")); err != nil || !st.IsDir() {
		t.Errorf("mount point /new/dir: %v", err)
	}
	if st, err := os.Stat(filepath.Join(b, "rootfs/etc/f")); err != nil || !st.Mode().IsRegular() {
		t.Errorf("mount point /etc/f: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(shared.View, "c1/mount-2")); err != nil || string(b) != "data" {
		t.Errorf("file bind mount: %q %v", b, err)
	}
	if err := c.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if mountedUnder(shared.View + "/") {
		t.Error("mounts left after cleanup")
	}
	if _, err := os.Stat(filepath.Join(shared.Backing, "c1")); !os.IsNotExist(err) {
		t.Errorf("container directory left: %v", err)
	}
}

func TestPrepareContainerRefusesEscapes(t *testing.T) {
	requireRoot(t)
	for name, tc := range map[string]struct {
		setup func(b string) *specs.Spec
		is    error
		want  string
	}{
		"rootfs symlinked out of the bundle": {func(b string) *specs.Spec {
			os.Symlink("/", filepath.Join(b, "evil"))
			return &specs.Spec{Root: &specs.Root{Path: "evil"}}
		}, errdefs.ErrInvalidArgument, "outside the bundle"},
		"mount destination symlinked out of the rootfs": {func(b string) *specs.Spec {
			os.Symlink("/tmp", filepath.Join(b, "rootfs", "out"))
			return &specs.Spec{Root: &specs.Root{Path: "rootfs"}, Mounts: []specs.Mount{{Destination: "/out/x", Type: "tmpfs", Source: "tmpfs"}}}
		}, errdefs.ErrInvalidArgument, "/out/x"},
		"missing rootfs": {func(b string) *specs.Spec {
			return &specs.Spec{Root: &specs.Root{Path: "nothere"}}
		}, errdefs.ErrNotFound, "root.path"},
		"no root": {func(b string) *specs.Spec { return &specs.Spec{} }, errdefs.ErrInvalidArgument, "root.path"},
		"missing mount source": {func(b string) *specs.Spec {
			return &specs.Spec{Root: &specs.Root{Path: "rootfs"}, Mounts: []specs.Mount{{Destination: "/x", Type: "bind", Source: "/nonexistent"}}}
		}, errdefs.ErrNotFound, "/nonexistent"},
	} {
		t.Run(name, func(t *testing.T) {
			b := bundle(t)
			shared := newShared(t)
			_, _, err := PrepareContainer(shared, "c1", b, tc.setup(b))
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want %v naming %q, got %v", tc.is, tc.want, err)
			}
			if mountedUnder(shared.View + "/") {
				t.Error("mounts left after a failed prepare")
			}
			if _, err := os.Stat(filepath.Join(shared.Backing, "c1")); !os.IsNotExist(err) {
				t.Errorf("container directory left: %v", err)
			}
		})
	}
}

func newShared(t *testing.T) *Shared {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "shared")
	s, err := NewShared(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		if mountedUnder(dir) {
			t.Error("mounts left after Close")
		}
	})
	return s
}
