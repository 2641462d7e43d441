package image

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

// makeKernelELF returns an ELF64 x86-64 file with a PT_NOTE segment holding
// the Xen PVH entry note (unless pvh is false), followed by text (where the
// banner goes).
func makeKernelELF(t testing.TB, pvh bool, text string) []byte {
	t.Helper()
	var note bytes.Buffer
	typ := uint32(xenNotePhys32Entry)
	if !pvh {
		typ = 1
	}
	for _, v := range []any{uint32(4), uint32(4), typ, [4]byte{'X', 'e', 'n', 0}, uint32(0x1000000)} {
		binary.Write(&note, binary.LittleEndian, v)
	}
	const ehsize, phentsize = 64, 56
	noteOff := uint64(ehsize + phentsize)
	hdr := elf.Header64{Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Ehsize: ehsize, Phentsize: phentsize, Phnum: 1, Phoff: ehsize, Shentsize: 64}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	hdr.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	hdr.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	prog := elf.Prog64{Type: uint32(elf.PT_NOTE), Off: noteOff, Filesz: uint64(note.Len()), Memsz: uint64(note.Len()), Align: 4}
	var out bytes.Buffer
	for _, v := range []any{hdr, prog, note.Bytes(), []byte(text)} {
		if err := binary.Write(&out, binary.LittleEndian, v); err != nil {
			t.Fatal(err)
		}
	}
	return out.Bytes()
}

const testBanner = "\x00Linux version 6.1.192-hull (hull@hull) (gcc (Debian 12.2.0-14) 12.2.0) #1 SMP\n\x00"

func TestReadOwnKernel(t *testing.T) {
	dir := t.TempDir()
	vmlinux := makeKernelELF(t, true, testBanner)
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write(vmlinux)
	w.Close()
	for name, data := range map[string][]byte{"vmlinux": vmlinux, "bzImage": fakeBzImage(gz.Bytes())} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		k, err := readOwnKernel(p)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if k.release != "6.1.192-hull" || k.arch != "amd64" || !bytes.Equal(k.vmlinux, vmlinux) {
			t.Errorf("%s: release %q arch %q, ELF equal %v", name, k.release, k.arch, bytes.Equal(k.vmlinux, vmlinux))
		}
	}
}

func TestReadOwnKernelErrors(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"no PVH note":  {makeKernelELF(t, false, testBanner), "no PVH entry"},
		"no banner":    {makeKernelELF(t, true, "Linux 6.1"), `no "Linux version" banner`},
		"not a kernel": {[]byte("#!/bin/sh\necho hello\n"), "neither an ELF kernel nor a usable bzImage"},
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
			if err := os.WriteFile(p, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := readOwnKernel(p)
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want ErrInvalidArgument with %q, got %v", tc.want, err)
			}
		})
	}
	if _, err := readOwnKernel(filepath.Join(dir, "missing")); !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "build-kernel.sh") {
		t.Errorf("missing kernel: %v", err)
	}
}

func TestBuildOwnKernel(t *testing.T) {
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinux")
	vmlinux := makeKernelELF(t, true, testBanner)
	if err := os.WriteFile(kernel, vmlinux, 0o644); err != nil {
		t.Fatal(err)
	}
	agent := writeStaticAgent(t, dir)
	out := filepath.Join(dir, "image")
	m, err := Build(context.Background(), BuildOptions{OutDir: out, AgentPath: agent, AgentVersion: "v1-test", KernelPath: kernel})
	if err != nil {
		t.Fatal(err)
	}
	if m.KernelPackage != OwnKernelPackage || m.KernelRelease != "6.1.192-hull" || len(m.Modules) != 0 {
		t.Errorf("manifest %+v", m)
	}
	kpath, initrd, _, err := Verify(out)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(kpath) != KernelELFFile || !bytes.Equal(mustRead(t, kpath), vmlinux) {
		t.Errorf("kernel %s is not the given ELF", kpath)
	}
	files := map[string][]byte{}
	for _, e := range readNewc(t, mustRead(t, initrd)) {
		files[e.name] = e.data
		if strings.HasPrefix(e.name, "lib/modules") {
			t.Errorf("module file %s in an image whose kernel has its drivers built in", e.name)
		}
	}
	if !bytes.Equal(files["init"], mustRead(t, agent)) || len(files["etc/hull/modules.load"]) != 0 ||
		string(files["etc/hull/image-release"]) != "6.1.192-hull\n" {
		t.Errorf("initramfs: init %d bytes, modules.load %q, release %q", len(files["init"]), files["etc/hull/modules.load"], files["etc/hull/image-release"])
	}

	// Modules cannot be asked for, nor a package beside the kernel file.
	for _, opts := range []BuildOptions{
		{OutDir: out, AgentPath: agent, KernelPath: kernel, Modules: []string{"virtiofs"}},
		{OutDir: out, AgentPath: agent, KernelPath: kernel, DebPath: "/nonexistent.deb"},
	} {
		if _, err := Build(context.Background(), opts); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%+v: want ErrInvalidArgument, got %v", opts, err)
		}
	}
}
