package qemu

import (
	"bufio"
	"context"
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// QEMU 7.2's `info jit`, abridged.
const infoJIT = `Translation buffer state:
gen code size       47464579/67103744
TB count            83893
TB avg target size  18 max=1571 bytes

Statistics:
TB flush count      3
TB invalidate count 6922
`

func TestParseJITInfo(t *testing.T) {
	in, err := parseJITInfo(infoJIT)
	if err != nil {
		t.Fatal(err)
	}
	if in.Used != 47464579 || in.Capacity != 67103744 || in.Flushes != 3 {
		t.Fatalf("parsed %+v", in)
	}
	for name, bad := range map[string]string{
		"empty":         "",
		"no flushes":    "gen code size       1/2\n",
		"no size":       "TB flush count      1\n",
		"used > total":  "gen code size       3/2\nTB flush count      1\n",
		"zero capacity": "gen code size       0/0\nTB flush count      1\n",
		"overflow":      "gen code size       99999999999999999999/2\nTB flush count      1\n",
		"negative":      "gen code size       -1/2\nTB flush count      1\n",
	} {
		if in, err := parseJITInfo(bad); err == nil {
			t.Errorf("%s: parsed as %+v", name, in)
		}
	}
}

func TestGDBPacket(t *testing.T) {
	// Checksums as GDB computes them: the byte sum modulo 256.
	for data, want := range map[string]string{"s": "$s#73", "D": "$D#44", "": "$#00", "T05thread:01;": "$T05thread:01;#07"} {
		if got := string(gdbPacket(data)); got != want {
			t.Errorf("%q: %s, want %s", data, got, want)
		}
	}
}

// fakeStub plays QEMU's gdbstub on the far end of a socket pair: it
// answers the attach with a stop reply and then runs script on each
// packet or interrupt it reads.
func fakeStub(t *testing.T, script func(w *bufio.Writer, in string)) *gdbStub {
	return fakeStubAttach(t, false, script)
}

// fakeStubAttach is fakeStub; with quietAttach the stub does not report the
// attach's stop unasked (QEMU 8.1 and later).
func fakeStubAttach(t *testing.T, quietAttach bool, script func(w *bufio.Writer, in string)) *gdbStub {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	host, err := fileConn(fds[0])
	if err != nil {
		t.Fatal(err)
	}
	far := os.NewFile(uintptr(fds[1]), "stub")
	t.Cleanup(func() { host.Close(); far.Close() })
	go func() {
		r, w := bufio.NewReader(far), bufio.NewWriter(far)
		if !quietAttach {
			// QEMU 7 reports the stop of an attach unasked.
			w.Write(gdbPacket("T02thread:01;"))
			w.Flush()
		}
		for {
			c, err := r.ReadByte()
			if err != nil {
				return
			}
			switch c {
			case 0x03:
				script(w, "\x03")
			case '$':
				body, err := r.ReadString('#')
				if err != nil {
					return
				}
				r.Discard(2)
				w.WriteByte('+')
				switch body = strings.TrimSuffix(body, "#"); {
				case body == "?":
					w.Write(gdbPacket("T02thread:01;"))
				case strings.HasPrefix(body, "Qqemu.sstep="):
					w.Write(gdbPacket("OK"))
				default:
					script(w, body)
				}
			}
			w.Flush()
		}
	}()
	return newGDBStub(host)
}

func TestStepStop(t *testing.T) {
	stub := fakeStub(t, func(w *bufio.Writer, in string) {
		switch in {
		case "s":
			w.Write(gdbPacket("T05thread:01;"))
		case "D":
			w.Write(gdbPacket("OK"))
		}
	})
	if err := stub.stepStop(time.Second, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := stub.detach(time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestStepStopQuietAttach(t *testing.T) {
	stub := fakeStubAttach(t, true, func(w *bufio.Writer, in string) {
		if in == "s" {
			w.Write(gdbPacket("T05thread:01;"))
		}
	})
	if err := stub.stepStop(time.Second, 2*time.Second); err != nil {
		t.Fatal(err)
	}
}

// A vCPU halted in the guest's idle loop never steps: the stub is
// interrupted, and its SIGINT stop reply ends the wait.
func TestStepStopInterruptsAHaltedVCPU(t *testing.T) {
	interrupted := make(chan struct{}, 1)
	stub := fakeStub(t, func(w *bufio.Writer, in string) {
		if in == "\x03" {
			interrupted <- struct{}{}
			w.Write(gdbPacket("T02thread:01;"))
		}
	})
	if err := stub.stepStop(20*time.Millisecond, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case <-interrupted:
	default:
		t.Fatal("returned without interrupting")
	}
}

// The attach's own stop reply (SIGINT) must not pass for the step's.
func TestStepStopIgnoresTheAttachReply(t *testing.T) {
	stub := fakeStub(t, func(w *bufio.Writer, in string) {})
	start := time.Now()
	err := stub.stepStop(50*time.Millisecond, 300*time.Millisecond)
	if err == nil {
		t.Fatal("a stub that never stops passed for stopped")
	}
	if time.Since(start) < 250*time.Millisecond {
		t.Fatalf("gave up after %s: %v", time.Since(start), err)
	}
}

func TestGDBStubBoundsPackets(t *testing.T) {
	stub := fakeStub(t, func(w *bufio.Writer, in string) {
		if in == "s" {
			w.WriteString("$" + strings.Repeat("T", 2*maxGDBPacket))
		}
	})
	if err := stub.stepStop(time.Second, 2*time.Second); err == nil || !strings.Contains(err.Error(), "too long") {
		t.Fatalf("oversized packet: %v", err)
	}
}

func fileConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "host")
	defer f.Close()
	return net.FileConn(f)
}

// The cache as QEMU keeps it with split-wx: a memfd named tcg-jit mapped
// shared; here in this process, which openJIT finds like QEMU's.
func TestJITCacheOnAMemfd(t *testing.T) {
	fd, err := unix.MemfdCreate("tcg-jit", unix.MFD_CLOEXEC)
	if err != nil {
		t.Skip(err)
	}
	defer unix.Close(fd)
	const size = 8 << 20
	if err := unix.Ftruncate(fd, size); err != nil {
		t.Fatal(err)
	}
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	// QEMU's second view, from which it runs the code.
	exe, err := unix.Mmap(fd, 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(exe)
	for i := 0; i < 1<<20; i++ {
		mem[i] = byte(i)
	}
	j, err := openJIT(os.Getpid())
	if err != nil {
		if os.IsPermission(err) {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	defer j.Close()
	if j.size != size {
		t.Fatalf("size %d", j.size)
	}
	resident := func() int64 {
		t.Helper()
		r, err := j.resident()
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := resident(); r != 1<<20 {
		t.Fatalf("resident %d after writing 1 MiB", r)
	}
	if len(j.views) != 2 || j.views[0] != uintptr(unsafe.Pointer(&mem[0])) || j.views[1] != uintptr(unsafe.Pointer(&exe[0])) {
		t.Fatalf("views %#x, mapped at %p and %p", j.views, &mem[0], &exe[0])
	}
	if mapped(t, exe[3<<20:4<<20]) {
		t.Fatal("the second view mapped before populating")
	}
	if err := j.populate(4 << 20); err != nil {
		t.Fatal(err)
	}
	if r := resident(); r != 4<<20 {
		t.Fatalf("resident %d after populating 4 MiB", r)
	}
	// Both views have the pages in their page tables, so that the first
	// touch does not fault; the writable one writable.
	if !mapped(t, mem[:4<<20]) || !mapped(t, exe[:4<<20]) {
		t.Fatal("populated pages not mapped in both views")
	}
	if mapped(t, exe[5<<20:6<<20]) {
		t.Fatal("pages past the populated part mapped")
	}
	minflt := func() int64 {
		var ru unix.Rusage
		if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
			t.Fatal(err)
		}
		return ru.Minflt
	}
	runtime.LockOSThread()
	before := minflt()
	for i := 2 << 20; i < 4<<20; i += os.Getpagesize() {
		mem[i] = 1
	}
	faults := minflt() - before
	runtime.UnlockOSThread()
	if faults > 16 {
		t.Fatalf("%d faults writing 512 populated pages", faults)
	}
	if err := j.punch(2 << 20); err != nil {
		t.Fatal(err)
	}
	if r := resident(); r != 2<<20 {
		t.Fatalf("resident %d after freeing from 2 MiB", r)
	}
	for i := 0; i < 1<<20; i++ {
		if mem[i] != byte(i) {
			t.Fatalf("byte %d changed", i)
		}
	}
}

// mapped tells whether every page of b is in this process's page tables
// (bit 63 of its /proc/self/pagemap entry).
func mapped(t *testing.T, b []byte) bool {
	t.Helper()
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	page := uintptr(os.Getpagesize())
	start := uintptr(unsafe.Pointer(&b[0]))
	entries := make([]byte, 8*(uintptr(len(b))/page))
	if _, err := f.ReadAt(entries, int64(start/page*8)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(entries); i += 8 {
		if binary.LittleEndian.Uint64(entries[i:])&(1<<63) == 0 {
			return false
		}
	}
	return true
}

func TestOpenJITWithoutMemfd(t *testing.T) {
	if _, err := openJIT(os.Getpid()); err == nil {
		t.Fatal("found a translation cache in a process that has none")
	}
}

func TestParseVersion(t *testing.T) {
	v, err := parseVersion("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u16)\nCopyright (c) 2003-2022 Fabrice Bellard\n")
	if err != nil || v != (Version{7, 2}) || !v.TrimsTranslations() {
		t.Fatalf("%v %v", v, err)
	}
	if v, _ := parseVersion("QEMU emulator version 8.2.2"); v.TrimsTranslations() {
		t.Errorf("%v trims", v)
	}
	if _, err := parseVersion("qemu"); err == nil {
		t.Error("parsed a version from nothing")
	}
}

func TestCachedVersion(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "qemu")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho 'QEMU emulator version 7.2.22'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	v, err := CachedVersion(context.Background(), bin, dir)
	if err != nil || v != (Version{7, 2}) {
		t.Fatalf("%v %v", v, err)
	}
	// The record answers for the same file; the binary is not run again.
	if err := os.WriteFile(bin+".new", []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if v, err := CachedVersion(context.Background(), bin, dir); err != nil || v != (Version{7, 2}) {
		t.Fatalf("cached: %v %v", v, err)
	}
	// Another binary at that path is asked again.
	if err := os.Rename(bin+".new", bin); err != nil {
		t.Fatal(err)
	}
	if _, err := CachedVersion(context.Background(), bin, dir); err == nil {
		t.Fatal("a replaced binary answered from the record")
	}
}

// The policy through a container's life: the start, an idle spell, an
// exec's burst, a working set, its retrim, and trims that cannot be done.
func TestTrimPolicy(t *testing.T) {
	const mib = 1 << 20
	now := time.Unix(1000, 0)
	p := newTrimPolicy(now)
	poll := func(r, used int64) bool {
		t.Helper()
		now = now.Add(trimPoll)
		return p.wants(r, now) && p.settled(r, used, now)
	}
	// The start fills the 48 MiB allocated ahead: resident says nothing,
	// the code count decides, and the trim waits for it to settle.
	for i, used := range []int64{10 * mib, 30 * mib, 47 * mib} {
		if poll(48*mib, used) {
			t.Fatalf("trim while the start translates (poll %d)", i)
		}
	}
	if !poll(48*mib, 47*mib+100<<10) {
		t.Fatal("no trim once the start settled")
	}
	p.trimmed(2*mib, 47*mib, now)
	// Idle: nothing grows, QEMU is not even asked.
	for range 5 {
		if p.wants(2*mib, now) {
			t.Fatal("reads QEMU's count for an idle cache")
		}
	}
	// An exec's burst, well under three quarters of the start's code.
	if poll(31*mib, 29*mib) || !poll(31*mib, 29*mib) {
		t.Fatal("an exec's burst not trimmed once settled")
	}
	p.trimmed(2*mib, 29*mib, now)
	// A busy guest's working set comes back at once: kept.
	if poll(24*mib, 23*mib) || poll(24*mib, 23*mib) {
		t.Fatal("the working set trimmed")
	}
	if p.wants(24*mib, now) || p.wants(30*mib, now) {
		t.Fatal("a working set under 8 MiB of growth is looked at")
	}
	// Two minutes on, a working set over 16 MiB is trimmed again.
	now = now.Add(trimAgain)
	if poll(24*mib, 23*mib) || !poll(24*mib, 23*mib) {
		t.Fatal("the working set not trimmed again after a while")
	}
	// QEMU emptying a full cache itself is no settling.
	p = newTrimPolicy(now)
	poll(64*mib, 60*mib)
	if poll(64*mib, 1*mib) {
		t.Fatal("trim right after QEMU's own flush")
	}
	// Trims that cannot be done: later and later, then never.
	for i := 1; i <= trimRetryMax; i++ {
		if !p.skip() {
			t.Fatalf("gave up after %d skips", i)
		}
		for range 1 << i {
			if p.wants(64*mib, now) {
				t.Fatalf("retried before %d polls after skip %d", 1<<i, i)
			}
		}
		if !p.wants(64*mib, now) {
			t.Fatalf("not retried after skip %d", i)
		}
	}
	if p.skip() {
		t.Fatal("still trying after", trimRetryMax, "skips")
	}
}
