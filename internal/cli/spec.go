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
	Flags: []cli.Flag{
		cli.StringFlag{Name: "bundle, b", Usage: "bundle directory (default: the current one)"},
		cli.BoolFlag{Name: "rootless", Usage: "not supported: hull runs as root on the host"},
	},
	Action: func(c *cli.Context) error {
		if c.Bool("rootless") {
			// runc's rootless spec maps the caller into a user namespace
			// so that runc needs no privilege; hull needs root anyway
			// (KVM, taps, virtiofsd), so such a spec would only mislead.
			return fmt.Errorf("--rootless: hull runs containers as root on the host: %w", errdefs.ErrNotImplemented)
		}
		p := filepath.Join(c.String("bundle"), "config.json")
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s exists: %w", p, errdefs.ErrAlreadyExists)
		}
		b, _ := json.MarshalIndent(oci.Default(), "", "\t")
		return os.WriteFile(p, append(b, '\n'), 0o666)
	},
}
