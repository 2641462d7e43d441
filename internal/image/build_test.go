package image

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestBuildFromDeb(t *testing.T) {
	deb := makeDeb(t, nil)
	agent := writeStaticAgent(t, t.TempDir())
	build := func() (string, *Manifest, string) {
		out := filepath.Join(t.TempDir(), "image")
		var progress bytes.Buffer
		m, err := Build(context.Background(), BuildOptions{
			OutDir: out, AgentPath: agent, AgentVersion: "v0.0.1-test", DebPath: deb,
			Modules: fakeModuleNames, Progress: &progress,
		})
		if err != nil {
			t.Fatal(err)
		}
		return out, m, progress.String()
	}
	out1, m, progress := build()
	out2, _, _ := build()

	for _, f := range []string{KernelFile, InitrdFile, ManifestFile} {
		a, err := os.ReadFile(filepath.Join(out1, f))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(out2, f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two builds", f)
		}
	}

	if m.KernelPackage != "linux-image-"+fakeRelease || m.KernelPackageVersion != "9.9.9-1" ||
		m.KernelRelease != fakeRelease || m.AgentVersion != "v0.0.1-test" {
		t.Errorf("manifest %+v", m)
	}
	// overlay is built in; the rest come with their dependencies, deps first.
	if want := []string{"virtio", "virtio_ring", "virtio_mmio", "fuse", "virtiofs", "virtio_rng"}; !slices.Equal(m.Modules, want) {
		t.Errorf("modules %q, want %q", m.Modules, want)
	}
	kernel, initrd, vm, err := Verify(out1)
	if err != nil {
		t.Fatal(err)
	}
	if vm.Artifacts[ArtifactInitrd] != m.Artifacts[ArtifactInitrd] {
		t.Errorf("Verify's manifest %+v differs from Build's %+v", vm, m)
	}
	if k, _ := os.ReadFile(kernel); string(k) != strings.Repeat("kernel", 1000) {
		t.Error("vmlinuz is not the package's kernel")
	}

	data, err := os.ReadFile(initrd)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for _, e := range readNewc(t, data) {
		files[e.name] = e.data
	}
	if string(files["init"]) != string(mustRead(t, agent)) {
		t.Error("init is not the agent")
	}
	wantLoad := ""
	for _, name := range m.Modules {
		rel := ""
		for r, mi := range fakeModules {
			if mi[0] == "name="+name {
				rel = r
			}
		}
		p := "lib/modules/" + fakeRelease + "/" + rel
		if files[p] == nil {
			t.Errorf("initramfs lacks %s", p)
		}
		wantLoad += name + " /" + p + "\n"
	}
	if got := string(files["etc/hull/modules.load"]); got != wantLoad {
		t.Errorf("modules.load:\n%s\nwant:\n%s", got, wantLoad)
	}
	if _, ok := files["lib/modules/"+fakeRelease+"/kernel/drivers/unused/unused.ko"]; ok {
		t.Error("a module nobody needs is in the initramfs")
	}

	for _, step := range []string{"[1/6]", "[3/6] extracting kernel", "(built in, skipped: [overlay])", "[6/6] writing manifest.json"} {
		if !strings.Contains(progress, step) {
			t.Errorf("progress lacks %q:\n%s", step, progress)
		}
	}
	left, _ := filepath.Glob(filepath.Join(out1, ".*.tmp-*"))
	if len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBuildFailureKeepsImage checks that a failed rebuild leaves the previous
// image whole and no temporary files behind.
func TestBuildFailureKeepsImage(t *testing.T) {
	deb := makeDeb(t, nil)
	agent := writeStaticAgent(t, t.TempDir())
	out := t.TempDir()
	opts := BuildOptions{OutDir: out, AgentPath: agent, DebPath: deb, Modules: fakeModuleNames}
	if _, err := Build(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	before := mustRead(t, filepath.Join(out, ManifestFile))
	// A stale temporary file from a killed build is cleaned up.
	if err := os.WriteFile(filepath.Join(out, ".vmlinuz.tmp-123"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	opts.Modules = []string{"virtio", "nosuch"}
	if _, err := Build(context.Background(), opts); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("error %v, want ErrNotFound", err)
	}
	if _, _, _, err := Verify(out); err != nil {
		t.Fatalf("previous image damaged: %v", err)
	}
	if !bytes.Equal(before, mustRead(t, filepath.Join(out, ManifestFile))) {
		t.Error("manifest changed")
	}
	left, _ := filepath.Glob(filepath.Join(out, ".*.tmp-*"))
	if len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestBuildErrors(t *testing.T) {
	deb := makeDeb(t, nil)
	tmp := t.TempDir()
	agent := writeStaticAgent(t, tmp)
	notDir := filepath.Join(tmp, "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	good := func() BuildOptions {
		return BuildOptions{OutDir: filepath.Join(t.TempDir(), "out"), AgentPath: agent, DebPath: deb, Modules: fakeModuleNames}
	}
	for name, tc := range map[string]struct {
		opts func(o *BuildOptions)
		deb  map[string][]byte // changes to the fake package
		is   error
		want []string
	}{
		"no out dir":       {opts: func(o *BuildOptions) { o.OutDir = "" }, is: errdefs.ErrInvalidArgument, want: []string{"output directory"}},
		"no agent":         {opts: func(o *BuildOptions) { o.AgentPath = "" }, is: errdefs.ErrInvalidArgument, want: []string{"agent"}},
		"no cache dir":     {opts: func(o *BuildOptions) { o.DebPath = "" }, is: errdefs.ErrInvalidArgument, want: []string{"cache directory"}},
		"bad package name": {opts: func(o *BuildOptions) { o.DebPath, o.CacheDir, o.KernelPackage = "", tmp, "-oFoo=bar" }, is: errdefs.ErrInvalidArgument, want: []string{`"-oFoo=bar"`}},
		"bad module name":  {opts: func(o *BuildOptions) { o.Modules = []string{"virtio", "a/b"} }, is: errdefs.ErrInvalidArgument, want: []string{`"a/b"`}},
		"agent missing":    {opts: func(o *BuildOptions) { o.AgentPath = filepath.Join(tmp, "nosuch") }, is: errdefs.ErrNotFound, want: []string{"nosuch", "missing"}},
		"agent dynamic":    {opts: func(o *BuildOptions) { o.AgentPath = "/bin/true" }, is: errdefs.ErrInvalidArgument, want: []string{"/bin/true", "dynamically linked"}},
		"deb missing":      {opts: func(o *BuildOptions) { o.DebPath = filepath.Join(tmp, "nosuch.deb") }, is: errdefs.ErrNotFound, want: []string{"nosuch.deb"}},
		"deb corrupt":      {opts: func(o *BuildOptions) { o.DebPath = agent }, is: errdefs.ErrInvalidArgument, want: []string{agent, "dpkg-deb"}},
		"out dir is a file": {
			opts: func(o *BuildOptions) { o.OutDir = filepath.Join(notDir, "out") },
			is:   errdefs.ErrInvalidArgument, want: []string{notDir, "not a directory"},
		},
		"module missing": {
			opts: func(o *BuildOptions) { o.Modules = []string{"virtio_mmio", "vsock"} },
			is:   errdefs.ErrNotFound, want: []string{"module vsock", fakeRelease},
		},
		"dependency missing": {
			deb: map[string][]byte{"lib/modules/" + fakeRelease + "/kernel/fs/fuse/fuse.ko": nil},
			is:  errdefs.ErrNotFound, want: []string{"module fuse (needed by virtiofs)"},
		},
		"module compressed": {
			opts: func(o *BuildOptions) { o.Modules = []string{"xfs"} },
			is:   errdefs.ErrNotImplemented, want: []string{"kernel/fs/xfs/xfs.ko.xz", "compressed modules are not supported"},
		},
		"no kernel": {
			deb: map[string][]byte{"boot/vmlinuz-" + fakeRelease: nil},
			is:  errdefs.ErrNotFound, want: []string{"no kernel"},
		},
		"two kernels": {
			deb: map[string][]byte{"boot/vmlinuz-1.0": []byte("k")},
			is:  errdefs.ErrInvalidArgument, want: []string{"two kernels"},
		},
		"agent for another architecture": {
			deb: map[string][]byte{"DEBIAN/control": []byte("Package: linux-image-x\nVersion: 1\nArchitecture: arm64\nMaintainer: t <t@example.invalid>\nDescription: x\n")},
			is:  errdefs.ErrInvalidArgument, want: []string{"EM_X86_64", "arm64"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			opts := good()
			if tc.deb != nil {
				opts.DebPath = makeDeb(t, tc.deb)
			}
			if tc.opts != nil {
				tc.opts(&opts)
			}
			_, err := Build(context.Background(), opts)
			t.Log(err)
			if !errors.Is(err, tc.is) {
				t.Fatalf("error %v, want %v", err, tc.is)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestBuildWithoutApt(t *testing.T) {
	// An empty PATH stands for a host without apt and dpkg.
	t.Setenv("PATH", t.TempDir())
	opts := BuildOptions{OutDir: t.TempDir(), CacheDir: t.TempDir(), AgentPath: writeStaticAgent(t, t.TempDir())}
	_, err := Build(context.Background(), opts)
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "apt-cache") {
		t.Fatalf("error %v, want ErrFailedPrecondition naming apt-cache", err)
	}
	opts.DebPath = "/nonexistent.deb"
	_, err = Build(context.Background(), opts)
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "dpkg-deb") {
		t.Fatalf("with DebPath: error %v, want ErrFailedPrecondition naming dpkg-deb", err)
	}
}

func TestBuildConcurrentLock(t *testing.T) {
	out := t.TempDir()
	unlock, err := lockOutDir(out)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	_, err = Build(context.Background(), BuildOptions{OutDir: out, AgentPath: writeStaticAgent(t, t.TempDir()), DebPath: makeDeb(t, nil)})
	if !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("error %v, want ErrConflict", err)
	}
}

func TestBuildCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Build(ctx, BuildOptions{OutDir: t.TempDir(), AgentPath: writeStaticAgent(t, t.TempDir()), DebPath: makeDeb(t, nil)})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
}

func TestResolvePackageNotFound(t *testing.T) {
	if _, err := exec.LookPath("apt-cache"); err != nil {
		t.Skip("apt-cache not installed")
	}
	// Reads only the local package lists.
	_, err := resolvePackage(context.Background(), "hull-test-no-such-package")
	if !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "hull-test-no-such-package") {
		t.Fatalf("error %v, want ErrNotFound naming the package", err)
	}
}

func TestCheckFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.deb")
	if err := os.WriteFile(p, []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	const sum = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" // sha256("abc")
	if err := checkFile(p, 3, sum); err != nil {
		t.Fatal(err)
	}
	if err := checkFile(p, 4, sum); !errors.Is(err, errdefs.ErrDataLoss) {
		t.Errorf("wrong size: %v", err)
	}
	if err := checkFile(p, 3, strings.Repeat("0", 64)); !errors.Is(err, errdefs.ErrDataLoss) {
		t.Errorf("wrong checksum: %v", err)
	}
	if err := checkFile(p+".missing", 3, sum); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("missing: %v", err)
	}
}

func TestParseKernelDepends(t *testing.T) {
	out := `linux-image-cloud-amd64
  Depends: linux-image-6.1.0-56-cloud-amd64
linux-image-6.1.0-56-cloud-amd64
  Depends: kmod
 |Depends: initramfs-tools
  Depends: <linux-initramfs-tool>
    dracut
kmod
  Depends: libc6
linux-image-amd64-signed-template
  Depends: linux-image-6.1.0-56-amd64
 |Depends: linux-image-6.1.0-55-amd64
`
	got := parseKernelDepends([]byte(out))
	want := map[string][]string{
		"linux-image-cloud-amd64":           {"linux-image-6.1.0-56-cloud-amd64"},
		"linux-image-amd64-signed-template": {"linux-image-6.1.0-56-amd64", "linux-image-6.1.0-55-amd64"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for k, v := range want {
		if !slices.Equal(got[k], v) {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}
}
