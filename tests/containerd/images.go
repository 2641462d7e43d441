package containerd

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Image is a single-layer, linux/amd64 OCI image described in Go, so that
// tests need no registry: WriteOCIArchive turns it into an OCI image-layout
// tarball that `ctr images import` loads under Ref.
type Image struct {
	// Ref is the full reference the image is imported under, exactly as
	// clients name it (registry.k8s.io/e2e-test-images/busybox:1.29-2).
	Ref    string
	Files  []File
	Config ImageConfig
}

// ImageConfig is the part of the OCI image configuration that tests set.
type ImageConfig struct {
	User         string
	Env          []string
	Entrypoint   []string
	Cmd          []string
	WorkingDir   string
	ExposedPorts []string // "80/tcp"
	Labels       map[string]string
}

// File is one entry of the image's layer. Exactly one of Source, Data,
// Link, HardLink or Dir says what it is; a File with none of them is an
// empty file.
type File struct {
	Path     string      // absolute path in the image, e.g. /bin/busybox
	Mode     fs.FileMode // permission bits plus fs.ModeSetuid etc.; 0755/0644 when zero
	UID, GID int
	Source   string // copy the content of this host file
	Data     []byte // or this content
	Link     string // or a symbolic link to this target
	HardLink string // or a hard link to this (absolute) path of the image
	Dir      bool   // or a directory
}

// epoch is every entry's modification time: the same inputs give the same
// bytes, hence the same digests, on every run.
var epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// FilesFromDir lists a host directory tree as image files under prefix
// (use "/" for a whole rootfs), with ownership root:root and the host
// files' permissions. Hard links are stored as copies.
func FilesFromDir(dir, prefix string) ([]File, error) {
	var files []File
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		f := File{Path: path.Join(prefix, filepath.ToSlash(rel)), Mode: info.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)}
		switch {
		case d.IsDir():
			f.Dir = true
		case info.Mode()&fs.ModeSymlink != 0:
			if f.Link, err = os.Readlink(p); err != nil {
				return err
			}
		case info.Mode().IsRegular():
			f.Source = p
		default:
			return fmt.Errorf("%s: unsupported file type %v", p, info.Mode().Type())
		}
		files = append(files, f)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	return files, nil
}

// layerTar writes the image's files as an uncompressed tar, sorted by path
// with parents first, every directory on the way made explicit.
func (img *Image) layerTar() ([]byte, error) {
	entries := map[string]File{}
	for _, f := range img.Files {
		p := path.Clean("/" + f.Path)
		if p == "/" {
			continue
		}
		f.Path = p
		entries[p] = f
		// Parent directories the list does not name get 0755 root:root.
		for dir := path.Dir(p); dir != "/"; dir = path.Dir(dir) {
			if _, ok := entries[dir]; !ok {
				entries[dir] = File{Path: dir, Dir: true}
			}
		}
	}
	paths := make([]string, 0, len(entries))
	for p := range entries {
		paths = append(paths, p)
	}
	// By path, parents first, except that hard links come last: a link's
	// target must precede it in the archive.
	sort.Slice(paths, func(i, j int) bool {
		hi, hj := entries[paths[i]].HardLink != "", entries[paths[j]].HardLink != ""
		if hi != hj {
			return hj
		}
		return paths[i] < paths[j]
	})

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		f := entries[p]
		hdr := &tar.Header{
			Name:    strings.TrimPrefix(p, "/"),
			Uid:     f.UID,
			Gid:     f.GID,
			ModTime: epoch,
			Format:  tar.FormatPAX,
		}
		perm := f.Mode
		var data []byte
		switch {
		case f.Dir:
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
			if perm == 0 {
				perm = 0o755
			}
		case f.HardLink != "":
			target := path.Clean("/" + f.HardLink)
			t, ok := entries[target]
			if !ok || t.Dir || t.Link != "" || t.HardLink != "" {
				return nil, fmt.Errorf("image %s: hard link %s: %s is not a regular file of the image", img.Ref, p, target)
			}
			hdr.Typeflag = tar.TypeLink
			hdr.Linkname = strings.TrimPrefix(target, "/")
			perm = t.Mode
			if perm == 0 {
				perm = 0o644
			}
		case f.Link != "":
			hdr.Typeflag = tar.TypeSymlink
			hdr.Linkname = f.Link
			perm = 0o777
		default:
			hdr.Typeflag = tar.TypeReg
			if perm == 0 {
				perm = 0o644
			}
			data = f.Data
			if f.Source != "" {
				var err error
				if data, err = os.ReadFile(f.Source); err != nil {
					return nil, fmt.Errorf("image %s: %w", img.Ref, err)
				}
			}
			hdr.Size = int64(len(data))
		}
		hdr.Mode = tarMode(perm)
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("image %s: tar %s: %w", img.Ref, p, err)
		}
		if _, err := tw.Write(data); err != nil {
			return nil, fmt.Errorf("image %s: tar %s: %w", img.Ref, p, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("image %s: %w", img.Ref, err)
	}
	return buf.Bytes(), nil
}

// tarMode turns Go's file mode bits into tar's (setuid is 04000 in tar,
// a high bit in fs.FileMode).
func tarMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

// descriptor is an OCI content descriptor.
type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *platform         `json:"platform,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

const (
	mediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	mediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar"
	mediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
)

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// WriteOCIArchive writes the image as an OCI image-layout tarball to w: the
// layer, the config and the manifest as blobs, and an index.json naming the
// manifest by img.Ref (annotation io.containerd.image.name, which ctr
// import uses as the image name verbatim). The output depends only on img.
func (img *Image) WriteOCIArchive(w io.Writer) error {
	if img.Ref == "" {
		return fmt.Errorf("image has no reference")
	}
	layer, err := img.layerTar()
	if err != nil {
		return err
	}
	ports := map[string]struct{}{}
	for _, p := range img.Config.ExposedPorts {
		ports[p] = struct{}{}
	}
	cfg := map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"created":      epoch.Format(time.RFC3339),
		"config": map[string]any{
			"User":         img.Config.User,
			"Env":          img.Config.Env,
			"Entrypoint":   img.Config.Entrypoint,
			"Cmd":          img.Config.Cmd,
			"WorkingDir":   img.Config.WorkingDir,
			"ExposedPorts": ports,
			"Labels":       img.Config.Labels,
		},
		"rootfs": map[string]any{
			"type": "layers",
			// The layer is stored uncompressed: its diff ID is its digest.
			"diff_ids": []string{digestOf(layer)},
		},
		"history": []map[string]any{{"created": epoch.Format(time.RFC3339), "created_by": "hull tests/containerd"}},
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("image %s: config: %w", img.Ref, err)
	}
	manifest := map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaTypeManifest,
		"config":        descriptor{MediaType: mediaTypeConfig, Digest: digestOf(cfgJSON), Size: int64(len(cfgJSON))},
		"layers":        []descriptor{{MediaType: mediaTypeLayer, Digest: digestOf(layer), Size: int64(len(layer))}},
	}
	manifestJSON, err := json.Marshal(manifest)
	if err != nil {
		return fmt.Errorf("image %s: manifest: %w", img.Ref, err)
	}
	tag := ""
	if i := strings.LastIndex(img.Ref, ":"); i > strings.LastIndex(img.Ref, "/") {
		tag = img.Ref[i+1:]
	}
	index := map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaTypeIndex,
		"manifests": []descriptor{{
			MediaType: mediaTypeManifest,
			Digest:    digestOf(manifestJSON),
			Size:      int64(len(manifestJSON)),
			Annotations: map[string]string{
				"io.containerd.image.name":          img.Ref,
				"org.opencontainers.image.ref.name": tag,
			},
			Platform: &platform{Architecture: "amd64", OS: "linux"},
		}},
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return fmt.Errorf("image %s: index: %w", img.Ref, err)
	}

	tw := tar.NewWriter(w)
	add := func(name string, data []byte) error {
		hdr := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	blob := func(b []byte) (string, []byte) {
		return "blobs/sha256/" + strings.TrimPrefix(digestOf(b), "sha256:"), b
	}
	for _, e := range []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", indexJSON},
	} {
		if err := add(e.name, e.data); err != nil {
			return fmt.Errorf("image %s: write %s: %w", img.Ref, e.name, err)
		}
	}
	for _, b := range [][]byte{layer, cfgJSON, manifestJSON} {
		if err := add(blob(b)); err != nil {
			return fmt.Errorf("image %s: write blob: %w", img.Ref, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("image %s: %w", img.Ref, err)
	}
	return nil
}
