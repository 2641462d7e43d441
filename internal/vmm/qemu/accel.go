package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// probeExitCode is what QEMU exits with when the probe guest wrote
// probeValue to the isa-debug-exit port: (value << 1) | 1.
const (
	probeValue    = 0x21
	probeExitCode = probeValue<<1 | 1
	probeTimeout  = 5 * time.Second
)

// probeFirmware returns a 64 KiB firmware image whose reset vector jumps to
// code that writes probeValue to I/O port 0xf4 and halts. Running it proves
// that a vCPU of the chosen CPU model executes guest code: /dev/kvm can exist
// and open while QEMU aborts on the first vCPU reset (nested hosts that
// refuse MSRs of `-cpu host`), so the device file alone proves nothing.
func probeFirmware() []byte {
	const size = 64 << 10
	img := make([]byte, size)
	for i := range img {
		img[i] = 0xf4 // hlt
	}
	code := []byte{
		0xb0, probeValue, // mov al, probeValue
		0xe6, 0xf4, // out 0xf4, al
		0xf4,       // hlt
		0xeb, 0xfd, // jmp back to hlt
	}
	const codeAt = size - 32
	copy(img[codeAt:], code)
	// The CPU starts 16 bytes below the top of the image: jump back to code.
	const reset = size - 16
	img[reset] = 0xeb
	var rel int8 = codeAt - (reset + 2)
	img[reset+1] = byte(rel)
	return img
}

// ProbeKVM reports whether QEMU runs a guest with KVM and `-cpu host` on this
// host. tmpDir receives the probe firmware for the duration of the probe.
func ProbeKVM(ctx context.Context, binary, tmpDir string) error {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("/dev/kvm: %w", err)
	}
	f.Close()
	if err := checkKVMModule(sysModuleDir); err != nil {
		return err
	}
	fw, err := os.CreateTemp(tmpDir, "hull-kvm-probe-*.bin")
	if err != nil {
		return fmt.Errorf("kvm probe: %w", err)
	}
	defer os.Remove(fw.Name())
	if _, err := fw.Write(probeFirmware()); err != nil {
		fw.Close()
		return fmt.Errorf("kvm probe: %w", err)
	}
	fw.Close()

	return runProbe(ctx, binary, fw.Name(), "kvm", "host")
}

// sysModuleDir is where the kernel lists its modules.
const sysModuleDir = "/sys/module"

// checkKVMModule refuses a /dev/kvm served by PVM (kvm_pvm), the
// pagetable-based nested hypervisor of some cloud VMs. PVM runs only guest
// kernels built for it (CONFIG_KVM_PVM_GUEST); a standard kernel such as
// Debian's hangs in early boot without a word on the console, while the
// probe's real-mode firmware runs fine, so the probe alone would pick KVM
// and every boot would then time out. Hardware KVM is kvm_intel or kvm_amd.
func checkKVMModule(dir string) error {
	has := func(m string) bool {
		_, err := os.Stat(filepath.Join(dir, m))
		return err == nil
	}
	if has("kvm_pvm") && !has("kvm_intel") && !has("kvm_amd") {
		return fmt.Errorf("/dev/kvm is PVM (module kvm_pvm), which runs only guest kernels built for PVM, not hull's guest kernel")
	}
	return nil
}

// runProbe boots the probe firmware with the given accelerator and CPU
// model and expects its exit code.
func runProbe(ctx context.Context, binary, firmware, accel, cpu string) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary,
		"-no-user-config", "-nodefaults", "-display", "none", "-no-reboot",
		"-machine", "microvm,x-option-roms=off,pit=off,pic=off,rtc=off",
		"-accel", accel, "-cpu", cpu, "-m", "16M",
		"-bios", firmware,
		"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == probeExitCode {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s guest did not run within %s: %w", accel, probeTimeout, errProbeTimeout)
	}
	msg := lastLine(string(out))
	if msg == "" && err != nil {
		msg = err.Error()
	}
	return fmt.Errorf("qemu with %s cannot run a guest here: %s", accel, msg)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.TrimSpace(lines[i])
		if l != "" && !strings.Contains(l, "Aborted") {
			if strings.Contains(l, "Assertion") && i > 0 {
				return strings.TrimSpace(lines[i-1])
			}
			return l
		}
	}
	return ""
}

// AccelChoice is the result of ChooseAccel.
type AccelChoice struct {
	Accel Accel
	// Warning is set when auto fell back to TCG: users pay a large speed
	// cost and must be told why, once.
	Warning string
}

// ChooseAccel turns the configured accelerator (auto, kvm or tcg) into the
// one to use. probe runs only when the mode needs it.
func ChooseAccel(mode string, probe func() error) (AccelChoice, error) {
	switch mode {
	case "tcg":
		return AccelChoice{Accel: TCG}, nil
	case "kvm":
		if err := probe(); err != nil {
			return AccelChoice{}, fmt.Errorf("accelerator kvm configured but unusable: %w; set hypervisor.accelerator to auto or tcg: %w", err, errdefs.ErrFailedPrecondition)
		}
		return AccelChoice{Accel: KVM}, nil
	case "auto", "":
		if err := probe(); err != nil {
			return AccelChoice{Accel: TCG, Warning: fmt.Sprintf("KVM unusable (%v): falling back to TCG software emulation, which is many times slower", err)}, nil
		}
		return AccelChoice{Accel: KVM}, nil
	}
	return AccelChoice{}, fmt.Errorf("accelerator %q is not auto, kvm or tcg: %w", mode, errdefs.ErrInvalidArgument)
}

// LookBinary resolves the QEMU binary name or path to an absolute path.
func LookBinary(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("qemu binary %q not found (install qemu-system-x86): %w", name, errdefs.ErrNotFound)
	}
	return filepath.Abs(p)
}

// SelectAccel resolves the QEMU binary and chooses the accelerator for the
// configured mode, probing KVM when the mode needs it. The probe's outcome
// is remembered in cacheDir (see CachedProbeKVM); "" probes afresh.
func SelectAccel(ctx context.Context, qemuPath, mode, cacheDir string) (AccelChoice, error) {
	bin, err := LookBinary(qemuPath)
	if err != nil {
		return AccelChoice{}, err
	}
	return ChooseAccel(mode, func() error { return CachedProbeKVM(ctx, bin, os.TempDir(), cacheDir) })
}
