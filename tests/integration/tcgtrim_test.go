package integration

import (
	"bufio"
	"crypto/md5"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// jitResident returns the resident bytes of QEMU's translation cache, a
// memfd with split-wx, read as hull reads it.
func jitResident(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) >= 6 && fs[5] == "/memfd:tcg-jit" && strings.HasPrefix(fs[1], "rw") {
			var st syscall.Stat_t
			if err := syscall.Stat(fmt.Sprintf("/proc/%d/map_files/%s", pid, fs[0]), &st); err != nil {
				t.Fatal(err)
			}
			return st.Blocks * 512
		}
	}
	t.Fatalf("qemu %d has no translation cache in a memfd", pid)
	return 0
}

// waitTrimmed waits for the cache to fall under 16 MiB.
func waitTrimmed(t *testing.T, pid int, what string) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	var r int64
	for time.Now().Before(deadline) {
		if r = jitResident(t, pid); r < 16<<20 {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("%s: translation cache still %d MiB resident", what, r>>20)
}

// The translation cache holds a whole start (no flush on the way), and is
// given back once the guest is idle; the guest runs on, translating anew
// into the freed pages, and a later burst of new code is given back too.
func TestTranslationCacheTrimmed(t *testing.T) {
	e := newCLIEnv(t)
	st := startSleeper(t, e, "trim")
	if r := jitResident(t, st.QEMU); r < 32<<20 {
		t.Errorf("cache %d MiB right after the start: not allocated ahead", r>>20)
	}
	waitTrimmed(t, st.QEMU, "after the start")
	// New code in the pages given back, and enough of it to run well past
	// what was left resident.
	out, errOut, code := e.hull("exec", "trim", "sh", "-c", "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; echo $i; ls -la /proc/self/ >/dev/null; cat /proc/cpuinfo | wc -l")
	if code != 0 || !strings.HasPrefix(out, "3000\n") {
		t.Fatalf("exec after the trim: exit %d, %q, %q", code, out, errOut)
	}
	// An exec translates the exec path anew (about 27 MiB): a second trim
	// must give that back, 8 MiB over what the first left.
	if r := jitResident(t, st.QEMU); r < 12<<20 {
		t.Fatalf("cache %d MiB after an exec: too little growth to see a second trim", r>>20)
	}
	waitTrimmed(t, st.QEMU, "after an exec")
	if out, errOut, code := e.hull("exec", "trim", "echo", "still"); code != 0 || out != "still\n" {
		t.Fatalf("exec after the second trim: exit %d, %q, %q", code, out, errOut)
	}
	if _, errOut, code := e.hull("delete", "--force", "trim"); code != 0 {
		t.Fatalf("delete: %s", errOut)
	}
}

// A trim stops the VM, and with it virtio-fs's queues, under a guest that
// reads its rootfs without pause: every read still returns the file.
func TestTranslationCacheTrimUnderFileIO(t *testing.T) {
	e := newCLIEnv(t)
	bundle := busyboxBundle(t)
	data := make([]byte, 4<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "rootfs", "data"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%x", md5.Sum(data))
	spec := busyboxSpec("sh", "-c", "while :; do md5sum /data >> /sums; done")
	spec.Root.Readonly = false
	writeSpec(t, bundle, spec)
	st := startBundle(t, e, "io", bundle)
	sumsPath := filepath.Join(bundle, "rootfs", "sums")
	reads := func() int {
		b, _ := os.ReadFile(sumsPath)
		return strings.Count(string(b), "\n")
	}
	waitTrimmed(t, st.QEMU, "under file IO")
	atTrim := reads()
	// The reads go on after the trim, through queues it stopped and
	// started again.
	deadline := time.Now().Add(20 * time.Second)
	for reads() < atTrim+3 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if n := reads(); n < atTrim+3 {
		t.Fatalf("%d reads when the cache was trimmed, %d after 20 s more", atTrim, n)
	}
	if s := e.state("io"); s["status"] != "running" {
		t.Fatalf("after the trim: %v", s)
	}
	if _, errOut, code := e.hull("delete", "--force", "io"); code != 0 {
		t.Fatalf("delete: %s", errOut)
	}
	sums, err := os.ReadFile(sumsPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(sums)), "\n")
	for i, l := range lines {
		// The last line may be cut by the kill.
		if i < len(lines)-1 && !strings.HasPrefix(l, want+" ") {
			t.Fatalf("read %d of the file: %q, want %s", i, l, want)
		}
	}
	if len(lines) < 3 {
		t.Fatalf("only %d reads", len(lines))
	}
	t.Logf("%d reads of 4 MiB, the cache trimmed meanwhile", len(lines))
}
