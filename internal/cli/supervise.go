package cli

import (
	"fmt"
	"golang.org/x/sys/unix"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"
	"github.com/urfave/cli"

	"github.com/hull-runtime/hull/internal/oci"
	"github.com/hull-runtime/hull/internal/sandbox"
	"github.com/hull-runtime/hull/internal/state"
	"github.com/hull-runtime/hull/internal/storage"
	"github.com/hull-runtime/hull/internal/supervisor"
)

// superviseCommand is the supervisor that `hull create` starts; not for
// users. fd 3 is the pipe on which it reports that the container exists.
var superviseCommand = cli.Command{
	Name:   "_supervise",
	Hidden: true,
	Flags: []cli.Flag{
		cli.StringFlag{Name: "bundle"}, cli.StringFlag{Name: "console-socket"},
		// `hull run`: start the container too before reporting.
		cli.BoolFlag{Name: "start"},
		// The mount namespace of `hull create`, which this one must not
		// be (the container's files go over its "/").
		cli.StringFlag{Name: "parent-mnt-ns"},
	},
	Action: func(c *cli.Context) error {
		// Not for the hooks this process runs: a hook that left a child
		// holding it would keep `hull create` waiting for the report's end.
		unix.CloseOnExec(3)
		ready := os.NewFile(3, "ready")
		// A failed write (EPIPE: fd 3 is not stdout, so SIGPIPE does not
		// kill) means the command that waits for the report is gone.
		report := func(err error) error {
			var werr error
			if err != nil {
				_, werr = fmt.Fprintf(ready, "%v\n", err)
			} else {
				_, werr = fmt.Fprintln(ready, "ok")
			}
			if cerr := ready.Close(); werr == nil {
				werr = cerr
			}
			return werr
		}
		// The container's stdout and stderr are this process's fds 1 and
		// 2: a reader that goes away (`hull run ... | head -1`) must show
		// as EPIPE, which ends the copy and, through the guest, the
		// container's writer, not as a SIGPIPE that kills the supervisor
		// before it tears the VM down. Notify, not Ignore: QEMU and
		// virtiofsd must not inherit an ignored SIGPIPE.
		signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
		// Its mount namespace (create's clone) takes what the host mounts
		// and unmounts, and sends nothing back. Checked against the
		// parent's, which is still `hull create`'s: the container's files
		// go over its "/" later.
		own, err := storage.OwnMountNamespace(c.String("parent-mnt-ns"))
		if err != nil {
			report(err)
			return cli.NewExitError("", 1)
		}
		if own {
			if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
				report(fmt.Errorf("supervisor's mount namespace: %w", err))
				return cli.NewExitError("", 1)
			}
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
		if supervisor.StacksView(spec) && !own {
			// The container's files would go over the host's "/".
			report(fmt.Errorf("the supervisor of a container with a mount namespace needs one of its own (hull create starts it so)"))
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
			Start:         c.Bool("start"),
		}, report)
		os.Exit(status)
		return nil
	},
}
