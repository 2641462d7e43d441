package network

import (
	"fmt"
	"os"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// openTap creates a tap named name in the namespace and returns its fd,
// ready for QEMU: no packet information header, a virtio-net header (QEMU
// offloads through it), one queue. The tap is not persistent: it goes away
// with its last fd, that is with QEMU.
func (n *Network) openTap(name string) (*os.File, error) {
	// /dev/net/tun makes the tap in the namespace of the thread that opens
	// it, so this thread enters the namespace for the open.
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return nil, n.errorf("current namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(n.ns); err != nil {
		runtime.UnlockOSThread()
		return nil, n.errorf("entering: %w", err)
	}
	f, err := createTap(name)
	if rerr := netns.Set(orig); rerr != nil {
		// The thread stays in the other namespace: let it die with the
		// goroutine rather than run anything else there.
		if f != nil {
			f.Close()
		}
		return nil, n.errorf("leaving: %w", rerr)
	}
	runtime.UnlockOSThread()
	if err != nil {
		return nil, n.errorf("tap %s: %w", name, err)
	}
	return f, nil
}

func createTap(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF: %w", err)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+name), nil
}
