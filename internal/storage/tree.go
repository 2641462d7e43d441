package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// RemoveEmptyTree removes the directories and empty files under dir, and
// dir, once the mounts under it are gone (UnmountUnder). It never removes
// a file with content, so a mount that is somehow still there (whose
// files would show) stops it instead of being walked and emptied.
//
// What vanishes while it walks is not an error: another process cleaning
// up the same tree (a container's own cleanup beside its pod's, or the
// shim's cleanup command beside a live shim) may remove a part first.
func RemoveEmptyTree(dir string) error {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); errors.Is(err, unix.ENOENT) {
		return nil
	} else if err != nil {
		return err
	}
	return removeEmptyTree(dir, st.Dev)
}

// removeEmptyTree is RemoveEmptyTree below a directory on device dev: a
// directory on another device is a mount still there, never walked.
func removeEmptyTree(dir string, dev uint64) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if e.IsDir() {
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); errors.Is(err, unix.ENOENT) {
				continue
			} else if err != nil {
				return err
			}
			if st.Dev != dev {
				return fmt.Errorf("%s is still mounted: not removing it", p)
			}
			if err := removeEmptyTree(p, dev); err != nil {
				return err
			}
			continue
		}
		if info, err := e.Info(); err == nil && info.Size() == 0 {
			_ = os.Remove(p)
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
