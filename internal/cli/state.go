package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli"

	"github.com/hull-runtime/hull/internal/state"
)

// ociState is the state JSON of the OCI runtime spec, with the fields
// runc adds (rootfs, created, owner) in runc's order.
type ociState struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	Pid         int               `json:"pid"`
	Status      string            `json:"status"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     time.Time         `json:"created"`
	Owner       string            `json:"owner"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

func toOCI(st *state.State) ociState {
	pid := st.Supervisor
	if st.Status == state.Stopped {
		pid = 0
	}
	return ociState{
		OCIVersion: specs.Version, ID: st.ID, Pid: pid, Status: st.Status, Bundle: st.Bundle,
		Rootfs: filepath.Join(st.Bundle, "rootfs"), Created: st.Created, Owner: "", Annotations: st.Annotations,
	}
}

var stateCommand = cli.Command{
	Name:      "state",
	Usage:     "print the state of a container as OCI state JSON",
	ArgsUsage: "<container-id>",
	Action: func(c *cli.Context) error {
		_, _, st, err := readContainer(c)
		if err != nil {
			return err
		}
		b, _ := json.MarshalIndent(toOCI(st), "", "  ")
		fmt.Println(string(b))
		return nil
	},
}

var listCommand = cli.Command{
	Name:  "list",
	Usage: "list containers",
	Flags: []cli.Flag{
		cli.StringFlag{Name: "format, f", Value: "table", Usage: "table or json"},
		cli.BoolFlag{Name: "quiet, q", Usage: "print ids only"},
	},
	Action: func(c *cli.Context) error {
		cfg, err := loadConfig(c)
		if err != nil {
			return err
		}
		store, err := state.Open(cfg.Runtime.Root)
		if err != nil {
			return err
		}
		ids, err := store.List()
		if err != nil {
			return err
		}
		var all []ociState
		for _, id := range ids {
			if st, err := store.Read(id); err == nil {
				all = append(all, toOCI(st))
			}
		}
		if c.Bool("quiet") {
			for _, s := range all {
				fmt.Println(s.ID)
			}
			return nil
		}
		switch c.String("format") {
		case "json":
			if all == nil {
				all = []ociState{}
			}
			return json.NewEncoder(os.Stdout).Encode(all)
		case "table":
			w := tabwriter.NewWriter(os.Stdout, 12, 1, 3, ' ', 0)
			fmt.Fprint(w, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER\n")
			for _, s := range all {
				fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\n", s.ID, s.Pid, s.Status, s.Bundle, s.Created.Format(time.RFC3339Nano), "root")
			}
			return w.Flush()
		}
		return fmt.Errorf("--format %q: must be table or json", c.String("format"))
	},
}
