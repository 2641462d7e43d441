package kmod

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hull-runtime/hull/internal/guest/cmdline"
)

func TestParseList(t *testing.T) {
	in := `# load order matters
virtio_ring /lib/modules/virtio_ring.ko

   virtio   /lib/modules/virtio.ko   
	# indented comment
virtio_mmio /lib/modules/virtio_mmio.ko
`
	got, err := ParseList(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Module{
		{"virtio_ring", "/lib/modules/virtio_ring.ko"},
		{"virtio", "/lib/modules/virtio.ko"},
		{"virtio_mmio", "/lib/modules/virtio_mmio.ko"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestParseListErrors(t *testing.T) {
	for _, in := range []string{
		"virtio\n",
		"virtio /a.ko extra\n",
		"virtio lib/virtio.ko\n",
		"virtio.ko /lib/virtio.ko\n",
		"ok /ok.ko\n/lib/virtio.ko virtio\n",
	} {
		if mods, err := ParseList(strings.NewReader(in)); err == nil {
			t.Errorf("ParseList(%q) = %v, want error", in, mods)
		}
	}
	if _, err := ParseList(strings.NewReader("a /a.ko\nb\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("error %v does not name line 2", err)
	}
}

func TestParams(t *testing.T) {
	line := `console=ttyS0 virtio_mmio.device=512@0xfeb00e00:12 virtio.x=1 ` +
		`virtio_mmio.device=512@0xfeb00c00:11 virtio-mmio.force_legacy virtio_mmio.=x virtio_mmio ` +
		`foo-bar.name="a b" foo_bar.n=2 panic=-1 -- virtio_mmio.device=after-dashes`
	ps := cmdline.Parse(line)
	for _, tc := range []struct{ module, want string }{
		{"virtio_mmio", "device=512@0xfeb00e00:12 device=512@0xfeb00c00:11 force_legacy"},
		{"virtio-mmio", "device=512@0xfeb00e00:12 device=512@0xfeb00c00:11 force_legacy"},
		{"virtio", "x=1"},
		{"foo_bar", `name="a b" n=2`},
		{"virtio_ring", ""},
		{"console", ""},
	} {
		if got := Params(tc.module, ps); got != tc.want {
			t.Errorf("Params(%q) = %q, want %q", tc.module, got, tc.want)
		}
	}
}

// fakeFinit stands in for finit_module for the length of a test.
func fakeFinit(t *testing.T, f func(fd int, params string) error) {
	t.Helper()
	old := finitModule
	finitModule = func(fd int, params string, flags int) error {
		if flags != 0 {
			t.Errorf("flags = %#x, want 0", flags)
		}
		return f(fd, params)
	}
	t.Cleanup(func() { finitModule = old })
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	mods := []Module{}
	for _, name := range []string{"virtio", "virtio_mmio", "broken", "vsock", "loaded"} {
		p := filepath.Join(dir, name+".ko")
		if err := os.WriteFile(p, []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
		mods = append(mods, Module{name, p})
	}
	mods = append(mods, Module{"missing", filepath.Join(dir, "missing.ko")})

	interrupted := false
	var calls []string
	fakeFinit(t, func(fd int, params string) error {
		b := make([]byte, 32)
		n, _ := unix.Pread(fd, b, 0)
		name := string(b[:n])
		calls = append(calls, name+":"+params)
		switch name {
		case "broken":
			return unix.ENOEXEC
		case "loaded":
			return unix.EEXIST
		case "vsock":
			if !interrupted {
				interrupted = true
				return unix.EINTR
			}
		}
		return nil
	})

	rs := Load(mods, cmdline.Parse("virtio_mmio.device=1 virtio_mmio.device=2 vsock.x=y"))
	wantCalls := []string{"virtio:", "virtio_mmio:device=1 device=2", "broken:", "vsock:x=y", "vsock:x=y", "loaded:"}
	if !reflect.DeepEqual(calls, wantCalls) {
		t.Errorf("finit calls %q, want %q", calls, wantCalls)
	}
	if got, want := Loaded(rs), []string{"virtio", "virtio_mmio", "vsock", "loaded"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Loaded = %v, want %v", got, want)
	}
	if !rs[4].AlreadyLoaded || rs[0].AlreadyLoaded {
		t.Errorf("AlreadyLoaded wrong: %+v", rs)
	}
	if !errors.Is(rs[2].Err, unix.ENOEXEC) || !strings.Contains(rs[2].Err.Error(), "broken") {
		t.Errorf("broken: err %v", rs[2].Err)
	}
	if !errors.Is(rs[5].Err, os.ErrNotExist) {
		t.Errorf("missing: err %v", rs[5].Err)
	}
	err := Errors(rs)
	if !errors.Is(err, unix.ENOEXEC) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Errors = %v", err)
	}
	if Errors(rs[:2]) != nil {
		t.Error("Errors of successes is not nil")
	}
}
