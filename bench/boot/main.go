// Command boot is the boot benchmark (make bench-boot). It boots sandbox VMs
// one after another and compares the time from starting QEMU to the agent's
// first answer with the floor for the same kernel, accelerator and VM
// shape: a guest whose /init powers off at once. Both are measured in the
// same run, interleaved, because these machines are noisy. It then reports
// the host memory (PSS) of one idle sandbox.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"

	"github.com/hull-runtime/hull/bench/internal/floor"
	"github.com/hull-runtime/hull/internal/config"
	"github.com/hull-runtime/hull/internal/image"
	"github.com/hull-runtime/hull/internal/procmem"
	"github.com/hull-runtime/hull/internal/sandbox"
	"github.com/hull-runtime/hull/internal/vmm/qemu"
)

// floorImageDir names a prebuilt floor image; empty builds one.
var floorImageDir *string

func main() {
	n := flag.Int("n", 10, "boots of each kind")
	imageDir := flag.String("image", image.DefaultOutDir, "guest image directory")
	cacheDir := flag.String("cache", image.DefaultCacheDir, "kernel package cache (for the floor's image)")
	accelMode := flag.String("accel", "auto", "accelerator: auto, kvm or tcg")
	memMiB := flag.Int("memory", 256, "guest memory in MiB")
	idle := flag.Duration("idle", 10*time.Second, "how long the sandbox idles before its memory is read")
	floorImageDir = flag.String("floor-image", "", "prebuilt floor image directory (default: build one from the kernel package)")
	flag.Parse()
	logrus.SetLevel(logrus.WarnLevel)
	if err := run(*n, *imageDir, *cacheDir, *accelMode, *memMiB, *idle); err != nil {
		fmt.Fprintln(os.Stderr, "bench-boot:", err)
		os.Exit(1)
	}
}

func run(n int, imageDir, cacheDir, accelMode string, memMiB int, idle time.Duration) error {
	ctx := log.WithLogger(context.Background(), log.L)
	cfg := config.Default()
	cfg.Image.Dir = imageDir
	cfg.Hypervisor.MemoryMiB = memMiB
	work, err := os.MkdirTemp("", "hull-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	cfg.Runtime.Root = work

	bin, err := qemu.LookBinary(cfg.Hypervisor.Path)
	if err != nil {
		return err
	}
	choice, err := qemu.ChooseAccel(accelMode, func() error { return qemu.ProbeKVM(ctx, bin, work) })
	if err != nil {
		return err
	}
	fmt.Printf("accelerator: %s", choice.Accel)
	if choice.Warning != "" {
		fmt.Printf(" (%s)", choice.Warning)
	}
	fmt.Printf("\nguest: %d vCPU, %d MiB, machine %s\n", cfg.Hypervisor.VCPUs, memMiB, cfg.Hypervisor.Machine)

	floorImage, err := floor.Image(ctx, work, cacheDir, imageDir, *floorImageDir)
	if err != nil {
		return fmt.Errorf("floor image: %w", err)
	}

	var ready, floors []time.Duration
	for i := range n {
		d, err := bootAgent(ctx, cfg, choice.Accel, fmt.Sprintf("bench-%d", i))
		if err != nil {
			return err
		}
		ready = append(ready, d)
		f, err := floor.Boot(ctx, cfg, floorImage, choice.Accel, fmt.Sprintf("floor-%d", i))
		if err != nil {
			return err
		}
		floors = append(floors, f)
		fmt.Printf("  run %2d: agent ready %4d ms, floor %4d ms\n", i+1, d.Milliseconds(), f.Milliseconds())
	}
	mr, mf := median(ready), median(floors)
	fmt.Printf("(a) qemu start -> agent ready:        median %4d ms, p90 %4d ms\n", mr.Milliseconds(), p90(ready).Milliseconds())
	fmt.Printf("(b) qemu start -> trivial init off:   median %4d ms, p90 %4d ms\n", mf.Milliseconds(), p90(floors).Milliseconds())
	fmt.Printf("ratio a/b (medians): %.2f (target <= 1.30)\n", float64(mr)/float64(mf))

	u, err := idleMemory(ctx, cfg, choice.Accel, idle)
	if err != nil {
		return err
	}
	fmt.Printf("idle sandbox (%d MiB guest, after %s): qemu %s (target PSS <= 80 MiB)\n", memMiB, idle, u)
	return nil
}

func bootAgent(ctx context.Context, cfg config.Config, accel qemu.Accel, id string) (time.Duration, error) {
	s, err := sandbox.Boot(ctx, sandbox.Options{ID: id, Config: cfg, Accel: accel, RunDir: filepath.Join(cfg.Runtime.Root, id)})
	if err != nil {
		return 0, err
	}
	// Boot's time includes checking the image, which is part of what a
	// user waits for.
	d := s.Timings().AgentReady
	return d, s.Destroy(ctx)
}

func idleMemory(ctx context.Context, cfg config.Config, accel qemu.Accel, idle time.Duration) (procmem.Usage, error) {
	s, err := sandbox.Boot(ctx, sandbox.Options{ID: "bench-mem", Config: cfg, Accel: accel, RunDir: filepath.Join(cfg.Runtime.Root, "bench-mem")})
	if err != nil {
		return procmem.Usage{}, err
	}
	defer s.Destroy(ctx)
	time.Sleep(idle)
	return procmem.Read(s.VMPid())
}

func median(ds []time.Duration) time.Duration { return quantile(ds, 0.5) }
func p90(ds []time.Duration) time.Duration    { return quantile(ds, 0.9) }

func quantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s)-1) + 0.5)
	return s[i]
}
