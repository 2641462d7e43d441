package cli

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli"

	"github.com/hull-runtime/hull/internal/oci"
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
		st, err := store.Read(id)
		if errdefs.IsNotFound(err) && c.Bool("force") {
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
			if !c.Bool("force") {
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
			hs := specs.State{Version: specs.Version, ID: st.ID, Status: specs.StateStopped, Bundle: st.Bundle, Annotations: st.Annotations}
			if err := supervisor.RunPoststop(commandContext(), spec, hs); err != nil {
				log.G(commandContext()).WithError(err).Warn("poststop hook")
			}
		}
		return nil
	},
}

// forceCleanup removes what is left of a container whose supervisor is
// gone.
func forceCleanup(store *state.Store, st *state.State) error {
	h, err := store.Lock(st.ID)
	if err != nil {
		return err
	}
	defer h.Unlock()
	return cleanup(h, st)
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

// cleanup removes whatever a dead supervisor left: its VM processes, the
// mounts under the container's directory, and the directory.
func cleanup(h *state.Handle, st *state.State) error {
	dir := h.Dir()
	for _, pid := range []int{st.QEMU, st.Virtiofsd} {
		if pid > 0 && cmdlineMentions(pid, dir) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if err := storage.UnmountUnder(dir); err != nil {
		return err
	}
	for _, f := range []string{"vm/console.log"} {
		_ = os.Remove(filepath.Join(dir, f))
	}
	if err := removeEmptyTree(filepath.Join(dir, "shared")); err != nil {
		return err
	}
	return h.Remove()
}

// cmdlineMentions reports whether pid's command line holds s, so that a
// recycled pid is never killed.
func cmdlineMentions(pid int, s string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return err == nil && bytes.Contains(b, []byte(filepath.Base(s)))
}

// removeEmptyTree removes directories and empty files hull made under
// dir, after the mounts are gone; it never descends into a mount.
func removeEmptyTree(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if e.IsDir() {
			if err := removeEmptyTree(p); err != nil {
				return err
			}
			continue
		}
		if info, err := e.Info(); err == nil && info.Size() == 0 {
			os.Remove(p)
		}
	}
	return os.Remove(dir)
}
