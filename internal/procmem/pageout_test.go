package procmem

import (
	"os"
	"strings"
	"testing"
)

func TestFileMappings(t *testing.T) {
	maps := `55d0c0000000-55d0c0100000 r--p 00000000 fd:01 123 /usr/bin/qemu-system-x86_64
7f0000000000-7f0003000000 r--p 00000000 fd:01 456 /usr/local/share/hull/vmlinux
7f0003000000-7f0003100000 r--p 00000000 fd:01 457 /usr/local/share/hull/my initramfs.img
7f0004000000-7f0004001000 rw-s 00000000 00:01 9 /memfd:memory-backend-memfd (deleted)
7f0005000000-7f0005001000 rw-s 00000000 00:05 9 /dev/kvm
7f0006000000-7f0006001000 r--p 00000000 fd:01 77 /usr/lib/gone.so (deleted)
7f0007000000-7f0007001000 rw-p 00000000 00:00 0
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
`
	got, err := fileMappings(strings.NewReader(maps), pageOutCandidate)
	if err != nil {
		t.Fatal(err)
	}
	want := []addrRange{{0x55d0c0000000, 0x55d0c0100000}, {0x7f0000000000, 0x7f0003000000}, {0x7f0003000000, 0x7f0003100000}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("got %x, want %x", got, want)
	}
	for _, bad := range []string{"zz-1 r--p 0 0:0 1 /k\n", "2000-1000 r--p 0 0:0 1 /k\n", "1000 r--p 0 0:0 1 /k\n"} {
		if _, err := fileMappings(strings.NewReader(bad), pageOutCandidate); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
	var many strings.Builder
	for range maxRanges + 10 {
		many.WriteString("1000-2000 r--p 0 0:0 1 /k\n")
	}
	if got, err := fileMappings(strings.NewReader(many.String()), pageOutCandidate); err != nil || len(got) != maxRanges {
		t.Errorf("%d ranges, err %v; want %d", len(got), err, maxRanges)
	}
}

func TestPageOutFilesSelf(t *testing.T) {
	n, err := PageOutFiles(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// The test binary itself is mapped, so something was advised.
	if n <= 0 {
		t.Fatalf("advised %d bytes", n)
	}
}
