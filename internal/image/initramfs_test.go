package image

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func testSpec(t *testing.T) *initramfsSpec {
	t.Helper()
	agent := filepath.Join(t.TempDir(), "agent")
	if err := os.WriteFile(agent, []byte("#!agent\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &initramfsSpec{
		Release:   "6.1.0-test",
		AgentPath: agent,
		AgentSize: 8,
		Modules: []module{
			{Name: "virtio_ring", Path: "kernel/drivers/virtio/virtio_ring.ko"},
			{Name: "virtio_rng", Path: "kernel/drivers/char/hw_random/virtio-rng.ko", Depends: []string{"virtio_ring"}},
		},
		Data: map[string][]byte{
			"kernel/drivers/virtio/virtio_ring.ko":        []byte("ring"),
			"kernel/drivers/char/hw_random/virtio-rng.ko": []byte("rng module"),
		},
	}
}

// newcEntry is one entry of a newc archive as read by readNewc.
type newcEntry struct {
	name                 string
	ino, mode, uid, gid  uint32
	nlink, mtime         uint32
	rdevMajor, rdevMinor uint32
	data                 []byte
}

// readNewc parses a newc archive strictly: magic, alignment, a trailer and
// nothing after it. GNU cpio checks the format independently in
// TestInitramfsGNUCpio.
func readNewc(t *testing.T, b []byte) []newcEntry {
	t.Helper()
	var es []newcEntry
	off := 0
	align := func(n int) int { return (n + 3) &^ 3 }
	for {
		if off+110 > len(b) || string(b[off:off+6]) != "070701" {
			t.Fatalf("offset %d: no newc header", off)
		}
		var f [13]uint32
		for i := range f {
			v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
			if err != nil {
				t.Fatalf("offset %d field %d: %v", off, i, err)
			}
			f[i] = uint32(v)
		}
		namesize, size := int(f[11]), int(f[6])
		name := string(b[off+110 : off+110+namesize-1])
		if b[off+110+namesize-1] != 0 {
			t.Fatalf("%s: name not NUL-terminated", name)
		}
		off = align(off + 110 + namesize)
		if name == "TRAILER!!!" {
			if off != len(b) {
				t.Fatalf("%d bytes after the trailer", len(b)-off)
			}
			return es
		}
		e := newcEntry{name: name, ino: f[0], mode: f[1], uid: f[2], gid: f[3], nlink: f[4], mtime: f[5],
			rdevMajor: f[9], rdevMinor: f[10], data: b[off : off+size]}
		if f[12] != 0 {
			t.Errorf("%s: check field %d, want 0", name, f[12])
		}
		off = align(off + size)
		es = append(es, e)
	}
}

func writeTestInitramfs(t *testing.T, s *initramfsSpec) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := writeInitramfs(&buf, s); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestInitramfsDeterministic(t *testing.T) {
	s := testSpec(t)
	a := writeTestInitramfs(t, s)
	b := writeTestInitramfs(t, s)
	if !bytes.Equal(a, b) {
		t.Fatal("two writes of the same spec differ")
	}
	// Owners, mtimes and modes of the agent file on the host must not leak in.
	if err := os.Chmod(s.AgentPath, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(s.AgentPath, time.Unix(1e9, 0), time.Unix(1e9, 0)); err != nil {
		t.Fatal(err)
	}
	if c := writeTestInitramfs(t, s); !bytes.Equal(a, c) {
		t.Fatal("the agent file's mode or mtime changed the archive")
	}
}

func TestInitramfsContents(t *testing.T) {
	s := testSpec(t)
	data := writeTestInitramfs(t, s)
	if len(data)%4 != 0 {
		t.Errorf("archive length %d is not 4-byte aligned", len(data))
	}

	type file struct {
		mode uint32
		data string
	}
	got := map[string]file{}
	var names []string
	inodes := map[uint32]bool{}
	for _, e := range readNewc(t, data) {
		if e.uid != 0 || e.gid != 0 || e.mtime != 0 {
			t.Errorf("%s: uid %d gid %d mtime %d, want 0 0 0", e.name, e.uid, e.gid, e.mtime)
		}
		if strings.HasPrefix(e.name, "/") || strings.HasPrefix(e.name, ".") {
			t.Errorf("%s: name not relative to the root", e.name)
		}
		if len(names) > 0 && names[len(names)-1] >= e.name {
			t.Errorf("entries not sorted: %s after %s", e.name, names[len(names)-1])
		}
		if dir := path.Dir(e.name); dir != "." {
			if f, ok := got[dir]; !ok || f.mode&0o170000 != 0o040000 {
				t.Errorf("%s comes before its directory %s", e.name, dir)
			}
		}
		if e.name == "dev/console" && (e.rdevMajor != 5 || e.rdevMinor != 1) {
			t.Errorf("dev/console: rdev %d,%d, want 5,1", e.rdevMajor, e.rdevMinor)
		}
		if inodes[e.ino] {
			t.Errorf("%s: inode %d used twice", e.name, e.ino)
		}
		inodes[e.ino] = true
		names = append(names, e.name)
		got[e.name] = file{mode: e.mode, data: string(e.data)}
	}

	mods := "lib/modules/6.1.0-test/kernel/drivers/"
	want := map[string]file{
		"dev":                                   {mode: 0o040755},
		"dev/console":                           {mode: 0o020600},
		"etc":                                   {mode: 0o040755},
		"etc/hull":                              {mode: 0o040755},
		"etc/hull/image-release":                {mode: 0o100644, data: "6.1.0-test\n"},
		"etc/hull/modules.load":                 {mode: 0o100644, data: "virtio_ring /" + mods + "virtio/virtio_ring.ko\nvirtio_rng /" + mods + "char/hw_random/virtio-rng.ko\n"},
		"init":                                  {mode: 0o100755, data: "#!agent\n"},
		"lib":                                   {mode: 0o040755},
		"lib/modules":                           {mode: 0o040755},
		"lib/modules/6.1.0-test":                {mode: 0o040755},
		"lib/modules/6.1.0-test/kernel":         {mode: 0o040755},
		"lib/modules/6.1.0-test/kernel/drivers": {mode: 0o040755},
		mods + "char":                           {mode: 0o040755},
		mods + "char/hw_random":                 {mode: 0o040755},
		mods + "char/hw_random/virtio-rng.ko":   {mode: 0o100644, data: "rng module"},
		mods + "virtio":                         {mode: 0o040755},
		mods + "virtio/virtio_ring.ko":          {mode: 0o100644, data: "ring"},
		"mnt":                                   {mode: 0o040755},
		"proc":                                  {mode: 0o040755},
		"run":                                   {mode: 0o040755},
		"sys":                                   {mode: 0o040755},
		"tmp":                                   {mode: 0o041777},
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("missing %s", name)
			continue
		}
		if g != w {
			t.Errorf("%s: mode %v data %q, want mode %v data %q", name, g.mode, g.data, w.mode, w.data)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected entry %s", name)
		}
	}

}

// TestInitramfsGNUCpio checks the archive against the system's cpio, which
// the kernel's unpacker follows more closely than any Go library.
func TestInitramfsGNUCpio(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("cpio not installed")
	}
	cmd := exec.Command("cpio", "-itv", "--quiet")
	cmd.Stdin = bytes.NewReader(writeTestInitramfs(t, testSpec(t)))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -itv: %v: %s", err, out)
	}
	var console string
	for line := range strings.SplitSeq(string(out), "\n") {
		if strings.HasSuffix(line, " dev/console") {
			console = line
		}
	}
	if !strings.HasPrefix(console, "crw-------") || !strings.Contains(console, "5,   1") {
		t.Errorf("cpio lists dev/console as %q, want a char device 5, 1", console)
	}
}

func TestInitramfsMissingModuleData(t *testing.T) {
	s := testSpec(t)
	delete(s.Data, "kernel/drivers/virtio/virtio_ring.ko")
	if err := writeInitramfs(io.Discard, s); err == nil || !strings.Contains(err.Error(), "virtio_ring") {
		t.Fatalf("error %v, want one naming virtio_ring", err)
	}
}

func TestInitramfsAgentChanged(t *testing.T) {
	s := testSpec(t)
	s.AgentSize = 100 // the file shrank after it was checked
	if err := writeInitramfs(io.Discard, s); err == nil || !strings.Contains(err.Error(), "did it change") {
		t.Fatalf("error %v, want a short-copy error", err)
	}
}
