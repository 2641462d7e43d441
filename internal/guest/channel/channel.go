// Package channel gives the agent's ttRPC server listeners over the two
// streams a VM has to the host: a virtio-serial port, which every VMM has,
// and vsock, where the host has vhost-vsock.
//
// A virtio-serial port is one byte stream with no connections: the host
// side opening and closing its end shows in the guest only as the port
// being "host connected" or not. SerialListener turns each stretch of host
// connection into one net.Conn, so that the ttRPC server, which keeps
// per-connection state, sees a new connection for a new host session.
package channel

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mdlayher/vsock"
	"golang.org/x/sys/unix"
)

// Kinds of channel, as the agent API reports them.
const (
	KindSerial = "serial"
	KindVsock  = "vsock"
)

const (
	virtioPortsDir = "/sys/class/virtio-ports"
	devDir         = "/dev"
	pollInterval   = 5 * time.Millisecond
)

// FindSerialPort waits until the virtio-serial port named name shows up and
// returns the path of its device node. The port appears some time after
// virtio_console is loaded (the driver probes asynchronously and learns
// port names from the host), so it polls until ctx is done.
func FindSerialPort(ctx context.Context, name string) (string, error) {
	return findPort(ctx, virtioPortsDir, devDir, name)
}

func findPort(ctx context.Context, sysDir, devDir, name string) (string, error) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		if path, ok := lookPort(sysDir, devDir, name); ok {
			return path, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("virtio-serial port %q: %w", name, context.Cause(ctx))
		case <-t.C:
		}
	}
}

func lookPort(sysDir, devDir, name string) (string, bool) {
	ents, err := os.ReadDir(sysDir)
	if err != nil {
		return "", false
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(sysDir, e.Name(), "name"))
		if err != nil || strings.TrimSpace(string(b)) != name {
			continue
		}
		// devtmpfs creates the node when the port is added, but the name
		// may come first: check both.
		dev := filepath.Join(devDir, e.Name())
		if _, err := os.Stat(dev); err == nil {
			return dev, true
		}
	}
	return "", false
}

// VsockAvailable tells whether the VM has a vsock device. The vsock core
// (built into hull's kernel, a module of Debian's) makes /dev/vsock either
// way; only a probed device gives the guest a context ID of its own (3 or
// more: without one the kernel answers VMADDR_CID_ANY, or the loopback
// transport's 1), and without one a listener would wait for nobody.
func VsockAvailable() bool {
	cid, err := vsock.ContextID()
	return err == nil && cid > unix.VMADDR_CID_HOST && cid != unix.VMADDR_CID_ANY
}

// ListenVsock listens on port for any context ID, so that it does not
// depend on the virtio vsock device having been probed (and the guest's
// CID known) yet.
func ListenVsock(port uint32) (net.Listener, error) {
	return vsock.ListenContextID(unix.VMADDR_CID_ANY, port, nil)
}
