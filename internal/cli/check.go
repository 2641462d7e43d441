package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/log"
	"github.com/urfave/cli"

	"github.com/hull-runtime/hull/internal/hostcheck"
	"github.com/hull-runtime/hull/internal/sandbox"
	"github.com/hull-runtime/hull/internal/vmm/qemu"
)

var checkCommand = cli.Command{
	Name:  "check",
	Usage: "check that this host can run hull, and say how to fix what is missing",
	Flags: []cli.Flag{
		cli.BoolFlag{Name: "boot", Usage: "also boot a sandbox VM, talk to its agent and print the timings"},
	},
	Action: func(c *cli.Context) error {
		cfg, err := loadConfig(c)
		if err != nil {
			fmt.Printf("%-4s  %-12s %v\n", hostcheck.Fail, "config", err)
			return cli.NewExitError("", 1)
		}
		fmt.Printf("%-4s  %-12s %s\n", hostcheck.OK, "config", configSource(c))
		ctx := commandContext()
		results := hostcheck.Run(ctx, hostcheck.Env{Config: cfg, TmpDir: os.TempDir(), VirtiofsdPaths: hostcheck.DefaultVirtiofsd})
		for _, r := range results {
			fmt.Printf("%-4s  %-12s %s\n", r.Status, r.Name, r.Detail)
			if r.Fix != "" {
				fmt.Printf("      %-12s fix: %s\n", "", r.Fix)
			}
		}
		if hostcheck.Failed(results) {
			return cli.NewExitError("hull cannot run on this host: fix the FAIL lines above", 1)
		}
		if c.Bool("boot") {
			if err := bootCheck(ctx, c); err != nil {
				fmt.Printf("%-4s  %-12s %v\n", hostcheck.Fail, "boot", err)
				return cli.NewExitError("", 1)
			}
		}
		return nil
	},
}

func configSource(c *cli.Context) string {
	cfgPath := configPath(c)
	if _, err := os.Stat(cfgPath); err != nil {
		return cfgPath + " absent: defaults"
	}
	return cfgPath
}

// bootCheck boots a sandbox, round-trips its agent and tears it down.
func bootCheck(ctx context.Context, c *cli.Context) error {
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	// A check probes afresh: it is what tells a changed host.
	accel, err := chooseAccel(ctx, cfg.Hypervisor.Path, cfg.Hypervisor.Accelerator, "")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.Runtime.Root, 0o711); err != nil {
		return fmt.Errorf("runtime root: %w", err)
	}
	dir, err := os.MkdirTemp(cfg.Runtime.Root, "check-")
	if err != nil {
		return fmt.Errorf("runtime root: %w", err)
	}
	defer os.Remove(dir)
	id := filepath.Base(dir)
	s, err := sandbox.Boot(ctx, sandbox.Options{ID: id, Config: cfg, Accel: accel, RunDir: filepath.Join(dir, "vm")})
	if err != nil {
		return err
	}
	defer s.Destroy(ctx)
	t := s.Timings()
	rtStart := time.Now()
	if err := s.Agent().Check(ctx); err != nil {
		return err
	}
	rt := time.Since(rtStart)
	d, err := s.Agent().GuestDetails(ctx)
	if err != nil {
		return err
	}
	destroyStart := time.Now()
	if err := s.Destroy(ctx); err != nil {
		return err
	}
	fmt.Printf("%-4s  %-12s accel %s, channel %s: qemu up %d ms, agent ready %d ms, round trip %.2f ms, destroy %d ms\n",
		hostcheck.OK, "boot", accel, s.Channel(), t.VMStarted.Milliseconds(), t.AgentReady.Milliseconds(),
		float64(rt.Microseconds())/1000, time.Since(destroyStart).Milliseconds())
	fmt.Printf("      %-12s guest kernel %s, %d vcpu, %d MiB (%d MiB available), agent %s, uptime %d ms, %s\n", "",
		d.KernelRelease, d.OnlineCpus, d.MemTotalBytes>>20, d.MemAvailableBytes>>20, d.AgentVersion, d.UptimeMs,
		plural(len(d.LoadedModules), "module"))
	return nil
}

// chooseAccel resolves the configured accelerator, warning once when auto
// falls back to TCG. cacheDir keeps the KVM probe's outcome ("" for none).
func chooseAccel(ctx context.Context, qemuPath, mode, cacheDir string) (qemu.Accel, error) {
	choice, err := qemu.SelectAccel(ctx, qemuPath, mode, cacheDir)
	if err != nil {
		return "", err
	}
	if choice.Warning != "" {
		log.G(ctx).Warn(choice.Warning)
	}
	return choice.Accel, nil
}
