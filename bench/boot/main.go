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
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"

	"github.com/hull-runtime/hull/internal/config"
	"github.com/hull-runtime/hull/internal/image"
	"github.com/hull-runtime/hull/internal/procmem"
	"github.com/hull-runtime/hull/internal/sandbox"
	"github.com/hull-runtime/hull/internal/vmm/qemu"
)

func main() {
	n := flag.Int("n", 10, "boots of each kind")
	imageDir := flag.String("image", image.DefaultOutDir, "guest image directory")
	cacheDir := flag.String("cache", image.DefaultCacheDir, "kernel package cache (for the floor's image)")
	accelMode := flag.String("accel", "auto", "accelerator: auto, kvm or tcg")
	memMiB := flag.Int("memory", 256, "guest memory in MiB")
	idle := flag.Duration("idle", 10*time.Second, "how long the sandbox idles before its memory is read")
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

	floorImage, err := buildFloorImage(ctx, work, cacheDir)
	if err != nil {
		return fmt.Errorf("floor image: %w", err)
	}

	var ready, floor []time.Duration
	for i := range n {
		d, err := bootAgent(ctx, cfg, choice.Accel, fmt.Sprintf("bench-%d", i))
		if err != nil {
			return err
		}
		ready = append(ready, d)
		f, err := bootFloor(ctx, cfg, floorImage, choice.Accel, fmt.Sprintf("floor-%d", i))
		if err != nil {
			return err
		}
		floor = append(floor, f)
		fmt.Printf("  run %2d: agent ready %4d ms, floor %4d ms\n", i+1, d.Milliseconds(), f.Milliseconds())
	}
	mr, mf := median(ready), median(floor)
	fmt.Printf("(a) qemu start -> agent ready:        median %4d ms, p90 %4d ms\n", mr.Milliseconds(), p90(ready).Milliseconds())
	fmt.Printf("(b) qemu start -> trivial init off:   median %4d ms, p90 %4d ms\n", mf.Milliseconds(), p90(floor).Milliseconds())
	fmt.Printf("ratio a/b (medians): %.2f (target <= 1.30)\n", float64(mr)/float64(mf))

	u, err := idleMemory(ctx, cfg, choice.Accel, idle)
	if err != nil {
		return err
	}
	fmt.Printf("idle sandbox (%d MiB guest, after %s): qemu %s (target PSS <= 80 MiB)\n", memMiB, idle, u)
	return nil
}

// buildFloorImage builds an image from the same kernel whose /init is the
// testinit fixture, which powers off at once.
func buildFloorImage(ctx context.Context, work, cacheDir string) (string, error) {
	debs, _ := filepath.Glob(filepath.Join(cacheDir, "linux-image-*.deb"))
	if len(debs) == 0 {
		return "", fmt.Errorf("no kernel package in %s: run make image", cacheDir)
	}
	init := filepath.Join(work, "testinit")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", init, "./tests/fixtures/testinit")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build testinit: %v: %s", err, out)
	}
	dir := filepath.Join(work, "floor-image")
	_, err := image.Build(ctx, image.BuildOptions{OutDir: dir, AgentPath: init, DebPath: debs[len(debs)-1], Modules: []string{}})
	return dir, err
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

func bootFloor(ctx context.Context, cfg config.Config, imageDir string, accel qemu.Accel, id string) (time.Duration, error) {
	cfg.Image.Dir = imageDir
	cfg.Hypervisor.KernelParams = append(cfg.Hypervisor.KernelParams, "hull_fixture=poweroff")
	start := time.Now()
	vc, err := sandbox.VMConfig(sandbox.Options{ID: id, Config: cfg, Accel: accel, RunDir: filepath.Join(cfg.Runtime.Root, id)})
	if err != nil {
		return 0, err
	}
	vm, err := qemu.Start(ctx, vc)
	if err != nil {
		return 0, err
	}
	select {
	case <-vm.Done():
	case <-time.After(60 * time.Second):
		vm.Stop(ctx, 0)
		return 0, fmt.Errorf("floor guest did not power off in 60s")
	}
	d := time.Since(start)
	return d, vm.Stop(ctx, 0)
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
