// Package hostcheck checks that a host can run hull, one requirement at a
// time, and says for each how to fix it: the equivalent of kata-check.
package hostcheck

import (
	"bufio"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hull-runtime/hull/internal/config"
	"github.com/hull-runtime/hull/internal/image"
	"github.com/hull-runtime/hull/internal/vmm/qemu"
)

// Status of one requirement.
type Status string

const (
	OK   Status = "OK"
	Warn Status = "WARN"
	Fail Status = "FAIL"
)

// Result is the verdict on one requirement.
type Result struct {
	Name   string
	Status Status
	Detail string
	// Fix says what to do; empty when Status is OK.
	Fix string
}

// Env is what the checks look at, so tests can point them elsewhere.
type Env struct {
	Config config.Config
	// TmpDir is where the KVM probe writes its firmware.
	TmpDir string
	// VirtiofsdPaths are candidate virtiofsd binaries, first found wins.
	VirtiofsdPaths []string
}

// MinQEMU is the oldest QEMU hull supports: microvm with virtio-mmio
// modern devices and vhost-user-fs.
var MinQEMU = [2]int{6, 2}

// DefaultVirtiofsd lists where Debian and others install virtiofsd.
var DefaultVirtiofsd = []string{"/usr/lib/qemu/virtiofsd", "/usr/libexec/virtiofsd", "/usr/bin/virtiofsd"}

// Run checks every requirement in order and returns the results.
func Run(ctx context.Context, env Env) []Result {
	var out []Result
	bin, qres := checkQEMU(env.Config.Hypervisor.Path)
	out = append(out, qres)
	out = append(out, checkAccel(ctx, env, bin))
	out = append(out, checkTCGCache(ctx, env.Config.Hypervisor, bin))
	out = append(out, checkVsock(env.Config.Agent.Transport))
	out = append(out, checkVirtiofsd(env.VirtiofsdPaths))
	out = append(out, checkImage(env.Config.Image.Dir))
	out = append(out, checkCgroups())
	out = append(out, checkTun())
	out = append(out, checkTC())
	return out
}

// Failed reports whether any result is a failure.
func Failed(rs []Result) bool {
	for _, r := range rs {
		if r.Status == Fail {
			return true
		}
	}
	return false
}

var qemuVersion = regexp.MustCompile(`version (\d+)\.(\d+)(\.\d+)?`)

func checkQEMU(name string) (string, Result) {
	r := Result{Name: "qemu"}
	bin, err := qemu.LookBinary(name)
	if err != nil {
		r.Status, r.Detail, r.Fix = Fail, err.Error(), "apt-get install qemu-system-x86, or set hypervisor.path"
		return "", r
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-version").Output()
	if err != nil {
		r.Status, r.Detail, r.Fix = Fail, fmt.Sprintf("%s -version: %v", bin, err), "reinstall qemu-system-x86"
		return "", r
	}
	m := qemuVersion.FindStringSubmatch(string(out))
	if m == nil {
		r.Status, r.Detail, r.Fix = Warn, fmt.Sprintf("%s: cannot read its version", bin), "use QEMU 6.2 or newer"
		return bin, r
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	r.Detail = fmt.Sprintf("%s version %s.%s%s", bin, m[1], m[2], m[3])
	if major < MinQEMU[0] || (major == MinQEMU[0] && minor < MinQEMU[1]) {
		r.Status, r.Fix = Fail, fmt.Sprintf("upgrade QEMU to %d.%d or newer", MinQEMU[0], MinQEMU[1])
		return "", r
	}
	r.Status = OK
	return bin, r
}

func checkAccel(ctx context.Context, env Env, bin string) Result {
	r := Result{Name: "accelerator"}
	if bin == "" {
		r.Status, r.Detail, r.Fix = Fail, "no usable qemu", "see the qemu line"
		return r
	}
	mode := env.Config.Hypervisor.Accelerator
	choice, err := qemu.ChooseAccel(mode, func() error { return qemu.ProbeKVM(ctx, bin, env.TmpDir) })
	switch {
	case err != nil:
		r.Status, r.Detail, r.Fix = Fail, err.Error(), "enable KVM (kvm_intel/kvm_amd, nested virtualisation) or set hypervisor.accelerator = \"auto\""
	case choice.Warning != "":
		r.Status, r.Detail, r.Fix = Warn, choice.Warning, "enable KVM (BIOS virtualisation, kvm_intel/kvm_amd modules, access to /dev/kvm) for full speed"
	case choice.Accel == qemu.TCG:
		r.Status, r.Detail = OK, "tcg (configured): software emulation"
	default:
		r.Status, r.Detail = OK, "kvm: probe guest ran"
	}
	return r
}

// checkTCGCache says what becomes of the translation cache under TCG:
// trimmed once the guest settles, or resident for the VM's life.
func checkTCGCache(ctx context.Context, h config.Hypervisor, bin string) Result {
	r := Result{Name: "tcg cache", Status: OK}
	if bin == "" {
		r.Status, r.Detail = Fail, "no usable qemu"
		return r
	}
	resident := h
	resident.TCGTrim = false
	sizes := fmt.Sprintf("resident for the VM's life: %d MiB for a container, %d for a pod", resident.TCGCacheMiB(false), resident.TCGCacheMiB(true))
	if !h.TCGTrim {
		r.Detail = sizes + " (tcg_trim = false)"
		return r
	}
	v, err := qemu.CachedVersion(ctx, bin, "")
	switch {
	case err != nil:
		r.Status, r.Detail = Warn, sizes+": "+err.Error()
	case !v.TrimsTranslations():
		r.Detail = fmt.Sprintf("%s (hull trims the cache under QEMU 7 only; this is %s)", sizes, v)
	default:
		r.Detail = fmt.Sprintf("%d MiB, given back once the guest settles (QEMU %s; VMs of one vCPU, others %s)", h.TCGCacheMiB(false), v, sizes)
	}
	return r
}

func checkVsock(mode string) Result {
	r := Result{Name: "vhost-vsock"}
	if _, err := os.Stat("/dev/vhost-vsock"); err == nil {
		r.Status, r.Detail = OK, "/dev/vhost-vsock present: the agent is reached over vsock"
		return r
	}
	if mode == "vsock" {
		r.Status, r.Detail, r.Fix = Fail, "agent.transport is vsock but /dev/vhost-vsock is missing", "modprobe vhost_vsock, or set agent.transport = \"auto\""
		return r
	}
	r.Status, r.Detail, r.Fix = Warn, "/dev/vhost-vsock missing: the agent is reached over virtio-serial", "modprobe vhost_vsock for vsock"
	return r
}

func checkVirtiofsd(paths []string) Result {
	r := Result{Name: "virtiofsd"}
	for _, p := range paths {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			r.Status, r.Detail = OK, p
			return r
		}
	}
	r.Status, r.Detail, r.Fix = Fail, "not found in "+strings.Join(paths, ", "), "apt-get install qemu-system-common (ships /usr/lib/qemu/virtiofsd)"
	return r
}

func checkImage(dir string) Result {
	r := Result{Name: "guest image"}
	_, _, m, err := image.Verify(dir)
	if err != nil {
		r.Status, r.Detail, r.Fix = Fail, err.Error(), "run `hull image build` (or make setup)"
		return r
	}
	r.Status = OK
	r.Detail = fmt.Sprintf("%s: kernel %s (%s %s), agent %s, %s", dir, m.KernelRelease, m.KernelPackage, m.KernelPackageVersion, m.AgentVersion, moduleCount(len(m.Modules)))
	return r
}

func moduleCount(n int) string {
	if n == 1 {
		return "1 module"
	}
	return fmt.Sprintf("%d modules", n)
}

// CgroupMode describes the host's cgroup layout.
func CgroupMode() (string, error) {
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		return "", err
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return "unified (v2)", nil
	}
	if err := unix.Statfs("/sys/fs/cgroup/unified", &st); err == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		return "hybrid (v1 with v2 beside it)", nil
	}
	return "legacy (v1)", nil
}

func checkCgroups() Result {
	r := Result{Name: "cgroups"}
	mode, err := CgroupMode()
	if err != nil {
		r.Status, r.Detail, r.Fix = Fail, "/sys/fs/cgroup: "+err.Error(), "mount cgroups"
		return r
	}
	// Container cgroups live in the guest; the host only places the VM's
	// processes, which works with every layout.
	r.Status, r.Detail = OK, mode+"; container limits are applied inside the guest"
	return r
}

func checkTun() Result {
	r := Result{Name: "tun"}
	f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
	if err != nil {
		r.Status, r.Detail, r.Fix = Fail, "/dev/net/tun: "+err.Error(), "modprobe tun"
		return r
	}
	f.Close()
	r.Status, r.Detail = OK, "/dev/net/tun"
	return r
}

// checkTC looks for the traffic-control pieces that mirror a container's
// veth into its VM: the ingress qdisc and the mirred action, built in,
// loaded, or loadable.
func checkTC() Result {
	r := Result{Name: "tc"}
	var missing []string
	for _, m := range []string{"sch_ingress", "act_mirred", "cls_u32"} {
		if !kernelHas(m) {
			missing = append(missing, m)
		}
	}
	if len(missing) > 0 {
		r.Status, r.Detail, r.Fix = Warn, "cannot confirm kernel support for "+strings.Join(missing, ", "), "modprobe "+strings.Join(missing, " ")+" (needed for container networking)"
		return r
	}
	r.Status, r.Detail = OK, "ingress qdisc, mirred action, u32 classifier"
	return r
}

func kernelHas(module string) bool {
	if _, err := os.Stat("/sys/module/" + module); err == nil {
		return true
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false
	}
	rel := unix.ByteSliceToString(u.Release[:])
	for _, list := range []string{"modules.builtin", "modules.dep"} {
		f, err := os.Open("/lib/modules/" + rel + "/" + list)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "/"+module+".ko") {
				f.Close()
				return true
			}
		}
		f.Close()
	}
	// Kernels without module lists (built for a single host) expose their
	// config: CONFIG_NET_SCH_INGRESS and friends.
	return kernelConfigHas(rel, module)
}

var configSymbol = map[string]string{
	"sch_ingress": "CONFIG_NET_SCH_INGRESS",
	"act_mirred":  "CONFIG_NET_ACT_MIRRED",
	"cls_u32":     "CONFIG_NET_CLS_U32",
}

func kernelConfigHas(release, module string) bool {
	sym := configSymbol[module]
	b, err := os.ReadFile("/boot/config-" + release)
	if err != nil {
		b, err = readGzip("/proc/config.gz")
	}
	if err != nil {
		return false
	}
	return strings.Contains(string(b), sym+"=y") || strings.Contains(string(b), sym+"=m")
}

func readGzip(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		return nil, err
	}
	// A kernel config is a few hundred KiB; bound it anyway.
	return io.ReadAll(io.LimitReader(z, 8<<20))
}
