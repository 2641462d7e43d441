package image

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// VerifiedCacheFile is the record VerifyCached keeps in its cache
// directory: runtime-wide, not state of any container.
const VerifiedCacheFile = ".image-verified.json"

// VerifyCached is Verify that skips hashing an artifact whose file is the
// one it hashed before: same device, inode, size, mtime and ctime, with the
// sha256 the manifest still names. Hashing the image (about 60 MiB) costs
// a tenth of a second on every container start otherwise. Any write to a
// file changes its ctime, which no unprivileged process can set back, so a
// changed image is hashed again. The record lives in cacheDir (the runtime
// root, a tmpfs: a reboot starts over).
func VerifyCached(dir, cacheDir string) (kernel, initrd string, m *Manifest, err error) {
	m, err = LoadManifest(dir)
	if err != nil {
		return "", "", nil, err
	}
	cachePath := filepath.Join(cacheDir, VerifiedCacheFile)
	want := map[string]string{}
	for _, key := range []string{ArtifactKernel, ArtifactInitrd} {
		a := m.Artifacts[key]
		fp, ok := fingerprint(filepath.Join(dir, a.File))
		if !ok {
			return Verify(dir)
		}
		want[fp] = a.SHA256
	}
	var known map[string]string
	if b, err := os.ReadFile(cachePath); err == nil {
		_ = json.Unmarshal(b, &known)
	}
	hit := true
	for fp, sum := range want {
		if known[fp] != sum {
			hit = false
		}
	}
	if hit {
		return filepath.Join(dir, m.Artifacts[ArtifactKernel].File), filepath.Join(dir, m.Artifacts[ArtifactInitrd].File), m, nil
	}
	kernel, initrd, m, err = Verify(dir)
	if err != nil {
		return "", "", nil, err
	}
	// Record what Verify just hashed, and keep what is still true of other
	// images (a host may boot two, as the benchmarks do with their floor
	// image): an entry whose file changed since no longer matches its
	// fingerprint and goes.
	for fp, sum := range known {
		if len(want) >= maxVerifiedEntries {
			break
		}
		if path, ok := fingerprintPath(fp); ok {
			if cur, ok := fingerprint(path); ok && cur == fp {
				want[fp] = sum
			}
		}
	}
	if b, err := json.Marshal(want); err == nil {
		tmp, err := os.CreateTemp(cacheDir, ".image-verified-*")
		if err == nil {
			_, werr := tmp.Write(b)
			tmp.Close()
			if werr != nil || os.Rename(tmp.Name(), cachePath) != nil {
				os.Remove(tmp.Name())
			}
		}
	}
	return kernel, initrd, m, nil
}

// maxVerifiedEntries bounds the cache: two files per image.
const maxVerifiedEntries = 16

// fingerprintPath returns the path a fingerprint is of: all but its last
// five colon-separated fields.
func fingerprintPath(fp string) (string, bool) {
	end := len(fp)
	for range 5 {
		i := strings.LastIndexByte(fp[:end], ':')
		if i < 0 {
			return "", false
		}
		end = i
	}
	return fp[:end], true
}

// fingerprint identifies a file's current content without reading it.
func fingerprint(path string) (string, bool) {
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return "", false
	}
	return fmt.Sprintf("%s:%d:%d:%d:%d.%d:%d.%d", path, st.Dev, st.Ino, st.Size,
		st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec), true
}
