package qemu

import (
	"fmt"
	"strconv"
	"strings"
)

// Fixed file descriptors of the QEMU child: os/exec numbers ExtraFiles from
// 3, and the command line refers to them by number.
const (
	fdQMP     = 3
	fdConsole = 4
	fdPorts   = 5 // first virtio-serial port; the others, the virtio-fs connections, then the taps follow
)

// device names differ between the virtio-mmio of microvm and the PCI of q35.
func (c *Config) dev(name string) string {
	if c.Machine == MachineQ35 {
		return name + "-pci"
	}
	return name + "-device"
}

// Args returns QEMU's arguments (without the binary). Channels are passed
// as inherited, already connected sockets, so no socket file can leak, be
// raced for, or be reached by another local user.
func (c *Config) Args() []string {
	var a []string
	add := func(args ...string) { a = append(a, args...) }

	add("-name", c.Name)
	add("-no-user-config", "-nodefaults", "-display", "none", "-no-reboot")

	// A crash of QEMU, which the guest may find a way to cause, must not
	// write the guest's memory to the host's disk in a core dump.
	machine := []string{c.Machine, "dump-guest-core=off"}
	if c.Machine == MachineMicroVM {
		// No option ROMs to run at boot. PIT, PIC and RTC stay: without them
		// the Debian kernel under TCG boots twice as slowly or hangs early.
		// The ISA serial is the guest console.
		machine = append(machine, "x-option-roms=off", "isa-serial=on")
	}
	if c.SharedMemory {
		machine = append(machine, "memory-backend=mem")
	}
	add("-machine", strings.Join(machine, ","))
	switch c.Accel {
	case KVM:
		add("-accel", "kvm", "-cpu", "host")
	default:
		// No ERMS: with it the guest kernel copies user memory and clears
		// pages with `rep movsb`/`rep stosb`, and Go's memmove uses
		// `rep movsb` too, which TCG runs one byte per loop; without it
		// they move 8 or 16 bytes per instruction.
		tcg := "tcg,tb-size=" + strconv.Itoa(c.TBSizeMiB)
		if c.TrimTCG {
			// The cache in a memfd, which the host can free (trim.go).
			tcg += ",split-wx=on"
		}
		add("-accel", tcg, "-cpu", "max,erms=off")
	}
	add("-smp", strconv.Itoa(c.VCPUs))
	add("-m", fmt.Sprintf("%dM", c.MemoryMiB))
	if c.SharedMemory {
		add("-object", fmt.Sprintf("memory-backend-memfd,id=mem,size=%dM,share=on,dump=off", c.MemoryMiB))
	}
	if c.Machine == MachineMicroVM {
		// vhost-user devices refuse microvm's default legacy virtio-mmio.
		add("-global", "virtio-mmio.force-legacy=false")
	}

	add("-kernel", c.Kernel)
	if c.Initrd != "" {
		add("-initrd", c.Initrd)
	}
	params := []string{"console=ttyS0"}
	if c.Accel == TCG && c.TSCKHz > 0 {
		params = append(params, "tsc_early_khz="+strconv.FormatUint(c.TSCKHz, 10))
	}
	params = append(params, c.KernelParams...)
	add("-append", strings.Join(params, " "))

	add("-chardev", fmt.Sprintf("socket,id=qmp,fd=%d", fdQMP), "-mon", "chardev=qmp,mode=control")
	add("-chardev", fmt.Sprintf("socket,id=console,fd=%d", fdConsole), "-serial", "chardev:console")

	if len(c.SerialPorts) > 0 {
		// QEMU's default of 31 ports makes the guest driver set up 64
		// virtqueues, each with its ring and bookkeeping, for ports never
		// used: 3.4 MiB of every guest with virtio-mmio's 1024-entry
		// queues. Port 0 is reserved for a console, hence the one extra.
		add("-device", fmt.Sprintf("%s,id=vser0,max_ports=%d", c.dev("virtio-serial"), len(c.SerialPorts)+1))
		for i, name := range c.SerialPorts {
			id := "port" + strconv.Itoa(i)
			add("-chardev", fmt.Sprintf("socket,id=%s,fd=%d", id, fdPorts+i))
			add("-device", fmt.Sprintf("virtserialport,bus=vser0.0,chardev=%s,name=%s", id, name))
		}
	}
	if c.VsockCID != 0 {
		add("-device", fmt.Sprintf("%s,id=vsock0,guest-cid=%d", c.dev("vhost-vsock"), c.VsockCID))
	}
	for i, f := range c.FS {
		id := "fs" + strconv.Itoa(i)
		add("-chardev", fmt.Sprintf("socket,id=%s,fd=%d", id, fdPorts+len(c.SerialPorts)+i))
		add("-device", fmt.Sprintf("%s,chardev=%s,tag=%s", c.dev("vhost-user-fs"), id, f.Tag))
	}
	for i, n := range c.Net {
		id := "net" + strconv.Itoa(i)
		// No vhost: there is no /dev/vhost-net everywhere, and QEMU's own
		// backend needs nothing from the host but the tap.
		add("-netdev", fmt.Sprintf("tap,id=%s,fd=%d,vhost=off", id, fdPorts+len(c.SerialPorts)+len(c.FS)+i))
		add("-device", fmt.Sprintf("%s,netdev=%s,mac=%s", c.dev("virtio-net"), id, n.MAC))
	}
	if c.Balloon {
		add("-device", c.dev("virtio-balloon")+",free-page-reporting=on")
	}
	return a
}
