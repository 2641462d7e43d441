package image

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
)

func TestVerifyCachedNoticesChanges(t *testing.T) {
	dir, _ := writeTestImage(t)
	cache := t.TempDir()
	if _, _, _, err := VerifyCached(dir, cache); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cache, ".image-verified.json")); err != nil {
		t.Fatalf("no record after a good check: %v", err)
	}
	// A second check uses the record.
	if _, _, _, err := VerifyCached(dir, cache); err != nil {
		t.Fatal(err)
	}
	// Same size, other bytes: the ctime changes, so it is hashed again.
	f, err := os.OpenFile(filepath.Join(dir, InitrdFile), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("X"), 0)
	f.Close()
	if _, _, _, err := VerifyCached(dir, cache); !errors.Is(err, errdefs.ErrDataLoss) {
		t.Fatalf("a changed initrd passed the cached check: %v", err)
	}
}

// Two images checked in turn both stay recorded; an image that changed
// loses its entries.
func TestVerifyCachedKeepsOtherImages(t *testing.T) {
	a, _ := writeTestImage(t)
	b, _ := writeTestImage(t)
	cache := t.TempDir()
	for _, dir := range []string{a, b} {
		if _, _, _, err := VerifyCached(dir, cache); err != nil {
			t.Fatal(err)
		}
	}
	known := readVerified(t, cache)
	if len(known) != 4 {
		t.Fatalf("%d entries after two images, want 4: %v", len(known), known)
	}
	// Replace a's initrd (a new inode): its old entry must go on the next
	// record.
	p := filepath.Join(a, InitrdFile)
	data, _ := os.ReadFile(p)
	os.Remove(p)
	os.WriteFile(p, data, 0o444)
	if _, _, _, err := VerifyCached(a, cache); err != nil {
		t.Fatal(err)
	}
	if known := readVerified(t, cache); len(known) != 4 {
		t.Fatalf("%d entries, want 4 (the stale one replaced): %v", len(known), known)
	}
	if p, ok := fingerprintPath("/a:b/c:1:2:3:4.5:6.7"); !ok || p != "/a:b/c" {
		t.Errorf("fingerprintPath: %q %v", p, ok)
	}
}

func readVerified(t *testing.T, cache string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(cache, VerifiedCacheFile))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
