package cli

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/containerd/errdefs"
	"github.com/urfave/cli"

	"github.com/hull-runtime/hull/internal/state"
	"github.com/hull-runtime/hull/internal/supervisor"
)

var psCommand = cli.Command{
	Name:      "ps",
	Usage:     "list the processes of a container (pids in its VM)",
	ArgsUsage: "<container-id>",
	Flags:     []cli.Flag{cli.StringFlag{Name: "format, f", Value: "table", Usage: "table or json"}},
	Action: func(c *cli.Context) error {
		store, id, st, err := readContainer(c)
		if err != nil {
			return err
		}
		if c.NArg() > 1 {
			// runc hands them to the host's ps; the processes are in the
			// VM, where there is none.
			return fmt.Errorf("ps options %q: not supported, the container's processes are in its VM: %w", []string(c.Args()[1:]), errdefs.ErrNotImplemented)
		}
		format := c.String("format")
		if format != "json" && format != "table" {
			return fmt.Errorf("--format %q: must be table or json", format)
		}
		var pids []uint32
		if st.Status != state.Stopped {
			ctx, cancel := controlContext()
			defer cancel()
			r, err := supervisor.CallFor(ctx, store.Dir(id), supervisor.Request{Op: "ps"})
			if err != nil {
				return err
			}
			pids = r.Pids
		}
		// A stopped container has no processes: runc prints none (null in
		// JSON) and succeeds.
		switch format {
		case "json":
			return json.NewEncoder(os.Stdout).Encode(pids)
		case "table":
			fmt.Println("PID")
			for _, p := range pids {
				fmt.Println(p)
			}
			return nil
		}
		return fmt.Errorf("--format %q: must be table or json", c.String("format"))
	},
}
