package storage

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestRemoveEmptyTree(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tree")
	for _, d := range []string{"a/b/c", "d"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "a/b/point"), nil, 0o644)
	if err := RemoveEmptyTree(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("tree still there: %v", err)
	}
	// Gone already (another cleaner was first): not an error.
	if err := RemoveEmptyTree(dir); err != nil {
		t.Fatalf("missing tree: %v", err)
	}
}

func TestRemoveEmptyTreeKeepsContent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tree")
	if err := os.MkdirAll(filepath.Join(dir, "a"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A file with content is what a mount still there would show.
	if err := os.WriteFile(filepath.Join(dir, "a/data"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := RemoveEmptyTree(dir); err == nil {
		t.Fatal("a tree holding a file with content was removed")
	}
	if b, err := os.ReadFile(filepath.Join(dir, "a/data")); err != nil || string(b) != "x" {
		t.Fatalf("content touched: %q, %v", b, err)
	}
}

// A mount still under the tree stops the removal before it is walked: its
// files, even empty ones, are not the tree's to remove.
func TestRemoveEmptyTreeStopsAtMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	dir := filepath.Join(t.TempDir(), "tree")
	mnt := filepath.Join(dir, "a", "m")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(mnt, unix.MNT_DETACH)
	if err := os.WriteFile(filepath.Join(mnt, "empty"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := RemoveEmptyTree(dir); err == nil || !strings.Contains(err.Error(), "still mounted") {
		t.Fatalf("RemoveEmptyTree over a mount: %v", err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "empty")); err != nil {
		t.Fatalf("a file in the mount was removed: %v", err)
	}
}
