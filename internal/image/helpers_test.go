package image

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// Test fixtures in one place: tiny ELF files written by hand, and a fake
// kernel package built with dpkg-deb, so that the unit tests need neither the
// network nor a real kernel package.

// elfSpec describes a minimal ELF64 little-endian file.
type elfSpec struct {
	typ      elf.Type
	machine  elf.Machine
	interp   string            // adds a PT_INTERP program header
	sections map[string][]byte // added as SHT_PROGBITS, in sorted order
}

func makeELF(t testing.TB, s elfSpec) []byte {
	t.Helper()
	if s.machine == 0 {
		s.machine = elf.EM_X86_64
	}
	const (
		ehsize    = 64
		phentsize = 56
		shentsize = 64
	)
	var progs []elf.Prog64
	var body bytes.Buffer // everything between the program headers and the section headers
	nprog := 0
	if s.interp != "" {
		nprog = 1
	}
	dataStart := uint64(ehsize + nprog*phentsize)
	if s.interp != "" {
		off := dataStart + uint64(body.Len())
		body.WriteString(s.interp + "\x00")
		progs = append(progs, elf.Prog64{Type: uint32(elf.PT_INTERP), Flags: uint32(elf.PF_R), Off: off,
			Vaddr: off, Paddr: off, Filesz: uint64(len(s.interp) + 1), Memsz: uint64(len(s.interp) + 1), Align: 1})
	}
	names := make([]string, 0, len(s.sections))
	for n := range s.sections {
		names = append(names, n)
	}
	slices.Sort(names)
	shstrtab := []byte{0}
	sections := []elf.Section64{{}} // SHN_UNDEF
	for _, n := range names {
		off := dataStart + uint64(body.Len())
		body.Write(s.sections[n])
		sections = append(sections, elf.Section64{Name: uint32(len(shstrtab)), Type: uint32(elf.SHT_PROGBITS),
			Off: off, Size: uint64(len(s.sections[n])), Addralign: 1})
		shstrtab = append(shstrtab, n+"\x00"...)
	}
	shstrName := uint32(len(shstrtab))
	shstrtab = append(shstrtab, ".shstrtab\x00"...)
	sections = append(sections, elf.Section64{Name: shstrName, Type: uint32(elf.SHT_STRTAB),
		Off: dataStart + uint64(body.Len()), Size: uint64(len(shstrtab)), Addralign: 1})
	body.Write(shstrtab)
	for body.Len()%8 != 0 {
		body.WriteByte(0)
	}

	hdr := elf.Header64{
		Type: uint16(s.typ), Machine: uint16(s.machine), Version: uint32(elf.EV_CURRENT),
		Ehsize: ehsize, Phentsize: phentsize, Phnum: uint16(len(progs)),
		Shentsize: shentsize, Shnum: uint16(len(sections)), Shstrndx: uint16(len(sections) - 1),
		Shoff: dataStart + uint64(body.Len()),
	}
	if len(progs) > 0 {
		hdr.Phoff = ehsize
	}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	hdr.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	hdr.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)

	var out bytes.Buffer
	for _, v := range []any{hdr, progs, body.Bytes(), sections} {
		if err := binary.Write(&out, binary.LittleEndian, v); err != nil {
			t.Fatal(err)
		}
	}
	return out.Bytes()
}

// makeModule returns a relocatable ELF object with the given .modinfo
// entries, e.g. "name=virtio", "depends=virtio_ring".
func makeModule(t testing.TB, modinfo ...string) []byte {
	var mi []byte
	for _, kv := range modinfo {
		mi = append(mi, kv+"\x00"...)
	}
	return makeELF(t, elfSpec{typ: elf.ET_REL, sections: map[string][]byte{".modinfo": mi, ".text": {0xc3}}})
}

// writeStaticAgent writes a minimal static x86-64 executable and returns its path.
func writeStaticAgent(t testing.TB, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "hull-agent")
	b := makeELF(t, elfSpec{typ: elf.ET_EXEC, sections: map[string][]byte{".text": bytes.Repeat([]byte{0x90}, 100)}})
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

const fakeRelease = "9.9.9-1-test-amd64"

// fakeModules are the modules of the fake kernel package: a small virtio
// family with the same shape of dependencies as the real one.
var fakeModules = map[string][]string{
	"kernel/drivers/virtio/virtio.ko":             {"name=virtio", "depends="},
	"kernel/drivers/virtio/virtio_ring.ko":        {"name=virtio_ring", "depends=virtio"},
	"kernel/drivers/virtio/virtio_mmio.ko":        {"name=virtio_mmio", "depends=virtio,virtio_ring"},
	"kernel/drivers/char/hw_random/virtio-rng.ko": {"name=virtio_rng", "depends=virtio_ring,virtio"},
	"kernel/fs/fuse/fuse.ko":                      {"name=fuse", "depends="},
	"kernel/fs/fuse/virtiofs.ko":                  {"name=virtiofs", "depends=fuse,virtio_ring,virtio"},
	"kernel/drivers/unused/unused.ko":             {"name=unused", "depends="},
}

// fakeModuleNames are the modules a build of the fake package asks for.
var fakeModuleNames = []string{"virtio_mmio", "virtiofs", "virtio-rng", "overlay"}

// makeDeb builds a fake kernel package with dpkg-deb and returns its path.
// extra files (path -> contents) are added to or replace the defaults.
func makeDeb(t testing.TB, extra map[string][]byte) string {
	t.Helper()
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb not installed")
	}
	root := t.TempDir()
	files := map[string][]byte{
		"DEBIAN/control": []byte("Package: linux-image-" + fakeRelease + "\nVersion: 9.9.9-1\nArchitecture: amd64\n" +
			"Maintainer: hull tests <tests@example.invalid>\nDescription: fake kernel for hull tests\n"),
		"boot/vmlinuz-" + fakeRelease:                             bytes.Repeat([]byte("kernel"), 1000),
		"boot/config-" + fakeRelease:                              []byte("CONFIG_OVERLAY_FS=y\n"),
		"lib/modules/" + fakeRelease + "/modules.builtin":         []byte("kernel/fs/overlayfs/overlay.ko\n"),
		"lib/modules/" + fakeRelease + "/kernel/fs/xfs/xfs.ko.xz": []byte("not really xz"),
	}
	for rel, mi := range fakeModules {
		files["lib/modules/"+fakeRelease+"/"+rel] = makeModule(t, mi...)
	}
	for p, b := range extra {
		if b == nil {
			delete(files, p)
			continue
		}
		files[p] = b
	}
	for p, b := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	deb := filepath.Join(t.TempDir(), "linux-image-"+fakeRelease+"_9.9.9-1_amd64.deb")
	out, err := exec.Command("dpkg-deb", "--root-owner-group", "-Zgzip", "--build", root, deb).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb --build: %v: %s", err, out)
	}
	return deb
}
