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
	"time"
)

// TestBuildRealKernel builds the default image from the real Debian kernel
// package twice and checks that the two builds are byte-identical. It needs
// apt and, unless HULL_TEST_CACHE names a directory that already holds the
// package, the network (about 26 MiB). Skipped with -short.
func TestBuildRealKernel(t *testing.T) {
	if testing.Short() {
		t.Skip("downloads the kernel package")
	}
	for _, tool := range []string{"apt-get", "apt-cache", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cache := os.Getenv("HULL_TEST_CACHE")
	if cache == "" {
		cache = t.TempDir()
	}
	agent := writeStaticAgent(t, t.TempDir())

	build := func() (string, *Manifest, time.Duration) {
		out := t.TempDir()
		var progress bytes.Buffer
		start := time.Now()
		m, err := Build(ctx, BuildOptions{OutDir: out, CacheDir: cache, AgentPath: agent, Progress: &progress})
		elapsed := time.Since(start)
		t.Logf("build took %v:\n%s", elapsed, progress.String())
		var te *toolError
		if errors.As(err, &te) && strings.HasPrefix(te.cmd, "apt-get download") {
			t.Skipf("cannot download the kernel package: %v", err)
		}
		if errors.As(err, &te) && strings.HasPrefix(te.cmd, "apt-cache") {
			t.Skipf("apt cannot resolve %s: %v", DefaultKernelPackage, err)
		}
		if err != nil {
			t.Fatal(err)
		}
		return out, m, elapsed
	}
	out1, m, _ := build()
	out2, _, cached := build()
	if cached > 30*time.Second {
		t.Errorf("a build from the cache took %v", cached)
	}

	// Debian's cloud kernel has a PVH entry: the image boots it uncompressed.
	if f := m.Artifacts[ArtifactKernel].File; f != KernelELFFile {
		t.Errorf("kernel artifact %s, want the extracted %s", f, KernelELFFile)
	}
	for _, f := range []string{KernelELFFile, InitrdFile, ManifestFile} {
		if !bytes.Equal(mustRead(t, filepath.Join(out1, f)), mustRead(t, filepath.Join(out2, f))) {
			t.Errorf("%s differs between two builds", f)
		}
	}
	_, initrd, _, err := Verify(out2)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(m.KernelPackage, "linux-image-") || m.KernelPackage != "linux-image-"+m.KernelRelease {
		t.Errorf("package %s, release %s", m.KernelPackage, m.KernelRelease)
	}

	// Every wanted module is there (none is built into the Debian cloud
	// kernel), and each comes after the modules its own .modinfo names.
	for _, w := range DefaultModules {
		if !slices.Contains(m.Modules, w) {
			t.Errorf("module %s missing from %q", w, m.Modules)
		}
	}
	files := map[string][]byte{}
	for _, e := range readNewc(t, mustRead(t, initrd)) {
		files[e.name] = e.data
	}
	loaded := map[string]bool{}
	for line := range strings.SplitSeq(strings.TrimSpace(string(files["etc/hull/modules.load"])), "\n") {
		name, p, _ := strings.Cut(line, " ")
		data := files[strings.TrimPrefix(p, "/")]
		if data == nil {
			t.Fatalf("modules.load names %s, which is not in the initramfs", p)
		}
		mod, err := parseModinfo(bytes.NewReader(data), p)
		if err != nil {
			t.Fatal(err)
		}
		if mod.Name != name {
			t.Errorf("%s: .modinfo says %s", line, mod.Name)
		}
		for _, d := range mod.Depends {
			if !loaded[d] {
				t.Errorf("%s is loaded before its dependency %s", name, d)
			}
		}
		loaded[name] = true
	}
	if len(loaded) != len(m.Modules) {
		t.Errorf("modules.load has %d modules, the manifest %d", len(loaded), len(m.Modules))
	}
}
