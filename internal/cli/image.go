package cli

import (
	"fmt"
	"os"

	"github.com/urfave/cli"

	"github.com/hull-runtime/hull/internal/image"
	"github.com/hull-runtime/hull/internal/version"
)

var imageCommand = cli.Command{
	Name:  "image",
	Usage: "manage the guest image",
	Subcommands: []cli.Command{{
		Name:  "build",
		Usage: "build the guest image (kernel and initramfs) from hull's own kernel or Debian's cloud kernel, and hull-agent",
		Flags: []cli.Flag{
			cli.StringFlag{Name: "out", Usage: "output directory (default: image.dir of the config)"},
			cli.StringFlag{Name: "cache", Value: "/var/cache/hull", Usage: "where the kernel package is cached"},
			cli.StringFlag{Name: "agent", Value: "/usr/local/libexec/hull/hull-agent", Usage: "static hull-agent binary to use as /init"},
			cli.StringFlag{Name: "container-init", Value: "/usr/local/libexec/hull/hull-init", Usage: "static hull-init binary that sets up containers in the guest (empty: libcontainer sets up all)"},
			cli.StringFlag{Name: "kernel-package", Value: "linux-image-cloud-amd64", Usage: "Debian kernel package (a metapackage is resolved)"},
			cli.StringFlag{Name: "deb", Usage: "use this kernel .deb instead of downloading one"},
			cli.StringFlag{Name: "kernel", Usage: "use this kernel built from hull's config (scripts/build-kernel.sh; bzImage or vmlinux, drivers built in) instead of a package"},
		},
		Action: func(c *cli.Context) error {
			cfg, err := loadConfig(c)
			if err != nil {
				return err
			}
			out := c.String("out")
			if out == "" {
				out = cfg.Image.Dir
			}
			m, err := image.Build(commandContext(), image.BuildOptions{
				OutDir:        out,
				CacheDir:      c.String("cache"),
				AgentPath:     c.String("agent"),
				InitPath:      c.String("container-init"),
				AgentVersion:  version.Version,
				KernelPackage: c.String("kernel-package"),
				DebPath:       c.String("deb"),
				KernelPath:    c.String("kernel"),
				Progress:      os.Stderr,
			})
			if err != nil {
				return fmt.Errorf("image build: %w", err)
			}
			fmt.Printf("guest image in %s: kernel %s (%s %s), %d modules\n", out, m.KernelRelease, m.KernelPackage, m.KernelPackageVersion, len(m.Modules))
			return nil
		},
	}},
}
