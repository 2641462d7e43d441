package cli

import (
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/containerd/log"
	"github.com/urfave/cli"

	"github.com/hull-runtime/hull/internal/oci"
	"github.com/hull-runtime/hull/internal/supervisor"
)

var runCommand = cli.Command{
	Name:      "run",
	Usage:     "create and start a container; wait for it unless --detach",
	ArgsUsage: "<container-id>",
	Flags: append([]cli.Flag{
		cli.BoolFlag{Name: "detach, d", Usage: "do not wait for the container"},
		cli.BoolFlag{Name: "keep", Usage: "keep the container's state after it exits (runc's run deletes it)"},
		cli.BoolFlag{Name: "no-subreaper", Usage: "accepted for runc compatibility: hull's supervisor, not a subreaper, reports the container's exit"},
	}, createFlags...),
	Action: func(c *cli.Context) error {
		socket := c.String("console-socket")
		if socket == "" && !c.Bool("detach") && bundleTerminal(c) {
			// In the foreground, a terminal container gets the caller's
			// terminal, as with runc.
			tty, err := newForegroundTTY()
			if err != nil {
				return err
			}
			defer tty.Close()
			socket = tty.Path()
		}
		// Signals for this command are for the container: the supervisor
		// forwards them to its init. Caught from before the VM boots, so
		// that a Ctrl-C then reaches the container once it runs instead of
		// killing this command and leaving the container to nobody.
		sigs := make(chan os.Signal, 8)
		if !c.Bool("detach") {
			signal.Notify(sigs, supervisor.ForwardedSignals()...)
			defer signal.Stop(sigs)
		}
		sup, started, err := spawnSupervisor(c, socket, true)
		if err != nil {
			return err
		}
		store, id, err := openContainer(c)
		if err == nil && !started {
			ctx, cancel := controlContext()
			err = supervisor.Call(ctx, store.Dir(id), supervisor.Request{Op: "start"})
			cancel()
		}
		if err != nil {
			// The container never ran.
			cfg, cerr := loadConfig(c)
			if cerr != nil {
				return errors.Join(err, cerr)
			}
			abandon(sup, cfg.Runtime.Root, c.Args().First())
			return err
		}
		if c.Bool("detach") {
			sup.Process.Release()
			return nil
		}
		go func() {
			for s := range sigs {
				sup.Process.Signal(s)
			}
		}()
		err = sup.Wait()
		signal.Stop(sigs)
		// As runc's run: the container is deleted once it has exited.
		if !c.Bool("keep") {
			if derr := deleteContainer(store, id, true); derr != nil {
				log.G(commandContext()).WithError(derr).Warn("deleting the exited container")
			}
		}
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			// A supervisor killed by a signal (kill -9 of the state's pid,
			// the OOM killer) stands for a container killed by it: 128+n,
			// as a shell and runc report it.
			if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				return cli.NewExitError("", 128+int(ws.Signal()))
			}
			return cli.NewExitError("", exit.ExitCode())
		}
		return err
	},
}

// bundleTerminal reports whether the bundle's process asks for a terminal;
// a bundle that does not load is left to spawnSupervisor to report.
func bundleTerminal(c *cli.Context) bool {
	bundle := c.String("bundle")
	if bundle == "" {
		bundle = "."
	}
	spec, err := oci.LoadBundle(bundle)
	return err == nil && spec.Process != nil && spec.Process.Terminal
}
