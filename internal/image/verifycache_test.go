package image

import (
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
