package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	agent "github.com/hull-runtime/hull/api/agent/v1"
)

func requireRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
}

func bundle(t *testing.T) string {
	b := t.TempDir()
	for _, d := range []string{"rootfs/bin", "data"} {
		if err := os.MkdirAll(filepath.Join(b, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(b, "rootfs/bin/sh"), []byte("x"), 0o755)
	os.WriteFile(filepath.Join(b, "data/file"), []byte("data"), 0o644)
	return b
}

func mountedUnder(dir string) bool {
	b, _ := os.ReadFile("/proc/self/mountinfo")
	return strings.Contains(string(b), dir)
}

func TestPrepareContainer(t *testing.T) {
	requireRoot(t)
	b := bundle(t)
	shared := newShared(t)
	spec := &specs.Spec{
		Root: &specs.Root{Path: "rootfs", Readonly: true},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/data", Type: "bind", Source: "data", Options: []string{"rbind", "ro"}},
			{Destination: "/etc/f", Source: filepath.Join(b, "data/file"), Options: []string{"bind"}},
			{Destination: "/new/dir", Type: "tmpfs", Source: "tmpfs"},
		},
	}
	c, guest, err := PrepareContainer(shared, "c1", b, spec)
	if err != nil {
		t.Fatal(err)
	}
	if guest.Root.Path != "/run/hull/shared/c1/rootfs" || spec.Root.Path != "rootfs" {
		t.Errorf("guest root %q, spec root %q (the input must not change)", guest.Root.Path, spec.Root.Path)
	}
	if guest.Mounts[0].Source != "proc" || guest.Mounts[1].Source != "/run/hull/shared/c1/mount-1" || guest.Mounts[2].Source != "/run/hull/shared/c1/mount-2" {
		t.Errorf("guest mounts %+v", guest.Mounts)
	}
	if _, err := os.Stat(filepath.Join(shared.View, "c1/rootfs/bin/sh")); err != nil {
		t.Errorf("rootfs not shared: %v", err)
	}
	// Read-only is the host's doing: not even root writes there, nor in
	// the tree around the container mounts.
	for _, p := range []string{"c1/rootfs/new", "c1/mount-1/new", "c1/new", "new"} {
		if err := os.WriteFile(filepath.Join(shared.View, p), nil, 0o644); err == nil {
			t.Errorf("wrote %s in the read-only view", p)
		}
	}
	// Missing mount points are made in the rootfs, a file for a file.
	if st, err := os.Stat(filepath.Join(b, "rootfs/new/dir")); err != nil || !st.IsDir() {
		t.Errorf("mount point /new/dir: %v", err)
	}
	if st, err := os.Stat(filepath.Join(b, "rootfs/etc/f")); err != nil || !st.Mode().IsRegular() {
		t.Errorf("mount point /etc/f: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(shared.View, "c1/mount-2")); err != nil || string(b) != "data" {
		t.Errorf("file bind mount: %q %v", b, err)
	}
	if err := c.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if mountedUnder(shared.View + "/") {
		t.Error("mounts left after cleanup")
	}
	if _, err := os.Stat(filepath.Join(shared.Backing, "c1")); !os.IsNotExist(err) {
		t.Errorf("container directory left: %v", err)
	}
}

func TestPrepareContainerRefusesEscapes(t *testing.T) {
	requireRoot(t)
	for name, tc := range map[string]struct {
		setup func(b string) *specs.Spec
		is    error
		want  string
	}{
		"rootfs symlinked out of the bundle": {func(b string) *specs.Spec {
			os.Symlink("/", filepath.Join(b, "evil"))
			return &specs.Spec{Root: &specs.Root{Path: "evil"}}
		}, errdefs.ErrInvalidArgument, "outside the bundle"},
		"missing rootfs": {func(b string) *specs.Spec {
			return &specs.Spec{Root: &specs.Root{Path: "nothere"}}
		}, errdefs.ErrNotFound, "root.path"},
		"no root": {func(b string) *specs.Spec { return &specs.Spec{} }, errdefs.ErrInvalidArgument, "root.path"},
		"missing mount source": {func(b string) *specs.Spec {
			return &specs.Spec{Root: &specs.Root{Path: "rootfs"}, Mounts: []specs.Mount{{Destination: "/x", Type: "bind", Source: "/nonexistent"}}}
		}, errdefs.ErrNotFound, "/nonexistent"},
	} {
		t.Run(name, func(t *testing.T) {
			b := bundle(t)
			shared := newShared(t)
			_, _, err := PrepareContainer(shared, "c1", b, tc.setup(b))
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want %v naming %q, got %v", tc.is, tc.want, err)
			}
			if mountedUnder(shared.View + "/") {
				t.Error("mounts left after a failed prepare")
			}
			if _, err := os.Stat(filepath.Join(shared.Backing, "c1")); !os.IsNotExist(err) {
				t.Errorf("container directory left: %v", err)
			}
		})
	}
}

func newShared(t *testing.T) *Shared {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "shared")
	s, err := NewShared(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		if mountedUnder(dir) {
			t.Error("mounts left after Close")
		}
	})
	return s
}

// sharedSource makes a directory of its own shared mount (as the CRI wants
// a host path whose mounts propagate to be), unmounted at the end.
func sharedSource(t *testing.T) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(src, src, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		UnmountUnder(src)
		unix.Unmount(src, unix.MNT_DETACH)
	})
	if err := unix.Mount("", src, "", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		t.Fatal(err)
	}
	return src
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

// Mounts made on the host under a bind's source after the container is
// prepared reach the view when the options ask for propagation (slave or
// shared), and only then; nothing goes the other way, and the bind itself
// stays read-only where asked.
func TestPrepareContainerPropagation(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		opts []string
		want bool
	}{
		{[]string{"rbind", "rslave"}, true},
		{[]string{"bind", "slave"}, true},
		{[]string{"rbind", "rshared", "ro"}, true},
		{[]string{"rbind"}, false},
		{[]string{"rbind", "rprivate"}, false},
		{[]string{"rbind", "rslave", "rro"}, false}, // rro: read-only throughout, so no propagation
	} {
		t.Run(strings.Join(tc.opts, ","), func(t *testing.T) {
			src := sharedSource(t)
			b := bundle(t)
			shared := newShared(t)
			spec := &specs.Spec{
				Root:   &specs.Root{Path: "rootfs"},
				Mounts: []specs.Mount{{Destination: "/data", Type: "bind", Source: src, Options: tc.opts}},
			}
			c, _, err := PrepareContainer(shared, "c1", b, spec)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := c.Cleanup(); err != nil {
					t.Error(err)
				}
				if mountedUnder(shared.View + "/") {
					t.Error("mounts left after cleanup")
				}
			}()
			view := filepath.Join(shared.View, "c1", "mount-0")
			sub := filepath.Join(src, "sub")
			if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
				t.Fatal(err)
			}
			defer unix.Unmount(sub, unix.MNT_DETACH)
			os.WriteFile(filepath.Join(sub, "hello"), []byte("from host"), 0o644)
			got, err := os.ReadFile(filepath.Join(view, "sub", "hello"))
			if tc.want && string(got) != "from host" {
				t.Errorf("host mount not propagated to the view: %q %v", got, err)
			}
			if !tc.want && err == nil {
				t.Errorf("host mount propagated to the view")
			}
			// The bind itself keeps its read-only flag.
			if slices.Contains(tc.opts, "ro") || slices.Contains(tc.opts, "rro") {
				if err := os.WriteFile(filepath.Join(view, "new"), nil, 0o644); err == nil {
					t.Error("wrote in a read-only bind")
				}
			}
			// A mount made in the view (what the guest's side would be)
			// never reaches the source.
			if err := os.Mkdir(filepath.Join(src, "back"), 0o755); err != nil {
				t.Fatal(err)
			}
			back := filepath.Join(view, "back")
			if err := unix.Mount("tmpfs", back, "tmpfs", 0, "size=1m"); err != nil {
				t.Fatal(err)
			}
			if isMountPoint(filepath.Join(src, "back")) {
				t.Error("a mount in the view reached the source")
			}
			unix.Unmount(back, unix.MNT_DETACH)
			// An unmount on the host reaches the view too.
			if err := unix.Unmount(sub, 0); err != nil {
				t.Fatal(err)
			}
			if isMountPoint(filepath.Join(view, "sub")) {
				t.Error("host unmount not propagated to the view")
			}
		})
	}
}

// A propagating bind whose source holds the shared directory (a hostPath
// of "/" or "/run"): the clone skips the shared directory (unbindable), so
// the view never holds copies of itself and the mount count grows by the
// same amount per container instead of multiplying.
func TestPrepareContainerSourceHoldsView(t *testing.T) {
	requireRoot(t)
	src := sharedSource(t)
	dir := filepath.Join(src, "shared")
	shared, err := NewShared(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := shared.Close(); err != nil {
			t.Error(err)
		}
		if mountedUnder(dir) {
			t.Error("mounts left after Close")
		}
	}()
	b := bundle(t)
	count := func() int { b, _ := os.ReadFile("/proc/self/mountinfo"); return strings.Count(string(b), "\n") }
	var cs []*Container
	var counts []int
	for i := range 4 {
		spec := &specs.Spec{
			Root:   &specs.Root{Path: "rootfs"},
			Mounts: []specs.Mount{{Destination: "/host", Type: "bind", Source: src, Options: []string{"rbind", "rslave"}}},
		}
		c, _, err := PrepareContainer(shared, "c"+strconv.Itoa(i), b, spec)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
		counts = append(counts, count())
	}
	for i := 2; i < len(counts); i++ {
		if d, d0 := counts[i]-counts[i-1], counts[1]-counts[0]; d != d0 {
			t.Errorf("mount counts %v: container %d added %d mounts, container 1 %d", counts, i, d, d0)
		}
	}
	if _, err := os.Stat(filepath.Join(shared.View, "c0", "mount-0", "shared", "view", "c0")); err == nil {
		t.Error("the shared directory's tree is in the clone")
	}
	for _, c := range cs {
		if err := c.Cleanup(); err != nil {
			t.Error(err)
		}
	}
}

// A private rbind's submounts are copied beside it, not on the source's own
// directories: the host can unmount and remove such a directory while the
// container runs, as with runc.
func TestPrivateRbindCopiesSubmountsBeside(t *testing.T) {
	requireRoot(t)
	b := bundle(t)
	sub := filepath.Join(b, "data", "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(sub, unix.MNT_DETACH)
	os.WriteFile(filepath.Join(sub, "f"), []byte("in tmpfs"), 0o644)
	shared := newShared(t)
	spec := &specs.Spec{
		Root: &specs.Root{Path: "rootfs"},
		Mounts: []specs.Mount{
			{Destination: "/ro", Type: "bind", Source: "data", Options: []string{"rbind", "ro", "rnosuid"}},
			{Destination: "/rro", Type: "bind", Source: "data", Options: []string{"rbind", "rro"}},
		},
	}
	c, guest, err := PrepareContainer(shared, "c1", b, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Cleanup()
	var got []string
	for _, m := range guest.Mounts {
		got = append(got, fmt.Sprintf("%s<-%s %v", m.Destination, m.Source, m.Options))
	}
	want := []string{
		"/ro<-/run/hull/shared/c1/mount-0 [rbind ro rnosuid]",
		"/ro/sub<-/run/hull/shared/c1/mount-0.sub0 [bind nosuid]",
		"/rro<-/run/hull/shared/c1/mount-1 [rbind rro]",
		"/rro/sub<-/run/hull/shared/c1/mount-1.sub0 [bind ro]",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("guest mounts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, ok := guest.Annotations[agent.AutomountAnnotation]; ok {
		t.Error("automount listed for a private rbind")
	}
	// The copies: the top has nothing mounted on sub; the submount's copy
	// is beside it, writable under "ro", read-only under "rro".
	if isMountPoint(filepath.Join(shared.View, "c1/mount-0/sub")) {
		t.Error("a submount copy is mounted on the source's own directory")
	}
	if b, err := os.ReadFile(filepath.Join(shared.View, "c1/mount-0.sub0/f")); err != nil || string(b) != "in tmpfs" {
		t.Errorf("submount copy: %q %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(shared.View, "c1/mount-0.sub0/w"), nil, 0o644); err != nil {
		t.Errorf("submount of an ro rbind not writable: %v", err)
	}
	if err := os.WriteFile(filepath.Join(shared.View, "c1/mount-1.sub0/w2"), nil, 0o644); err == nil {
		t.Error("submount of an rro rbind writable")
	}
	// What critest's clean-up does while the pod runs.
	if err := unix.Unmount(sub, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(sub); err != nil {
		t.Errorf("rmdir of the unmounted source directory: %v", err)
	}
	if err := c.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if mountedUnder(shared.View + "/") {
		t.Error("mounts left after cleanup")
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{
		`/a/b`:           "/a/b",
		`/with\040space`: "/with space",
		`/back\134slash`: `/back\slash`,
		`/trailing\04`:   `/trailing\04`,
		`/not\999octal`:  `/not\999octal`,
	} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}

// A pod's VM can go before the cleanup of its containers (QEMU died and
// containerd deletes the pod and its containers at once): Close must still
// remove the whole shared directory, and the containers' own cleanup,
// coming later, must find nothing to complain about.
func TestSharedCloseBeforeContainerCleanup(t *testing.T) {
	requireRoot(t)
	b := bundle(t)
	dir := filepath.Join(t.TempDir(), "shared")
	s, err := NewShared(dir)
	if err != nil {
		t.Fatal(err)
	}
	spec := &specs.Spec{
		Root:   &specs.Root{Path: "rootfs"},
		Mounts: []specs.Mount{{Destination: "/data", Type: "bind", Source: "data", Options: []string{"rbind"}}},
	}
	var cs []*Container
	for _, id := range []string{"c1", "c2"} {
		c, _, err := PrepareContainer(s, id, b, spec)
		if err != nil {
			s.Close()
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close with containers not cleaned up: %v", err)
	}
	if mountedUnder(dir) {
		t.Fatal("mounts left after Close")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("shared directory left: %v", err)
	}
	for _, c := range cs {
		if err := c.Cleanup(); err != nil {
			t.Errorf("cleanup after the pod's close: %v", err)
		}
	}
	if _, err := os.Stat(filepath.Join(b, "data/file")); err != nil {
		t.Errorf("the bind's source was touched: %v", err)
	}
}

// Mount destinations resolve inside the rootfs as the container sees it
// (as runc and the guest's hull-init resolve them): an absolute link is
// the container's path, ".." stops at the rootfs. A destination through
// Debian's /var/run -> /run (Kubernetes' service-account mount) gets its
// mount point under the rootfs's /run, and links aimed out of the rootfs
// create nothing outside it.
func TestPrepareContainerLinksStayInRootfs(t *testing.T) {
	requireRoot(t)
	b := bundle(t)
	rootfs := filepath.Join(b, "rootfs")
	outside := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(rootfs, "run"), 0o755))
	must(os.MkdirAll(filepath.Join(rootfs, "var"), 0o755))
	must(os.Symlink("/run", filepath.Join(rootfs, "var", "run")))
	must(os.Symlink(outside, filepath.Join(rootfs, "abs")))
	must(os.Symlink("../../../../../../.."+outside, filepath.Join(rootfs, "rel")))
	// Where those two lead in the container.
	must(os.MkdirAll(filepath.Join(rootfs, outside), 0o755))
	shared := newShared(t)
	spec := &specs.Spec{Root: &specs.Root{Path: "rootfs"}, Mounts: []specs.Mount{
		{Destination: "/var/run/secrets/kubernetes.io/serviceaccount", Type: "bind", Source: "data", Options: []string{"rbind", "ro"}},
		{Destination: "/abs/x", Type: "tmpfs", Source: "tmpfs"},
		{Destination: "/rel/y", Type: "bind", Source: filepath.Join(b, "data/file"), Options: []string{"bind"}},
	}}
	c, _, err := PrepareContainer(shared, "c1", b, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Cleanup()
	for _, p := range []string{"run/secrets/kubernetes.io/serviceaccount", filepath.Join(outside[1:], "x"), filepath.Join(outside[1:], "y")} {
		if _, err := os.Lstat(filepath.Join(rootfs, p)); err != nil {
			t.Errorf("mount point %s not made inside the rootfs: %v", p, err)
		}
	}
	if ents, _ := os.ReadDir(outside); len(ents) > 0 {
		t.Errorf("made outside the rootfs: %v", ents)
	}
}

// A destination through a link that leads nowhere in the rootfs is
// refused by name (as runc's), and nothing is made where the link would
// lead on the host.
func TestPrepareContainerDanglingLink(t *testing.T) {
	requireRoot(t)
	b := bundle(t)
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(b, "rootfs", "out")); err != nil {
		t.Fatal(err)
	}
	shared := newShared(t)
	_, _, err := PrepareContainer(shared, "c1", b, &specs.Spec{Root: &specs.Root{Path: "rootfs"},
		Mounts: []specs.Mount{{Destination: "/out/x", Type: "tmpfs", Source: "tmpfs"}}})
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "/out/x") {
		t.Fatalf("want an invalid argument naming /out/x, got %v", err)
	}
	if ents, _ := os.ReadDir(outside); len(ents) > 0 {
		t.Errorf("made outside the rootfs: %v", ents)
	}
	if mountedUnder(shared.View + "/") {
		t.Error("mounts left after a failed prepare")
	}
}

// The mounts below a private rbind are copied one by one, from the
// source's fd, while the guest may already see (and change) the source's
// directories: a mount point swapped for a link to the host's / after it
// was listed must not be what gets copied.
func TestBindSubmountRefusesSwappedPoint(t *testing.T) {
	requireRoot(t)
	b := bundle(t)
	src := filepath.Join(t.TempDir(), "vol")
	if err := os.MkdirAll(filepath.Join(src, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", filepath.Join(src, "a", "b"), "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(filepath.Join(src, "a", "b"), unix.MNT_DETACH)
	shared := newShared(t)
	c, _, err := PrepareContainer(shared, "c1", b, &specs.Spec{Root: &specs.Root{Path: "rootfs"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Cleanup()
	subs, err := hostSubmounts(src)
	if err != nil || len(subs) != 1 || subs[0].rel != "a/b" {
		t.Fatalf("submounts %+v, %v", subs, err)
	}
	srcFd, err := unix.Open(src, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(srcFd)

	// Listed, then swapped: the mount goes, its point becomes a link.
	if err := unix.Unmount(filepath.Join(src, "a", "b"), unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(src, "a", "b")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/", filepath.Join(src, "a", "b")); err != nil {
		t.Fatal(err)
	}
	if err := c.bindSubmount(srcFd, subs[0], "mount-0.sub0", roNone); err == nil {
		t.Fatal("a submount point swapped for a link to / was copied")
	}
	// A plain directory in its place: not the listed mount either.
	os.Remove(filepath.Join(src, "a", "b"))
	if err := os.Mkdir(filepath.Join(src, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := c.bindSubmount(srcFd, subs[0], "mount-0.sub1", roNone); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("a directory in place of the listed mount: %v, want not found", err)
	}
	if mountedUnder(filepath.Join(shared.View, "c1", "mount-0")) {
		t.Error("something was mounted for the swapped submount")
	}
}

// A host mount made on a slave bind's source itself propagates and stacks
// on the container's copy: Cleanup takes off every mount at the point.
func TestCleanupUnmountsStackedMounts(t *testing.T) {
	requireRoot(t)
	b := bundle(t)
	vol := sharedSource(t)
	shared := newShared(t)
	c, _, err := PrepareContainer(shared, "c1", b, &specs.Spec{Root: &specs.Root{Path: "rootfs"},
		Mounts: []specs.Mount{{Destination: "/vol", Type: "bind", Source: vol, Options: []string{"rbind", "rslave"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", vol, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(vol, unix.MNT_DETACH)
	if err := c.Cleanup(); err != nil {
		t.Fatalf("cleanup: %v", err)
	}
	if mountedUnder(filepath.Join(shared.View, "c1")) {
		t.Error("a mount stacked on the copy was left")
	}
	if _, err := os.Stat(filepath.Join(shared.Backing, "c1")); !os.IsNotExist(err) {
		t.Errorf("container directory left: %v", err)
	}
}

// CRI binds files (resolv.conf, hosts) with rbind,rprivate: a file has no
// mounts below it, and its bind works as any other.
func TestPrivateRbindOfAFile(t *testing.T) {
	requireRoot(t)
	b := bundle(t)
	shared := newShared(t)
	c, guest, err := PrepareContainer(shared, "c1", b, &specs.Spec{Root: &specs.Root{Path: "rootfs"},
		Mounts: []specs.Mount{{Destination: "/etc/resolv.conf", Type: "bind", Source: filepath.Join(b, "data/file"), Options: []string{"rbind", "rprivate", "ro"}}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Cleanup()
	if len(guest.Mounts) != 1 {
		t.Fatalf("guest mounts %+v", guest.Mounts)
	}
	if got, err := os.ReadFile(filepath.Join(shared.View, "c1", "mount-0")); err != nil || string(got) != "data" {
		t.Errorf("the file's copy holds %q, %v", got, err)
	}
}
