package image

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/containerd/errdefs"
)

// atomicFile is an output file that becomes visible under its final name only
// once complete, so a runtime starting a VM never reads a half-written kernel
// or initramfs, and a failed build leaves the previous image in place.
type atomicFile struct {
	*os.File
	dir  string
	name string
	done bool
}

func createAtomic(dir, name string) (*atomicFile, error) {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return nil, outDirError(dir, err)
	}
	return &atomicFile{File: f, dir: dir, name: name}, nil
}

// commit makes the file durable and moves it to its final name.
func (a *atomicFile) commit(mode os.FileMode) error {
	if err := a.Chmod(mode); err != nil {
		return fmt.Errorf("chmod %s: %w", a.Name(), err)
	}
	// Without the sync a crash soon after the rename can leave an empty file
	// under the final name, which would pass for an image until Verify runs.
	if err := a.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", a.Name(), err)
	}
	if err := a.Close(); err != nil {
		return fmt.Errorf("close %s: %w", a.Name(), err)
	}
	final := filepath.Join(a.dir, a.name)
	if err := os.Rename(a.Name(), final); err != nil {
		return fmt.Errorf("rename %s to %s: %w", a.Name(), final, err)
	}
	a.done = true
	return nil
}

// abort removes the temporary file; after commit it does nothing, so it can be
// deferred unconditionally.
func (a *atomicFile) abort() {
	if a.done {
		return
	}
	a.done = true
	_ = a.Close()
	_ = os.Remove(a.Name())
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// buildLockFile, in the output directory, is held by the build writing there.
const buildLockFile = ".build.lock"

// lockOutDir takes an exclusive lock on the output directory for the length
// of a build, since two builds into one directory would interleave their
// renames into an image that matches neither. Holding the lock, it removes
// the temporary files of builds that were killed before they could.
func lockOutDir(dir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, buildLockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, outDirError(dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another image build is writing to %s: %w", dir, errdefs.ErrConflict)
		}
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	for _, name := range []string{KernelFile, KernelELFFile, InitrdFile, ManifestFile} {
		stale, _ := filepath.Glob(filepath.Join(dir, "."+name+".tmp-*"))
		for _, p := range stale {
			_ = os.Remove(p)
		}
	}
	return func() { f.Close() }, nil
}
