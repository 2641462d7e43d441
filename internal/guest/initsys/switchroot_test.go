package initsys

import (
	"os"
	"path/filepath"
	"testing"
)

// moveTree copies files, links and directories, and deletes them from the
// source.
func TestMoveTree(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(src, "lib/modules/6.1"), 0o755))
	must(os.WriteFile(filepath.Join(src, "init"), []byte("agent"), 0o755))
	must(os.WriteFile(filepath.Join(src, "lib/modules/6.1/a.ko"), []byte("module"), 0o644))
	must(os.Symlink("init", filepath.Join(src, "link")))

	var st SwitchStats
	must(moveTree(src, dst, &st))
	if st.Files != 3 || st.Bytes != int64(len("agent")+len("module")) {
		t.Errorf("stats %+v", st)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "lib/modules/6.1/a.ko")); err != nil || string(b) != "module" {
		t.Errorf("module: %q, %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(dst, "init")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("init: %v, %v", fi, err)
	}
	if l, err := os.Readlink(filepath.Join(dst, "link")); err != nil || l != "init" {
		t.Errorf("link: %q, %v", l, err)
	}
	if ents, _ := os.ReadDir(src); len(ents) != 0 {
		t.Errorf("left in the source: %v", ents)
	}
}
