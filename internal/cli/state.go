package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
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
	Annotations map[string]string `json:"annotations,omitempty"`
	Owner       string            `json:"owner"`
}

func toOCI(st *state.State) ociState {
	pid := st.Supervisor
	if st.Status == state.Stopped {
		pid = 0
	}
	// Containers created before these were recorded have runc's
	// defaults.
	version, rootfs := st.OCIVersion, st.Rootfs
	if version == "" {
		version = specs.Version
	}
	if rootfs == "" {
		rootfs = filepath.Join(st.Bundle, "rootfs")
	}
	return ociState{
		OCIVersion: version, ID: st.ID, Pid: pid, Status: st.Status, Bundle: st.Bundle,
		Rootfs: rootfs, Created: st.Created, Owner: userName(st.Owner), Annotations: st.Annotations,
	}
}

// userName names uid as runc's state does: the user's name, or #uid.
func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return "#" + strconv.Itoa(uid)
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
		// As runc: indented, with no newline after it.
		b, _ := json.MarshalIndent(toOCI(st), "", "  ")
		_, err = os.Stdout.Write(b)
		return err
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
		root, err := runtimeRoot(c)
		if err != nil {
			return err
		}
		store, err := state.Open(root)
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
			// No containers is null, as runc prints it.
			return json.NewEncoder(os.Stdout).Encode(all)
		case "table":
			w := tabwriter.NewWriter(os.Stdout, 12, 1, 3, ' ', 0)
			fmt.Fprint(w, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER\n")
			for _, s := range all {
				fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\n", s.ID, s.Pid, s.Status, s.Bundle, s.Created.Format(time.RFC3339Nano), s.Owner)
			}
			return w.Flush()
		}
		return fmt.Errorf("--format %q: must be table or json", c.String("format"))
	},
}
