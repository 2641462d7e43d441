package cli

import (
	"fmt"

	"github.com/containerd/errdefs"
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
	cfg, err := loadConfig(c)
	if err != nil {
		return nil, "", err
	}
	store, err := state.Open(cfg.Runtime.Root)
	return store, id, err
}
