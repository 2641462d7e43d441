package cli

import (
	"fmt"
	"io"
	"os"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"
	"github.com/urfave/cli"

	"github.com/hull-runtime/hull/internal/oci"
	"github.com/hull-runtime/hull/internal/sandbox"
	"github.com/hull-runtime/hull/internal/state"
	"github.com/hull-runtime/hull/internal/supervisor"
)

// superviseCommand is the supervisor that `hull create` starts; not for
// users. fd 3 is the pipe on which it reports that the container exists.
var superviseCommand = cli.Command{
	Name:   "_supervise",
	Hidden: true,
	Flags:  []cli.Flag{cli.StringFlag{Name: "bundle"}, cli.StringFlag{Name: "console-socket"}},
	Action: func(c *cli.Context) error {
		ready := os.NewFile(3, "ready")
		report := func(err error) {
			if err != nil {
				fmt.Fprintf(ready, "%v\n", err)
			} else {
				fmt.Fprintln(ready, "ok")
			}
			ready.Close()
		}
		// stderr belongs to the container now: logs go to --log or nowhere.
		if c.GlobalString("log") == "" {
			logrus.SetOutput(io.Discard)
		}
		id, err := containerID(c)
		if err != nil {
			report(err)
			return cli.NewExitError("", 1)
		}
		cfg, err := loadConfig(c)
		if err != nil {
			report(err)
			return cli.NewExitError("", 1)
		}
		spec, err := oci.LoadBundle(c.String("bundle"))
		if err != nil {
			report(err)
			return cli.NewExitError("", 1)
		}
		ctx := log.WithLogger(commandContext(), log.L.WithField("container", id))
		accel, err := chooseAccel(ctx, cfg.Hypervisor.Path, cfg.Hypervisor.Accelerator, cfg.Runtime.Root)
		if err != nil {
			report(err)
			return cli.NewExitError("", 1)
		}
		store, err := state.Open(cfg.Runtime.Root)
		if err != nil {
			report(err)
			return cli.NewExitError("", 1)
		}
		status := supervisor.Run(ctx, supervisor.Options{
			Store: store, ID: id, Bundle: c.String("bundle"), Spec: spec, Config: cfg, Accel: accel,
			Stdio:         sandbox.Stdio{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr},
			ConsoleSocket: c.String("console-socket"),
			SystemdCgroup: c.GlobalBool("systemd-cgroup"),
		}, report)
		os.Exit(status)
		return nil
	},
}
