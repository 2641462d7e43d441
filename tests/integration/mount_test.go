package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// sharedHostDir makes a host directory that is a shared mount of its own,
// as the CRI requires of a host path whose mounts are to propagate, and
// unmounts it (and what the test mounted under it) at the end.
func sharedHostDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "vol")
	for _, d := range []string{"sub", "back"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mount(dir, dir, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.Unmount(filepath.Join(dir, "sub"), unix.MNT_DETACH)
		unix.Unmount(dir, unix.MNT_DETACH)
		if mounts, _ := os.ReadFile("/proc/mounts"); strings.Contains(string(mounts), dir) {
			t.Errorf("mounts left under %s", dir)
		}
	})
	if err := unix.Mount("", dir, "", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		t.Fatal(err)
	}
	return dir
}

func isMountPoint(p string) bool {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == p {
			return true
		}
	}
	return false
}

// A bind mount with rslave propagation (CRI's HostToContainer): a mount
// made on the host under the source after the container started shows in
// the container (virtiofsd announces it as a submount, the guest mounts it
// on lookup). Nothing goes the other way: a mount the container makes in
// the volume stays in the guest. A read-only bind stays read-only.
func TestBindPropagationHostToContainer(t *testing.T) {
	e := newCLIEnv(t)
	vol := sharedHostDir(t)
	private := sharedHostDir(t)
	bundle := busyboxBundle(t)
	spec := busyboxSpec("sleep", "1000")
	spec.Mounts = append(spec.Mounts,
		specs.Mount{Destination: "/vol", Type: "bind", Source: vol, Options: []string{"rbind", "rslave"}},
		specs.Mount{Destination: "/rovol", Type: "bind", Source: vol, Options: []string{"rbind", "rslave", "ro"}},
		specs.Mount{Destination: "/private", Type: "bind", Source: private, Options: []string{"rbind", "rprivate"}},
	)
	spec.Linux.RootfsPropagation = "rslave"
	// The container may mount (to check that its mounts stay in the guest).
	spec.Process.Capabilities.Bounding = append(spec.Process.Capabilities.Bounding, "CAP_SYS_ADMIN")
	spec.Process.Capabilities.Effective = append(spec.Process.Capabilities.Effective, "CAP_SYS_ADMIN")
	spec.Process.Capabilities.Permitted = append(spec.Process.Capabilities.Permitted, "CAP_SYS_ADMIN")
	writeSpec(t, bundle, spec)
	const id = "propagation"
	if _, errOut, code := e.hull("create", "--bundle", bundle, id); code != 0 {
		t.Fatalf("create: %s", errOut)
	}
	defer func() {
		if _, errOut, code := e.hull("delete", "--force", id); code != 0 {
			t.Errorf("delete --force: %s", errOut)
		}
	}()
	if _, errOut, code := e.hull("start", id); code != 0 {
		t.Fatalf("start: %s", errOut)
	}

	// Mounts on the host, after the start.
	for _, dir := range []string{vol, private} {
		sub := filepath.Join(dir, "sub")
		if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sub, "hello"), []byte("from host\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cat := func(p string) (string, int) {
		out, _, code := e.hull("exec", id, "cat", p)
		return out, code
	}
	var out string
	var code int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if out, code = cat("/vol/sub/hello"); code == 0 {
			break
		}
	}
	if out != "from host\n" {
		t.Fatalf("host mount not seen in the container: %q (exit %d)", out, code)
	}
	if out, code := cat("/rovol/sub/hello"); out != "from host\n" {
		t.Errorf("host mount not seen under the read-only bind: %q (exit %d)", out, code)
	}
	if out, code := cat("/private/sub/hello"); code == 0 {
		t.Errorf("host mount propagated into a private bind: %q", out)
	}
	// The read-only bind stays read-only, the other is writable.
	if _, errOut, code := e.hull("exec", id, "sh", "-c", "echo x > /rovol/new"); code == 0 {
		t.Error("wrote in the read-only bind")
	} else if !strings.Contains(errOut, "Read-only") {
		t.Logf("write in the read-only bind: %s", errOut)
	}
	if _, errOut, code := e.hull("exec", id, "sh", "-c", "echo from guest > /vol/sub/guest"); code != 0 {
		t.Errorf("write in the propagated mount: %s", errOut)
	}
	if b, err := os.ReadFile(filepath.Join(vol, "sub", "guest")); err != nil || string(b) != "from guest\n" {
		t.Errorf("the guest's write in the propagated mount: %q %v", b, err)
	}

	// A mount made in the container stays in the guest.
	if _, errOut, code := e.hull("exec", id, "/bin/busybox", "mount", "-t", "tmpfs", "guest", "/vol/back"); code != 0 {
		t.Fatalf("mount in the container: %s", errOut)
	}
	if _, errOut, code := e.hull("exec", id, "sh", "-c", "echo x > /vol/back/f"); code != 0 {
		t.Errorf("write in the container's mount: %s", errOut)
	}
	if isMountPoint(filepath.Join(vol, "back")) {
		t.Error("a mount made in the container reached the host")
	}
	if _, err := os.Stat(filepath.Join(vol, "back", "f")); err == nil {
		t.Error("a file written in the container's own mount reached the host")
	}
	if mounts, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mounts), " guest ") {
		t.Error("a tmpfs named by the guest is mounted on the host")
	}

	// An unmount on the host reaches the container too. Lazily: a plain
	// umount fails (EBUSY) while virtiofsd holds files of the propagated
	// copy open for the guest, that is, while the guest has them cached.
	if err := unix.Unmount(filepath.Join(vol, "sub"), 0); err != nil {
		t.Logf("host umount without MNT_DETACH: %v", err)
		if err := unix.Unmount(filepath.Join(vol, "sub"), unix.MNT_DETACH); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if _, code = cat("/vol/sub/hello"); code != 0 {
			break
		}
	}
	if code == 0 {
		t.Error("host unmount not seen in the container")
	}
}

// runc's "ro" on an rbind makes the bind's top mount read-only, not the
// mounts under it: a tmpfs mounted on the host under the source before the
// container starts stays writable in the container; "rro" makes it
// read-only too. While the container runs, the host can unmount that tmpfs
// and remove its directory (critest's "non-recursive readonly mounts" does
// so in its clean-up): hull's copies of a private rbind's submounts are not
// mounted on the source's own directories.
func TestReadOnlyBindKeepsSubmountsWritable(t *testing.T) {
	e := newCLIEnv(t)
	vol := sharedHostDir(t)
	sub := filepath.Join(vol, "sub")
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	bundle := busyboxBundle(t)
	spec := busyboxSpec("sh", "-c", "touch /ro/sub/a && ! touch /ro/b 2>/dev/null && ! touch /rro/sub/c 2>/dev/null && echo ok > /ro/sub/result; sleep 1000")
	spec.Mounts = append(spec.Mounts,
		specs.Mount{Destination: "/ro", Type: "bind", Source: vol, Options: []string{"rbind", "ro"}},
		specs.Mount{Destination: "/rro", Type: "bind", Source: vol, Options: []string{"rbind", "rro"}},
	)
	writeSpec(t, bundle, spec)
	const id = "robind"
	if _, errOut, code := e.hull("create", "--bundle", bundle, id); code != 0 {
		t.Fatalf("create: %s", errOut)
	}
	defer func() {
		if _, errOut, code := e.hull("delete", "--force", id); code != 0 {
			t.Errorf("delete --force: %s", errOut)
		}
	}()
	if _, errOut, code := e.hull("start", id); code != 0 {
		t.Fatalf("start: %s", errOut)
	}
	var b []byte
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if b, _ = os.ReadFile(filepath.Join(sub, "result")); len(b) > 0 {
			break
		}
	}
	if string(b) != "ok\n" {
		out, _, _ := e.hull("exec", id, "sh", "-c", "touch /ro/sub/a; touch /ro/b; touch /rro/sub/c")
		t.Fatalf("checks in the container failed (result %q): %s", b, out)
	}
	if _, err := os.Stat(filepath.Join(sub, "a")); err != nil {
		t.Errorf("the write in the submount did not reach the host: %v", err)
	}
	if err := unix.Unmount(sub, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(sub); err != nil {
		t.Errorf("rmdir of the submount's directory while the container runs: %v", err)
	}
}

// A Debian-style image: /var/run is a link to /run. Kubernetes' service
// account token goes to /var/run/secrets/kubernetes.io/serviceaccount, a
// path through that link: the mount lands on the container's /run, as
// with runc.
func TestBindThroughImageAbsoluteLink(t *testing.T) {
	e := newCLIEnv(t)
	secrets := t.TempDir()
	if err := os.WriteFile(filepath.Join(secrets, "token"), []byte("s3cret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bundle := busyboxBundle(t)
	rootfs := filepath.Join(bundle, "rootfs")
	for _, d := range []string{"run", "var"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/run", filepath.Join(rootfs, "var", "run")); err != nil {
		t.Fatal(err)
	}
	spec := busyboxSpec("cat", "/var/run/secrets/kubernetes.io/serviceaccount/token", "/run/secrets/kubernetes.io/serviceaccount/token")
	spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/var/run/secrets/kubernetes.io/serviceaccount",
		Type: "bind", Source: secrets, Options: []string{"rbind", "ro"}})
	writeSpec(t, bundle, spec)
	out, errOut, code := e.hull("run", "--bundle", bundle, "sa")
	if code != 0 || out != "s3cret\ns3cret\n" {
		t.Errorf("run: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if _, err := os.Stat("/run/secrets/kubernetes.io"); err == nil {
		t.Error("a mount point was made on the host's /run")
	}
	e.assertClean()
}
