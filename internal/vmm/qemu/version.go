package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"time"
)

// VersionCacheFile is the record CachedVersion keeps in its directory.
const VersionCacheFile = ".qemu-version.json"

// Version is a QEMU release.
type Version struct{ Major, Minor int }

func (v Version) String() string { return fmt.Sprintf("%d.%d", v.Major, v.Minor) }

// TrimsTranslations says whether hull can trim this QEMU's translation
// cache (trim.go): split-wx came in 6.0; that a single step empties the
// cache, and that the gdbstub answers an attach with a stop reply, are
// what QEMU 7 does and what hull was checked against (7.2). Other
// releases keep the resident cache.
func (v Version) TrimsTranslations() bool { return v.Major == 7 }

var versionRe = regexp.MustCompile(`QEMU emulator version (\d+)\.(\d+)`)

type versionRecord struct {
	Key     string  `json:"key"`
	Version Version `json:"version"`
}

// CachedVersion returns binary's release, from `binary --version` once and
// then from a record in dir for as long as the binary is the same file
// (a start must not pay for running QEMU twice). An empty dir asks QEMU.
func CachedVersion(ctx context.Context, binary, dir string) (Version, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(binary, &st); err != nil {
		return Version{}, err
	}
	key := fmt.Sprintf("%s %d %d %d %d.%d", binary, st.Dev, st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec)
	path := filepath.Join(dir, VersionCacheFile)
	if dir != "" {
		if b, err := os.ReadFile(path); err == nil && len(b) <= 4096 {
			var r versionRecord
			if json.Unmarshal(b, &r) == nil && r.Key == key {
				return r.Version, nil
			}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "--version").Output()
	if err != nil {
		return Version{}, fmt.Errorf("%s --version: %w", binary, err)
	}
	v, err := parseVersion(string(out))
	if err != nil || dir == "" {
		return v, err
	}
	if b, err := json.Marshal(versionRecord{Key: key, Version: v}); err == nil {
		if tmp, err := os.CreateTemp(dir, ".qemu-version-*"); err == nil {
			_, werr := tmp.Write(b)
			tmp.Close()
			if werr != nil || os.Rename(tmp.Name(), path) != nil {
				os.Remove(tmp.Name())
			}
		}
	}
	return v, nil
}

func parseVersion(s string) (Version, error) {
	m := versionRe.FindStringSubmatch(s)
	if m == nil {
		return Version{}, fmt.Errorf("no QEMU version in %q", firstLine(s))
	}
	major, err1 := strconv.Atoi(m[1])
	minor, err2 := strconv.Atoi(m[2])
	if err1 != nil || err2 != nil {
		return Version{}, fmt.Errorf("QEMU version in %q", firstLine(s))
	}
	return Version{major, minor}, nil
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}
