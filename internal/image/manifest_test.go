package image

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

// writeTestImage writes a small image directory with a valid manifest.
func writeTestImage(t *testing.T) (string, *Manifest) {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{KernelFile: "kernel bytes", InitrdFile: "initrd bytes, longer"}
	m := &Manifest{
		SchemaVersion:        SchemaVersion,
		KernelPackage:        "linux-image-6.1.0-56-cloud-amd64",
		KernelPackageVersion: "6.1.192-2",
		KernelRelease:        "6.1.0-56-cloud-amd64",
		AgentVersion:         "v0.1.0",
		Artifacts:            map[string]Artifact{},
		Modules:              []string{"virtio_ring", "virtio"},
	}
	for key, file := range map[string]string{ArtifactKernel: KernelFile, ArtifactInitrd: InitrdFile} {
		sum := sha256.Sum256([]byte(files[file]))
		m.Artifacts[key] = Artifact{File: file, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(files[file]))}
		if err := os.WriteFile(filepath.Join(dir, file), []byte(files[file]), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	writeManifest(t, dir, m)
	return dir, m
}

func writeManifest(t *testing.T, dir string, m *Manifest) {
	t.Helper()
	b, err := m.marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestManifestFormat(t *testing.T) {
	m := &Manifest{
		SchemaVersion: 1, KernelPackage: "p", KernelPackageVersion: "1", KernelRelease: "r",
		Artifacts: map[string]Artifact{
			ArtifactKernel: {File: KernelFile, SHA256: strings.Repeat("a", 64), Size: 1},
			ArtifactInitrd: {File: InitrdFile, SHA256: strings.Repeat("b", 64), Size: 2},
		},
		Modules: []string{"virtio"},
	}
	b, err := m.marshal()
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "schemaVersion": 1,
  "kernelPackage": "p",
  "kernelPackageVersion": "1",
  "kernelRelease": "r",
  "artifacts": {
    "initrd": {
      "file": "initramfs.img",
      "sha256": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
      "size": 2
    },
    "kernel": {
      "file": "vmlinuz",
      "sha256": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
      "size": 1
    }
  },
  "modules": [
    "virtio"
  ]
}
`
	if string(b) != want {
		t.Errorf("manifest:\n%s\nwant:\n%s", b, want)
	}
}

func TestManifestRoundTrip(t *testing.T) {
	dir, want := writeTestImage(t)
	got, err := LoadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	gb, _ := got.marshal()
	wb, _ := want.marshal()
	if string(gb) != string(wb) {
		t.Errorf("round trip:\n%s\nwant:\n%s", gb, wb)
	}
}

func TestVerify(t *testing.T) {
	dir, want := writeTestImage(t)
	kernel, initrd, m, err := Verify(dir)
	if err != nil {
		t.Fatal(err)
	}
	if kernel != filepath.Join(dir, KernelFile) || initrd != filepath.Join(dir, InitrdFile) {
		t.Errorf("paths %s %s", kernel, initrd)
	}
	if m.KernelRelease != want.KernelRelease || len(m.Modules) != 2 {
		t.Errorf("manifest %+v", m)
	}
}

func TestVerifyFailures(t *testing.T) {
	sum := sha256.Sum256([]byte("initrd bytes, longer"))
	initrdSum := hex.EncodeToString(sum[:])
	for name, tc := range map[string]struct {
		change func(t *testing.T, dir string, m *Manifest)
		is     error
		want   []string
	}{
		"no manifest": {
			change: func(t *testing.T, dir string, m *Manifest) { remove(t, filepath.Join(dir, ManifestFile)) },
			is:     errdefs.ErrNotFound, want: []string{ManifestFile, "missing", "hull image build"},
		},
		"corrupt manifest": {
			change: func(t *testing.T, dir string, m *Manifest) {
				write(t, filepath.Join(dir, ManifestFile), `{"schemaVersion": 1, "artifacts": {`)
			},
			is: errdefs.ErrDataLoss, want: []string{ManifestFile, "corrupt"},
		},
		"newer schema": {
			change: func(t *testing.T, dir string, m *Manifest) { m.SchemaVersion = 2; writeManifest(t, dir, m) },
			is:     errdefs.ErrFailedPrecondition, want: []string{"schema version 2"},
		},
		"no initrd artifact": {
			change: func(t *testing.T, dir string, m *Manifest) {
				delete(m.Artifacts, ArtifactInitrd)
				writeManifest(t, dir, m)
			},
			is: errdefs.ErrDataLoss, want: []string{"no initrd artifact"},
		},
		"path outside the directory": {
			change: func(t *testing.T, dir string, m *Manifest) {
				a := m.Artifacts[ArtifactKernel]
				a.File = "../../etc/passwd"
				m.Artifacts[ArtifactKernel] = a
				writeManifest(t, dir, m)
			},
			is: errdefs.ErrDataLoss, want: []string{"kernel artifact", "../../etc/passwd"},
		},
		"malformed checksum": {
			change: func(t *testing.T, dir string, m *Manifest) {
				a := m.Artifacts[ArtifactInitrd]
				a.SHA256 = strings.ToUpper(a.SHA256)
				m.Artifacts[ArtifactInitrd] = a
				writeManifest(t, dir, m)
			},
			is: errdefs.ErrDataLoss, want: []string{"initrd artifact", "malformed sha256"},
		},
		"kernel missing": {
			change: func(t *testing.T, dir string, m *Manifest) { remove(t, filepath.Join(dir, KernelFile)) },
			is:     errdefs.ErrNotFound, want: []string{"kernel", KernelFile, "missing"},
		},
		"initrd wrong size": {
			change: func(t *testing.T, dir string, m *Manifest) { write(t, filepath.Join(dir, InitrdFile), "short") },
			is:     errdefs.ErrDataLoss, want: []string{InitrdFile, "size 5, manifest says 20"},
		},
		"initrd wrong checksum": {
			change: func(t *testing.T, dir string, m *Manifest) {
				write(t, filepath.Join(dir, InitrdFile), "initrd bytes, LONGER")
			},
			is: errdefs.ErrDataLoss, want: []string{InitrdFile, "sha256", "manifest says " + initrdSum},
		},
		"kernel is a symlink out of the directory": {
			change: func(t *testing.T, dir string, m *Manifest) {
				remove(t, filepath.Join(dir, KernelFile))
				if err := os.Symlink("/etc/hostname", filepath.Join(dir, KernelFile)); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"kernel", KernelFile},
		},
		"kernel is a directory": {
			change: func(t *testing.T, dir string, m *Manifest) {
				remove(t, filepath.Join(dir, KernelFile))
				if err := os.Mkdir(filepath.Join(dir, KernelFile), 0o755); err != nil {
					t.Fatal(err)
				}
			},
			is: errdefs.ErrDataLoss, want: []string{KernelFile, "not a regular file"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir, m := writeTestImage(t)
			tc.change(t, dir, m)
			_, _, got, err := Verify(dir)
			if err == nil {
				t.Fatal("Verify succeeded")
			}
			if got != nil {
				t.Error("Verify returned a manifest with its error")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v, want %v", err, tc.is)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func remove(t *testing.T, p string) {
	t.Helper()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, p, s string) {
	t.Helper()
	_ = os.Remove(p) // the artifacts are read-only
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
