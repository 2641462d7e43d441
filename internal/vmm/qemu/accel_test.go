package qemu

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckKVMModule(t *testing.T) {
	for _, tc := range []struct {
		name    string
		modules []string
		refused bool
	}{
		{"intel", []string{"kvm", "kvm_intel"}, false},
		{"amd", []string{"kvm", "kvm_amd"}, false},
		{"pvm only", []string{"kvm", "kvm_pvm"}, true},
		{"pvm beside hardware kvm", []string{"kvm", "kvm_pvm", "kvm_intel"}, false},
		{"built in, nothing listed", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, m := range tc.modules {
				if err := os.Mkdir(filepath.Join(dir, m), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			err := checkKVMModule(dir)
			if tc.refused != (err != nil) {
				t.Fatalf("refused = %v, want %v (err %v)", err != nil, tc.refused, err)
			}
			if err != nil && !strings.Contains(err.Error(), "kvm_pvm") {
				t.Errorf("error does not name the module: %v", err)
			}
		})
	}
}

func TestFileMappings(t *testing.T) {
	maps := `55d0c0000000-55d0c0100000 r--p 00000000 fd:01 123 /usr/bin/qemu-system-x86_64
7f0000000000-7f0003000000 r--p 00000000 fd:01 456 /usr/local/share/hull/vmlinux
7f0003000000-7f0003100000 r--p 00000000 fd:01 457 /usr/local/share/hull/initramfs.img
7f0004000000-7f0004001000 rw-s 00000000 00:01 9 /memfd:memory-backend-memfd (deleted)
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
`
	got, err := fileMappings(strings.NewReader(maps), []string{"/usr/local/share/hull/vmlinux", "/usr/local/share/hull/initramfs.img"})
	if err != nil {
		t.Fatal(err)
	}
	want := []addrRange{{0x7f0000000000, 0x7f0003000000}, {0x7f0003000000, 0x7f0003100000}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got %x, want %x", got, want)
	}
	if _, err := fileMappings(strings.NewReader("zz-1 r--p 0 0:0 1 /k\n"), []string{"/k"}); err == nil {
		t.Fatal("a malformed range was accepted")
	}
	if _, err := fileMappings(strings.NewReader("2000-1000 r--p 0 0:0 1 /k\n"), []string{"/k"}); err == nil {
		t.Fatal("an inverted range was accepted")
	}
}
