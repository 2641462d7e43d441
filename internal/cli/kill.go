package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"

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
		if err := supervisor.Call(ctx, store.Dir(id), supervisor.Request{Op: "kill", Signal: int(sig), All: c.Bool("all")}); err != nil {
			return err
		}
		if sig == unix.SIGKILL {
			awaitStopped(store, id, st.Created, killSettleTimeout)
		}
		return nil
	},
}

// killSettleTimeout bounds how long kill KILL waits for the container to
// read as stopped.
const killSettleTimeout = 2 * time.Second

// awaitStopped waits, up to timeout, until the container created at
// created reads as stopped (or is gone). runc's container is stopped the
// moment SIGKILL lands, so `kill ID KILL; delete ID` works with it; here
// the init's end travels from the guest to the supervisor first (some
// 60 ms under TCG), and a delete in between would find it running. A
// container that does not stop in time (frozen by a cgroup v1 freezer,
// say) is left as it is: the signal was sent.
func awaitStopped(store *state.Store, id string, created time.Time, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for {
		st, err := store.Read(id)
		if err != nil || st.Status == state.Stopped || !st.Created.Equal(created) || time.Now().After(deadline) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
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
