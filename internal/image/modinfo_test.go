package image

import (
	"bytes"
	"debug/elf"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestParseModinfo(t *testing.T) {
	ko := makeModule(t, "license=GPL", "depends=virtio_ring,virtio,virtio-ring", "alias=virtio:d00000004v*", "name=virtio_rng", "vermagic=6.1.0 SMP")
	m, err := parseModinfo(bytes.NewReader(ko), "kernel/drivers/char/hw_random/virtio-rng.ko")
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "virtio_rng" || m.Path != "kernel/drivers/char/hw_random/virtio-rng.ko" {
		t.Errorf("name %q path %q", m.Name, m.Path)
	}
	if want := []string{"virtio", "virtio_ring"}; !slices.Equal(m.Depends, want) {
		t.Errorf("depends %q, want %q (sorted, normalised, unique)", m.Depends, want)
	}
}

func TestParseModinfoNameFromFile(t *testing.T) {
	// Without name= the kernel derives the name from the file, '-' as '_'.
	m, err := parseModinfo(bytes.NewReader(makeModule(t, "depends=")), "kernel/x/nd-virtio.ko")
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "nd_virtio" || len(m.Depends) != 0 {
		t.Errorf("got %+v", m)
	}
}

func TestParseModinfoErrors(t *testing.T) {
	noModinfo := makeELF(t, elfSpec{typ: elf.ET_REL, sections: map[string][]byte{".text": {0xc3}}})
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"not ELF":     {[]byte("hello, world"), "not an ELF object"},
		"no modinfo":  {noModinfo, "no .modinfo section"},
		"bad name":    {makeModule(t, "name=../../etc"), "invalid module name"},
		"bad depends": {makeModule(t, "name=a", "depends=b c"), "invalid dependency name"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parseModinfo(bytes.NewReader(tc.data), "kernel/a.ko")
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "kernel/a.ko") {
				t.Fatalf("error %v, want one naming kernel/a.ko and %q", err, tc.want)
			}
		})
	}
}

func TestParseBuiltin(t *testing.T) {
	b, err := parseBuiltin(strings.NewReader("kernel/fs/overlayfs/overlay.ko\n\nkernel/drivers/char/hw_random/virtio-rng.ko\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 2 || !b["overlay"] || !b["virtio_rng"] {
		t.Errorf("got %v", b)
	}
}

// testIndex builds a module index from "name: dep dep" lines.
func testIndex(t *testing.T, builtin []string, lines ...string) *moduleIndex {
	t.Helper()
	ix := newModuleIndex()
	for _, l := range lines {
		name, deps, _ := strings.Cut(l, ":")
		m := module{Name: name, Path: "kernel/" + name + ".ko", Depends: strings.Fields(deps)}
		slices.Sort(m.Depends)
		ix.add(m)
	}
	for _, b := range builtin {
		ix.builtin[b] = true
	}
	return ix
}

func loadNames(r resolution) []string {
	var names []string
	for _, m := range r.Load {
		names = append(names, m.Name)
	}
	return names
}

func TestResolveOrder(t *testing.T) {
	ix := testIndex(t, []string{"overlay", "crc32c"},
		"virtio:",
		"virtio_ring: virtio",
		"virtio_mmio: virtio virtio_ring",
		"virtio_console: virtio virtio_ring",
		"fuse:",
		"virtiofs: fuse virtio virtio_ring",
		"failover:",
		"net_failover: failover",
		"virtio_net: net_failover virtio virtio_ring",
		"libcrc: crc32c", // a built-in dependency is skipped
	)
	for name, tc := range map[string]struct {
		wanted      []string
		load        []string
		builtinSkip []string
	}{
		"deps first, wanted order kept": {
			wanted: []string{"virtio_mmio", "virtiofs", "virtio_net", "virtio_console"},
			load:   []string{"virtio", "virtio_ring", "virtio_mmio", "fuse", "virtiofs", "failover", "net_failover", "virtio_net", "virtio_console"},
		},
		"wanted order changes the order": {
			wanted: []string{"virtio_net", "virtio_mmio"},
			load:   []string{"failover", "net_failover", "virtio", "virtio_ring", "virtio_net", "virtio_mmio"},
		},
		"dependency also wanted, dashes, duplicates": {
			wanted: []string{"virtio-mmio", "virtio", "virtio_mmio"},
			load:   []string{"virtio", "virtio_ring", "virtio_mmio"},
		},
		"built-in skipped": {
			wanted:      []string{"overlay", "libcrc", "overlay"},
			load:        []string{"libcrc"},
			builtinSkip: []string{"overlay"},
		},
		"nothing": {},
	} {
		t.Run(name, func(t *testing.T) {
			res, err := ix.resolve(tc.wanted)
			if err != nil {
				t.Fatal(err)
			}
			if got := loadNames(res); !slices.Equal(got, tc.load) {
				t.Errorf("load order %q, want %q", got, tc.load)
			}
			if !slices.Equal(res.Builtin, tc.builtinSkip) {
				t.Errorf("built in %q, want %q", res.Builtin, tc.builtinSkip)
			}
		})
	}
}

func TestResolveDeterministic(t *testing.T) {
	// Map iteration order must not leak into the result.
	var first []string
	for i := range 20 {
		ix := testIndex(t, nil, "a: d c b", "b: e", "c: e", "d:", "e:")
		res, err := ix.resolve([]string{"a"})
		if err != nil {
			t.Fatal(err)
		}
		got := loadNames(res)
		if i == 0 {
			first = got
			if want := []string{"e", "b", "c", "d", "a"}; !slices.Equal(got, want) {
				t.Fatalf("order %q, want %q", got, want)
			}
		} else if !slices.Equal(got, first) {
			t.Fatalf("order %q then %q", first, got)
		}
	}
}

func TestResolveErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		ix     *moduleIndex
		wanted []string
		is     error
		want   string
	}{
		"missing wanted": {
			ix: testIndex(t, nil, "virtio:"), wanted: []string{"virtio", "nosuch"},
			is: errdefs.ErrNotFound, want: "module nosuch: neither built in nor in the package",
		},
		"missing dependency": {
			ix: testIndex(t, nil, "virtiofs: fuse virtio", "virtio:"), wanted: []string{"virtiofs"},
			is: errdefs.ErrNotFound, want: "module fuse (needed by virtiofs)",
		},
		"cycle": {
			ix: testIndex(t, nil, "a: b", "b: c", "c: a"), wanted: []string{"a"},
			is: errdefs.ErrInvalidArgument, want: "cycle a -> b -> c -> a",
		},
		"self cycle": {
			ix: testIndex(t, nil, "a: a"), wanted: []string{"a"},
			is: errdefs.ErrInvalidArgument, want: "cycle a -> a",
		},
		"invalid name": {
			ix: testIndex(t, nil), wanted: []string{"../x"},
			is: errdefs.ErrInvalidArgument, want: `invalid module name "../x"`,
		},
		"duplicate": {
			ix: func() *moduleIndex {
				ix := testIndex(t, nil, "a:")
				ix.add(module{Name: "a", Path: "updates/a.ko"})
				return ix
			}(),
			wanted: []string{"a"}, is: errdefs.ErrInvalidArgument, want: "kernel/a.ko, updates/a.ko",
		},
		"compressed": {
			ix: func() *moduleIndex {
				ix := testIndex(t, nil)
				ix.compressed["xfs"] = "kernel/fs/xfs/xfs.ko.xz"
				return ix
			}(),
			wanted: []string{"xfs"}, is: errdefs.ErrNotImplemented, want: "compressed modules are not supported",
		},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := tc.ix.resolve(tc.wanted)
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %v containing %q", err, tc.is, tc.want)
			}
		})
	}
}
