// Package shim is hull's containerd shim v2 (runtime io.containerd.hull.v2):
// one shim process and one VM per pod. The CRI sandbox container boots
// the VM; containers annotated with its sandbox id join the same shim and
// VM; any other container (ctr run) is a pod of its own. The Task service
// drives package sandbox, as the CLI's supervisor does; the manager starts
// or finds a pod's shim, and cleans up after one that died.
package shim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/pkg/shutdown"
	"github.com/containerd/containerd/plugin"
	"github.com/containerd/containerd/runtime/v2/shim"
	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/hull-runtime/hull/internal/config"
	"github.com/hull-runtime/hull/internal/oci"
	"github.com/hull-runtime/hull/internal/sandbox"
	"github.com/hull-runtime/hull/internal/storage"
)

// RuntimeName is the runtime type containerd's configuration names.
const RuntimeName = "io.containerd.hull.v2"

// Register registers the Task service as the shim framework's ttRPC
// plugin; call it before running the manager.
func Register() {
	plugin.Register(&plugin.Registration{
		Type:     plugin.TTRPCPlugin,
		ID:       "task",
		Requires: []plugin.Type{plugin.EventPlugin, plugin.InternalPlugin},
		InitFn: func(ic *plugin.InitContext) (interface{}, error) {
			pub, err := ic.GetByID(plugin.EventPlugin, "publisher")
			if err != nil {
				return nil, err
			}
			sd, err := ic.GetByID(plugin.InternalPlugin, "shutdown")
			if err != nil {
				return nil, err
			}
			return newService(ic.Context, pub.(shim.Publisher), sd.(shutdown.Service))
		},
	})
}

// Options are the shim framework's options for hull: the shim waits for
// its own children (QEMU, virtiofsd, loggers) through os/exec, so the
// framework must not reap them behind its back, nor make the shim a
// subreaper of processes it never started.
func Options(c *shim.Config) {
	c.NoReaper = true
	c.NoSubreaper = true
}

// Manager starts and stops shims.
type Manager struct{}

// Name is the runtime's name.
func (Manager) Name() string { return RuntimeName }

// Start returns the address of the shim that serves the container in the
// current directory (its bundle): the pod's running shim when there is
// one, else a new one.
func (Manager) Start(ctx context.Context, id string, opts shim.StartOpts) (_ string, retErr error) {
	spec, err := oci.LoadBundle(".")
	if err != nil {
		return "", err
	}
	group, _ := groupOf(id, spec)
	address, err := shim.SocketAddress(ctx, opts.Address, group)
	if err != nil {
		return "", err
	}
	socket, err := shim.NewSocket(address)
	if err != nil {
		if !shim.SocketEaddrinuse(err) {
			return "", fmt.Errorf("shim socket: %w", err)
		}
		// The pod's shim is already up: the container joins it.
		if shim.CanConnect(address) {
			if err := shim.WriteAddress("address", address); err != nil {
				return "", err
			}
			return address, nil
		}
		// A dead shim's socket.
		if err := shim.RemoveSocket(address); err != nil {
			return "", fmt.Errorf("remove stale shim socket: %w", err)
		}
		if socket, err = shim.NewSocket(address); err != nil {
			return "", fmt.Errorf("shim socket: %w", err)
		}
	}
	defer func() {
		if retErr != nil {
			socket.Close()
			_ = shim.RemoveSocket(address)
		}
	}()
	if err := shim.WriteAddress("address", address); err != nil {
		return "", err
	}
	f, err := socket.File()
	if err != nil {
		return "", err
	}
	defer f.Close()
	cmd, err := serveCommand(ctx, id, opts)
	if err != nil {
		return "", err
	}
	cmd.ExtraFiles = []*os.File{f}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start shim: %w", err)
	}
	go func() { _ = cmd.Wait() }()
	if err := shim.AdjustOOMScore(cmd.Process.Pid); err != nil {
		log.G(ctx).WithError(err).Warn("shim oom score")
	}
	return address, nil
}

// serveCommand is the shim re-executed to serve, detached in its own
// process group so that signals to containerd's group miss it.
func serveCommand(ctx context.Context, id string, opts shim.StartOpts) (*exec.Cmd, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cwd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	args := []string{"-namespace", ns, "-id", id, "-address", opts.Address}
	if opts.Debug {
		args = append(args, "-debug")
	}
	cmd := exec.Command(self, args...)
	cmd.Dir = cwd
	// The shim framework itself tunes the serving shim for one per pod:
	// GC at 40%, memory returned to the system every 30 s, 2 Ps.
	cmd.Env = os.Environ()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd, nil
}

// Stop is containerd's `delete` after a shim died: it removes what the
// dead shim left of the container in the current directory, and, for the
// pod's owner, the VM, virtiofsd, mounts, taps and state of the pod.
func (Manager) Stop(ctx context.Context, id string) (shim.StopStatus, error) {
	cwd, err := os.Getwd()
	if err != nil {
		return shim.StopStatus{}, err
	}
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return shim.StopStatus{}, err
	}
	cfg, err := config.Load(config.Path(""), false)
	if err != nil {
		return shim.StopStatus{}, err
	}
	group, owner := id, true
	if spec, err := oci.LoadBundle(cwd); err == nil {
		group, owner = groupOf(id, spec)
	}
	dir := podDir(cfg.Runtime.Root, ns, group)
	// containerd cleans up every task of a dead shim at once: the pod's
	// owner and its other containers must not tear the pod down together.
	unlock, err := lockDir(dir)
	if err != nil {
		return shim.StopStatus{}, err
	}
	defer unlock()
	if owner {
		if err := sandbox.Reclaim(ctx, filepath.Join(dir, "vm")); err != nil {
			return shim.StopStatus{}, err
		}
		if err := storage.UnmountUnder(filepath.Join(dir, "shared")); err != nil {
			return shim.StopStatus{}, err
		}
		if err := storage.RemoveEmptyTree(filepath.Join(dir, "shared")); err != nil {
			return shim.StopStatus{}, err
		}
		removePodDir(dir)
	} else {
		// The container's share in the pod; the rest goes with the owner.
		if err := storage.UnmountUnder(filepath.Join(dir, "shared", "view", id)); err != nil {
			return shim.StopStatus{}, err
		}
		if err := storage.RemoveEmptyTree(filepath.Join(dir, "shared", "fs", id)); err != nil {
			return shim.StopStatus{}, err
		}
	}
	if err := mount.UnmountAll(filepath.Join(cwd, "rootfs"), 0); err != nil {
		log.G(ctx).WithError(err).Warn("unmount rootfs")
	}
	return shim.StopStatus{ExitStatus: 128 + int(syscall.SIGKILL), ExitedAt: time.Now()}, nil
}

// lockDir takes an exclusive lock on dir, waiting for it; a missing dir
// needs no lock.
func lockDir(dir string) (func(), error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return func() {}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() { unix.Close(fd) }, nil
}
