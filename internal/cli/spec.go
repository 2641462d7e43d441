package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	"github.com/urfave/cli"

	"github.com/hull-runtime/hull/internal/oci"
)

var specCommand = cli.Command{
	Name:  "spec",
	Usage: "write a default config.json (runc's) into the bundle",
	Flags: []cli.Flag{cli.StringFlag{Name: "bundle, b", Usage: "bundle directory (default: the current one)"}},
	Action: func(c *cli.Context) error {
		p := filepath.Join(c.String("bundle"), "config.json")
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s exists: %w", p, errdefs.ErrAlreadyExists)
		}
		b, _ := json.MarshalIndent(oci.Default(), "", "\t")
		return os.WriteFile(p, append(b, '\n'), 0o666)
	},
}
