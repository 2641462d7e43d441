package agent

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	api "github.com/hull-runtime/hull/api/agent/v1"
	"github.com/hull-runtime/hull/internal/guest/cmdline"
	"github.com/hull-runtime/hull/internal/guest/names"
	"github.com/hull-runtime/hull/internal/guest/netconf"
)

// ShareParam is the kernel parameter that names the virtio-fs tag the
// host will ask CreateSandbox to mount, so that the agent mounts it while
// it waits for its channel rather than when asked.
const ShareParam = "hull.share"

// prepared is what the agent set up at boot, ahead of the host's calls:
// under TCG the guest waits tens of milliseconds for its serial port and
// for the host's first calls, time in which the sandbox's and the first
// container's set-up can already run.
type prepared struct {
	done chan struct{}
	// share is the tag mounted at api.SharedMountPoint; empty if none.
	share string
	// shareErr is why the share named on the command line is not mounted.
	shareErr error
}

// prepare starts the set-up that needs no call from the host: the
// virtio-fs share named on the command line, and the container engine's
// own (the parent cgroup).
func (a *agent) prepare(params []cmdline.Param, engine interface{ Prepare() error }) *prepared {
	p := &prepared{done: make(chan struct{})}
	tag, ok := cmdline.Lookup(params, ShareParam)
	go func() {
		defer func() {
			a.log.Debugf("prepared at %s", seconds(uptime()))
			close(p.done)
		}()
		if ok && !a.testMode() {
			if err := mountShare(tag); err != nil {
				p.shareErr = err
				a.log.WithError(err).Warn("virtio-fs share not mounted at boot")
			} else {
				p.share = tag
			}
		}
		// Not in test mode: the host's cgroups and network are not the
		// agent's.
		if a.testMode() {
			return
		}
		// Every sandbox has its loopback up (CreateSandbox); the netlink
		// code runs here while the guest waits anyway.
		if err := netconf.LoopbackUp(); err != nil {
			a.log.WithError(err).Warn("loopback")
		}
		if err := engine.Prepare(); err != nil {
			a.log.WithError(err).Warn("container engine not prepared")
		}
	}()
	return p
}

// wait waits for the boot's set-up, as long as ctx allows.
func (p *prepared) wait(ctx context.Context) error {
	if p == nil {
		return nil
	}
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// mountShare mounts virtio-fs tag at api.SharedMountPoint. nodev: device
// nodes the host puts in a rootfs are recreated by the container engine,
// never used from the share.
func mountShare(tag string) error {
	if !names.Tag(tag) {
		return fmt.Errorf("shared fs tag %q", tag)
	}
	// Searchable: the root of a container with a user namespace is not
	// the guest's root, and its engine reaches the rootfs through here.
	if err := os.MkdirAll(api.SharedMountPoint, 0o711); err != nil {
		return fmt.Errorf("shared mount point: %w", err)
	}
	if err := unix.Mount(tag, api.SharedMountPoint, "virtiofs", unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("mounting virtio-fs %q at %s: %w", tag, api.SharedMountPoint, err)
	}
	setReadahead(api.SharedMountPoint, shareReadaheadKB)
	return nil
}

// shareReadaheadKB is the share's readahead. FUSE's default, 128 KiB,
// makes a program's first run read its binary in a round trip to
// virtiofsd per 128 KiB, each slow under TCG; a larger window has the
// reads go out together.
const shareReadaheadKB = 4096

// setReadahead sets the readahead of the file system mounted at path
// (its backing device info, named after its device number).
func setReadahead(path string, kb int) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return
	}
	bdi := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	_ = os.WriteFile(bdi, []byte(fmt.Sprint(kb)), 0)
}
