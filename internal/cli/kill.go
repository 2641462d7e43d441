package cli

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/urfave/cli"
	"golang.org/x/sys/unix"

	"github.com/hull-runtime/hull/internal/state"
	"github.com/hull-runtime/hull/internal/supervisor"
)

var killCommand = cli.Command{
	Name:      "kill",
	Usage:     "send a signal to a container's init (default SIGTERM)",
	ArgsUsage: "<container-id> [signal]",
	Flags:     []cli.Flag{cli.BoolFlag{Name: "all, a", Usage: "signal every process of the container"}},
	Action: func(c *cli.Context) error {
		store, id, err := openContainer(c)
		if err != nil {
			return err
		}
		sig := unix.SIGTERM
		if c.NArg() > 1 {
			if sig, err = parseSignal(c.Args().Get(1)); err != nil {
				return err
			}
		}
		st, err := store.Read(id)
		if err != nil {
			return err
		}
		if st.Status == state.Stopped {
			if c.Bool("all") {
				// As runc: every process of a container that is gone has
				// had the signal (containerd and podman kill --all to be
				// sure after an exit).
				return nil
			}
			return fmt.Errorf("container %s is not running: %w", id, errdefs.ErrFailedPrecondition)
		}
		if sig == 0 {
			// kill(2)'s signal 0: is it there? A created or running
			// container has a live supervisor (Read says stopped when
			// it died).
			return nil
		}
		ctx, cancel := controlContext()
		defer cancel()
		return supervisor.Call(ctx, store.Dir(id), supervisor.Request{Op: "kill", Signal: int(sig), All: c.Bool("all")})
	},
}

// parseSignal accepts what runc accepts: 9, KILL, SIGKILL, and 0 (no
// signal: only whether the container is there).
func parseSignal(s string) (unix.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 || n > 64 {
			return 0, fmt.Errorf("unknown signal %q: %w", s, errdefs.ErrInvalidArgument)
		}
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	sig := unix.SignalNum(name)
	if sig == 0 {
		return 0, fmt.Errorf("unknown signal %q: %w", s, errdefs.ErrInvalidArgument)
	}
	return sig, nil
}
