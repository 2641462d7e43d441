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
	"github.com/hull-runtime/hull/internal/supervisor"
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
		// The runtime spec's delete: a container that is not stopped
		// stays as it is, and the caller gets an error. runc kills and
		// deletes a created one; hull keeps to the spec (runtime-tools'
		// delete test), and callers that mean it pass --force (podman and
		// CRI-O always do).
		if !force {
			return fmt.Errorf("container %s is %s: stop it or use --force: %w", id, st.Status, errdefs.ErrFailedPrecondition)
		}
		stopThroughSupervisor(store, id, st)
		// QEMU and virtiofsd die with their supervisor (parent-death
		// signal); what they leave is cleaned below.
		killAndWait(st.Supervisor, st.SupervisorStart)
	}
	// The spec the container was created from, kept in its state: the
	// bundle may have changed or gone since (a state written before hull
	// kept it has only the bundle).
	spec, specErr := oci.LoadBundle(store.Dir(id))
	if err := forceCleanup(store, st); errdefs.IsNotFound(err) && force {
		// Another delete was first; the hooks were its to run.
		return nil
	} else if err != nil {
		return err
	}
	// poststop hooks run once the container is gone; their failure is
	// reported but does not bring the container back. A leftover without
	// state names no bundle (LoadBundle("") would read the caller's
	// directory).
	if st.Bundle == "" {
		return nil
	}
	if specErr != nil {
		spec, specErr = oci.LoadBundle(st.Bundle)
	}
	if specErr == nil {
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
// gone. st was read without the lock: if the container it describes was
// removed meanwhile (another delete), or its id now names a new one, it
// returns ErrNotFound and touches nothing.
func forceCleanup(store *state.Store, st *state.State) error {
	lock := store.Lock
	if st.Created.IsZero() {
		// No state was found: a leftover (see deleteContainer).
		lock = store.LockLeftover
	}
	h, err := lock(st.ID)
	if err != nil {
		return err
	}
	defer h.Unlock()
	if now, err := store.Read(st.ID); err == nil && (!now.Created.Equal(st.Created) || now.Supervisor != st.Supervisor) {
		return fmt.Errorf("container %q was replaced by a new one: %w", st.ID, errdefs.ErrNotFound)
	}
	return cleanup(h)
}

// gracefulStopTimeout bounds how long delete --force waits for a container
// it killed through its supervisor to be gone.
const gracefulStopTimeout = 10 * time.Second

// stopThroughSupervisor kills the container's processes in the guest
// through its supervisor, as runc's delete --force kills them, and waits
// for the supervisor to have ended the VM. Processes that end inside the
// VM write what they hold in shared mappings of host files back as they
// unmap it, and the teardown syncs the guest before the VM goes; killing
// the supervisor instead ends the VM under them and those bytes are lost.
// A supervisor that does not answer, or not in time, is left to
// killAndWait.
func stopThroughSupervisor(store *state.Store, id string, st *state.State) {
	if !state.Alive(st.Supervisor, st.SupervisorStart) {
		return
	}
	ctx, cancel := controlContext()
	err := supervisor.Call(ctx, store.Dir(id), supervisor.Request{Op: "kill", Signal: int(syscall.SIGKILL), All: true})
	cancel()
	if err != nil {
		log.G(commandContext()).WithError(err).Debug("delete --force: kill through the supervisor")
		return
	}
	deadline := time.Now().Add(gracefulStopTimeout)
	for state.Alive(st.Supervisor, st.SupervisorStart) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
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
