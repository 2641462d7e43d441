package qemu

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// ProbeCacheFile is the record CachedProbeKVM keeps in its directory.
const ProbeCacheFile = ".kvm-probe.json"

// errProbeTimeout marks a probe whose guest did not finish in time.
var errProbeTimeout = errors.New("probe timed out")

// probeRecord is the outcome of one KVM probe and what it depended on.
type probeRecord struct {
	Key   string    `json:"key"`
	OK    bool      `json:"ok"`
	Error string    `json:"error,omitempty"`
	At    time.Time `json:"at"`
}

// Paths the probe key reads; variables so that tests can point them
// elsewhere.
var (
	bootIDPath = "/proc/sys/kernel/random/boot_id"
	kvmDevPath = "/dev/kvm"
)

// CachedProbeKVM is ProbeKVM, remembered in dir for as long as nothing the
// probe's outcome depends on changes: the boot, the QEMU binary, the
// /dev/kvm node and the kvm modules loaded. The probe starts a QEMU
// process, which every container and pod start would otherwise pay for
// (25 to 40 ms here); a host whose KVM works keeps working until one of
// those changes, and one whose KVM is broken stays broken. An empty dir
// probes every time, as `hull check` wants.
func CachedProbeKVM(ctx context.Context, binary, tmpDir, dir string) error {
	probe := func() error { return ProbeKVM(ctx, binary, tmpDir) }
	if dir == "" {
		return probe()
	}
	key, err := probeKey(binary, sysModuleDir)
	if err != nil {
		return probe()
	}
	return cachedProbe(filepath.Join(dir, ProbeCacheFile), key, time.Now, probe)
}

// cachedProbe returns the outcome recorded in path under key, or runs
// probe and records its outcome. A record that cannot be read or written
// only costs a probe.
func cachedProbe(path, key string, now func() time.Time, probe func() error) error {
	if b, err := os.ReadFile(path); err == nil && len(b) <= 4096 {
		var r probeRecord
		if json.Unmarshal(b, &r) == nil && r.Key == key {
			if r.OK {
				return nil
			}
			return fmt.Errorf("%s (probed at %s; `hull check` probes again)", r.Error, r.At.Format(time.RFC3339))
		}
	}
	perr := probe()
	if errors.Is(perr, errProbeTimeout) {
		// A busy host or a caller that gave up says nothing lasting
		// about KVM: the next start probes again.
		return perr
	}
	r := probeRecord{Key: key, OK: perr == nil, At: now().UTC()}
	if perr != nil {
		r.Error = perr.Error()
	}
	if b, err := json.Marshal(r); err == nil {
		if tmp, err := os.CreateTemp(filepath.Dir(path), ".kvm-probe-*"); err == nil {
			_, werr := tmp.Write(b)
			tmp.Close()
			if werr != nil || os.Rename(tmp.Name(), path) != nil {
				os.Remove(tmp.Name())
			}
		}
	}
	return perr
}

// probeKey names everything a KVM probe's outcome depends on. A module
// loaded or unloaded, a /dev/kvm recreated or given other permissions, a
// QEMU upgraded or a reboot each give another key.
func probeKey(binary, moduleDir string) (string, error) {
	var b bytes.Buffer
	boot, err := os.ReadFile(bootIDPath)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(&b, "boot %s\n", strings.TrimSpace(string(boot)))
	var st syscall.Stat_t
	if err := syscall.Stat(binary, &st); err != nil {
		return "", err
	}
	fmt.Fprintf(&b, "qemu %s %d %d %d %d.%d\n", binary, st.Dev, st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec)
	if err := syscall.Stat(kvmDevPath, &st); err == nil {
		fmt.Fprintf(&b, "kvm %d %o %d:%d %d.%d\n", st.Rdev, st.Mode, st.Uid, st.Gid, st.Ctim.Sec, st.Ctim.Nsec)
	} else {
		fmt.Fprintf(&b, "kvm none\n")
	}
	ents, err := os.ReadDir(moduleDir)
	if err != nil {
		return "", err
	}
	var mods []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "kvm") {
			mods = append(mods, e.Name())
		}
	}
	sort.Strings(mods)
	fmt.Fprintf(&b, "modules %s\n", strings.Join(mods, " "))
	sum := sha256.Sum256(b.Bytes())
	return hex.EncodeToString(sum[:]), nil
}
