package cli

import (
	"fmt"
	"path/filepath"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/urfave/cli"

	"github.com/hull-runtime/hull/internal/state"
	"github.com/hull-runtime/hull/internal/supervisor"
)

var startCommand = cli.Command{
	Name:      "start",
	Usage:     "run the process of a created container",
	ArgsUsage: "<container-id>",
	Action: func(c *cli.Context) error {
		store, id, st, err := readContainer(c)
		if err != nil {
			return err
		}
		if st.Status != state.Created {
			return fmt.Errorf("cannot start a container that is %s: %w", st.Status, errdefs.ErrFailedPrecondition)
		}
		ctx, cancel := controlContext()
		defer cancel()
		return supervisor.Call(ctx, store.Dir(id), supervisor.Request{Op: "start"})
	},
}

// readContainer returns the store, the id named on the command line and
// the container's state.
func readContainer(c *cli.Context) (*state.Store, string, *state.State, error) {
	store, id, err := openContainer(c)
	if err != nil {
		return nil, "", nil, err
	}
	st, err := store.Read(id)
	return store, id, st, err
}

// openContainer returns the store and the id named on the command line.
func openContainer(c *cli.Context) (*state.Store, string, error) {
	id, err := containerID(c)
	if err != nil {
		return nil, "", err
	}
	root, err := runtimeRoot(c)
	if err != nil {
		return nil, "", err
	}
	store, err := state.Open(root)
	return store, id, err
}

// runtimeRoot is the state root for the commands that act on existing
// containers (start, state, kill, delete, list, ps, pause, exec...). A
// configuration that no longer loads (a typo made while containers run)
// must not keep them from being stopped and deleted when --root names the
// root, as podman and other runc drivers pass it: that root then serves,
// with a warning. Without --root the root is the broken file's to say
// (guessing the default could report a running container gone), so the
// error stands. New containers are refused by create until it is fixed.
func runtimeRoot(c *cli.Context) (string, error) {
	cfg, err := loadConfig(c)
	if err == nil {
		return cfg.Runtime.Root, nil
	}
	root := c.GlobalString("root")
	if root == "" || !filepath.IsAbs(root) {
		return "", err
	}
	log.L.WithError(err).Warnf("configuration not loaded; using the runtime root %s", root)
	return root, nil
}
