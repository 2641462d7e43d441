package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli"

	"github.com/hull-runtime/hull/internal/hooks"
	"github.com/hull-runtime/hull/internal/hostcgroup"
	"github.com/hull-runtime/hull/internal/oci"
	"github.com/hull-runtime/hull/internal/sandbox"
	"github.com/hull-runtime/hull/internal/state"
	"github.com/hull-runtime/hull/internal/storage"
)

var deleteCommand = cli.Command{
	Name:      "delete",
	Usage:     "delete a stopped container, or any container with --force",
	ArgsUsage: "<container-id>",
	Flags:     []cli.Flag{cli.BoolFlag{Name: "force, f", Usage: "kill a created or running container first"}},
	Action: func(c *cli.Context) error {
		store, id, err := openContainer(c)
		if err != nil {
			return err
		}
		return deleteContainer(store, id, c.Bool("force"))
	},
}

// deleteContainer removes a stopped container, or with force any
// container, killing it first; then it runs the poststop hooks.
func deleteContainer(store *state.Store, id string, force bool) error {
	st, err := store.Read(id)
	if errdefs.IsNotFound(err) && force {
		// No state, but maybe what a crash left behind.
		if _, serr := os.Stat(store.Dir(id)); serr != nil {
			return nil
		}
		st, err = &state.State{ID: id, Status: state.Stopped}, nil
	}
	if err != nil {
		return err
	}
	if st.Status != state.Stopped {
		if !force {
			return fmt.Errorf("container %s is %s: stop it or use --force: %w", id, st.Status, errdefs.ErrFailedPrecondition)
		}
		// QEMU and virtiofsd die with their supervisor (parent-death
		// signal); what they leave is cleaned below.
		killAndWait(st.Supervisor, st.SupervisorStart)
	}
	if err := forceCleanup(store, st); err != nil {
		return err
	}
	// poststop hooks run once the container is gone; their failure is
	// reported but does not bring the container back.
	if spec, err := oci.LoadBundle(st.Bundle); err == nil {
		// A supervisor that was killed left its host cgroup.
		if err := hostcgroup.Remove(spec); err != nil {
			log.G(commandContext()).WithError(err).Warn("host cgroup")
		}
		hs := specs.State{Version: specs.Version, ID: st.ID, Status: specs.StateStopped, Bundle: st.Bundle, Annotations: st.Annotations}
		if err := hooks.Poststop(commandContext(), spec, hs); err != nil {
			log.G(commandContext()).WithError(err).Warn("poststop hook")
		}
	}
	return nil
}

// forceCleanup removes what is left of a container whose supervisor is
// gone.
func forceCleanup(store *state.Store, st *state.State) error {
	h, err := store.Lock(st.ID)
	if err != nil {
		return err
	}
	defer h.Unlock()
	return cleanup(h)
}

func killAndWait(pid int, start uint64) {
	if !state.Alive(pid, start) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 100 && state.Alive(pid, start); i++ {
		time.Sleep(20 * time.Millisecond)
	}
}

// cleanup removes whatever a dead supervisor left: its sandbox (VM
// processes, mounts, network namespace changes, run directory: see
// sandbox.Reclaim), then what is left in the container's directory, and
// the directory.
func cleanup(h *state.Handle) error {
	dir := h.Dir()
	if err := sandbox.Reclaim(commandContext(), sandbox.RunDirFor(filepath.Dir(dir), filepath.Base(dir))); err != nil {
		return err
	}
	// What no record covers: a supervisor that died before its sandbox
	// recorded anything.
	if err := storage.UnmountUnder(dir); err != nil {
		return err
	}
	if err := storage.RemoveEmptyTree(filepath.Join(dir, "shared")); err != nil {
		return err
	}
	return h.Remove()
}
