// Package qemu runs a virtual machine with QEMU: a typed configuration in,
// a running VM out. It knows nothing of sandboxes, containers or the guest
// agent; it offers the VM's channels (a virtio-serial port, vsock, the
// console) as host-side connections and stops the VM in bounded steps.
package qemu

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"github.com/containerd/errdefs"
)

// Accel is the accelerator a VM runs with. The choice of auto is made by
// ChooseAccel before a Config is built, so a Config is always explicit.
type Accel string

const (
	KVM Accel = "kvm"
	TCG Accel = "tcg"
)

// Machine types the driver knows how to build devices for.
const (
	MachineMicroVM = "microvm"
	MachineQ35     = "q35"
)

// Config describes one VM. Paths must be absolute: QEMU resolves relative
// paths against its own working directory, which is not the caller's
// business.
type Config struct {
	// Name identifies the VM in QEMU's process title and in errors.
	Name string
	// Binary is the absolute path of qemu-system-x86_64.
	Binary  string
	Machine string
	Accel   Accel
	// TBSizeMiB caps the TCG translation cache; ignored under KVM.
	TBSizeMiB int
	// TrimTCG keeps the TCG translation cache in a memfd (split-wx) that
	// the host empties and frees once the guest's translating settles
	// (VM.TrimTranslations); ignored under KVM.
	TrimTCG bool
	// TSCKHz, under TCG, tells the guest the TSC rate (see HostTSCKHz);
	// zero leaves the guest to calibrate it.
	TSCKHz    uint64
	VCPUs     int
	MemoryMiB int
	// SharedMemory backs guest RAM with a shareable memfd, which vhost-user
	// devices (virtiofsd) need to map guest buffers.
	SharedMemory bool
	Kernel       string
	Initrd       string
	KernelParams []string
	// RunDir holds the files of this VM (the console log). Start creates it
	// if needed; it is removed, if empty, when the VM is stopped.
	RunDir string
	// SerialPorts are virtio-serial port names; each becomes a host-side
	// connection returned by VM.Port.
	SerialPorts []string
	// VsockCID, when non-zero, adds a vhost-vsock device with that guest CID.
	VsockCID uint32
	// Balloon adds virtio-balloon with free page reporting so the guest
	// gives back memory it freed.
	Balloon bool
	// FS are vhost-user-fs devices, each served by a virtiofsd socket.
	FS []FSDevice
	// Net are virtio-net devices, each backed by a tap QEMU inherits.
	Net []NetDevice
	// ConsoleLogMax bounds the console log: the guest writes it, and the host
	// never lets a guest fill its disk. Zero means DefaultConsoleLogMax.
	ConsoleLogMax int64
}

// FSDevice is a virtio-fs device backed by virtiofsd.
type FSDevice struct {
	Tag string
	// Conn is a vhost-user connection to virtiofsd, inherited by QEMU.
	Conn *os.File
}

// NetDevice is a virtio-net device backed by a tap.
type NetDevice struct {
	// TapFile is an open tap (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR); QEMU
	// inherits it, and Start closes the caller's copy once QEMU has it.
	TapFile *os.File
	// MAC is the guest's MAC address, aa:bb:cc:dd:ee:ff.
	MAC string
}

// DefaultConsoleLogMax is the console log bound when Config leaves it zero.
const DefaultConsoleLogMax = 1 << 20

var (
	portName = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,64}$`)
	vmName   = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,128}$`)
	macAddr  = regexp.MustCompile(`^[0-9a-f]{2}(:[0-9a-f]{2}){5}$`)
)

// Validate reports the first field that cannot make a VM.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("vm %s: %s: %w", c.Name, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
	}
	switch {
	case !vmName.MatchString(c.Name):
		return bad("name %q must be 1-128 of [a-zA-Z0-9._-]", c.Name)
	case !filepath.IsAbs(c.Binary):
		return bad("qemu binary %q is not an absolute path", c.Binary)
	case c.Machine != MachineMicroVM && c.Machine != MachineQ35:
		return bad("machine %q is not microvm or q35", c.Machine)
	case c.Accel != KVM && c.Accel != TCG:
		return bad("accelerator %q is not kvm or tcg", c.Accel)
	case c.VCPUs < 1:
		return bad("vcpus %d < 1", c.VCPUs)
	case c.MemoryMiB < 32:
		return bad("memory %d MiB < 32", c.MemoryMiB)
	case c.Accel == TCG && c.TBSizeMiB < 1:
		return bad("translation cache %d MiB < 1", c.TBSizeMiB)
	case !filepath.IsAbs(c.Kernel):
		return bad("kernel %q is not an absolute path", c.Kernel)
	case c.Initrd != "" && !filepath.IsAbs(c.Initrd):
		return bad("initrd %q is not an absolute path", c.Initrd)
	case !filepath.IsAbs(c.RunDir):
		return bad("run dir %q is not an absolute path", c.RunDir)
	case len(c.FS) > 0 && !c.SharedMemory:
		return bad("virtio-fs needs shared memory")
	}
	for _, p := range c.KernelParams {
		if p == "" || containsAny(p, " \t\n") {
			return bad("kernel parameter %q must be one word", p)
		}
	}
	for _, p := range c.SerialPorts {
		if !portName.MatchString(p) {
			return bad("serial port name %q must be 1-64 of [a-zA-Z0-9._-]", p)
		}
	}
	for _, f := range c.FS {
		if !portName.MatchString(f.Tag) || f.Conn == nil {
			return bad("virtio-fs tag %q invalid or no connection", f.Tag)
		}
	}
	for _, n := range c.Net {
		// A multicast MAC (low bit of the first octet) cannot be a NIC's.
		if !macAddr.MatchString(n.MAC) || isOddHex(n.MAC[1]) {
			return bad("net device MAC %q must be a unicast aa:bb:cc:dd:ee:ff in lower case", n.MAC)
		}
		if n.TapFile == nil {
			return bad("net device %s has no tap", n.MAC)
		}
	}
	return nil
}

// isOddHex reports whether the hex digit c has its low bit set.
func isOddHex(c byte) bool {
	if c >= 'a' {
		return (c-'a'+10)&1 != 0
	}
	return (c-'0')&1 != 0
}

func containsAny(s, chars string) bool {
	for _, r := range s {
		for _, c := range chars {
			if r == c {
				return true
			}
		}
	}
	return false
}
