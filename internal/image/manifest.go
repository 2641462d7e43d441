package image

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
)

const (
	// ManifestFile is the manifest's name in the image directory.
	ManifestFile = "manifest.json"
	// SchemaVersion is the manifest format this package writes and reads.
	SchemaVersion = 1

	// ArtifactKernel and ArtifactInitrd are the keys of Manifest.Artifacts.
	ArtifactKernel = "kernel"
	ArtifactInitrd = "initrd"

	// KernelFile and InitrdFile are the artifacts' names in the image directory.
	KernelFile = "vmlinuz"
	InitrdFile = "initramfs.img"

	// maxManifestSize bounds what LoadManifest reads; a real manifest is
	// well under a kilobyte.
	maxManifestSize = 1 << 20
)

// Manifest describes a built guest image. It holds no timestamps, so the same
// inputs give the same bytes.
type Manifest struct {
	SchemaVersion        int                 `json:"schemaVersion"`
	KernelPackage        string              `json:"kernelPackage"`
	KernelPackageVersion string              `json:"kernelPackageVersion"`
	KernelRelease        string              `json:"kernelRelease"`
	AgentVersion         string              `json:"agentVersion,omitempty"`
	Artifacts            map[string]Artifact `json:"artifacts"`
	Modules              []string            `json:"modules"` // load order
}

// Artifact is one file of the image.
type Artifact struct {
	File   string `json:"file"` // name within the image directory
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// marshal gives the manifest's file contents: indented, fields in struct
// order, map keys sorted by encoding/json.
func (m *Manifest) marshal() ([]byte, error) {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// validate checks what Verify relies on, so a hand-edited or truncated
// manifest cannot make the runtime read files outside the image directory.
func (m *Manifest) validate() error {
	if m.SchemaVersion != SchemaVersion {
		return fmt.Errorf("schema version %d, this hull reads %d; rebuild the image with `hull image build`: %w",
			m.SchemaVersion, SchemaVersion, errdefs.ErrFailedPrecondition)
	}
	for _, key := range []string{ArtifactKernel, ArtifactInitrd} {
		a, ok := m.Artifacts[key]
		if !ok {
			return fmt.Errorf("no %s artifact: %w", key, errdefs.ErrDataLoss)
		}
		if a.File == "" || a.File != filepath.Base(a.File) || a.File == "." || a.File == ".." || strings.HasPrefix(a.File, ".") {
			return fmt.Errorf("%s artifact: file name %q is not a plain name in the image directory: %w", key, a.File, errdefs.ErrDataLoss)
		}
		if _, err := hex.DecodeString(a.SHA256); err != nil || len(a.SHA256) != sha256.Size*2 || a.SHA256 != strings.ToLower(a.SHA256) {
			return fmt.Errorf("%s artifact: malformed sha256 %q: %w", key, a.SHA256, errdefs.ErrDataLoss)
		}
		if a.Size < 0 {
			return fmt.Errorf("%s artifact: negative size: %w", key, errdefs.ErrDataLoss)
		}
	}
	return nil
}

// LoadManifest reads and checks the manifest of the image in dir. A missing
// manifest is ErrNotFound; an unreadable or inconsistent one ErrDataLoss.
func LoadManifest(dir string) (*Manifest, error) {
	p := filepath.Join(dir, ManifestFile)
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("manifest %s: missing (run `hull image build`): %w", p, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("manifest: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", p, err)
	}
	if len(b) > maxManifestSize {
		return nil, fmt.Errorf("manifest %s: larger than %d bytes: %w", p, maxManifestSize, errdefs.ErrDataLoss)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("manifest %s: corrupt: %w: %w", p, errdefs.ErrDataLoss, err)
	}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", p, err)
	}
	return &m, nil
}

// Verify checks that dir holds the artifacts its manifest names, with the
// recorded sizes and sha256, and returns the paths of the kernel and the
// initramfs. Errors name the file and what is wrong: ErrNotFound for a
// missing file or manifest, ErrDataLoss for a size or checksum mismatch or a
// corrupt manifest.
//
// Verify reads both files in full (about 30 MiB for the default image).
func Verify(dir string) (kernel, initrd string, m *Manifest, err error) {
	m, err = LoadManifest(dir)
	if err != nil {
		return "", "", nil, err
	}
	// The artifact names are plain names (validate), and os.Root keeps a
	// symlink in the image directory from pointing the check elsewhere.
	root, err := os.OpenRoot(dir)
	if err != nil {
		return "", "", nil, fmt.Errorf("image directory %s: %w", dir, err)
	}
	defer root.Close()
	for _, key := range []string{ArtifactKernel, ArtifactInitrd} {
		if err := verifyArtifact(root, dir, key, m.Artifacts[key]); err != nil {
			return "", "", nil, err
		}
	}
	return filepath.Join(dir, m.Artifacts[ArtifactKernel].File),
		filepath.Join(dir, m.Artifacts[ArtifactInitrd].File), m, nil
}

func verifyArtifact(root *os.Root, dir, key string, a Artifact) error {
	p := filepath.Join(dir, a.File)
	f, err := root.Open(a.File)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s %s: missing: %w", key, p, errdefs.ErrNotFound)
		}
		return fmt.Errorf("%s %s: %w", key, p, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%s %s: %w", key, p, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s %s: not a regular file: %w", key, p, errdefs.ErrDataLoss)
	}
	if fi.Size() != a.Size {
		return fmt.Errorf("%s %s: size %d, manifest says %d: %w", key, p, fi.Size(), a.Size, errdefs.ErrDataLoss)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("%s %s: %w", key, p, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != a.SHA256 {
		return fmt.Errorf("%s %s: sha256 %s, manifest says %s: %w", key, p, got, a.SHA256, errdefs.ErrDataLoss)
	}
	return nil
}
