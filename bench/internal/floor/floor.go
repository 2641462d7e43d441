// Package floor measures the floor of a VM boot for the benchmarks: the
// same kernel, accelerator and VM shape as a sandbox, with a trivial /init
// that powers off at once.
package floor

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/hull-runtime/hull/internal/config"
	"github.com/hull-runtime/hull/internal/image"
	"github.com/hull-runtime/hull/internal/sandbox"
	"github.com/hull-runtime/hull/internal/vmm/qemu"
)

// Image returns the floor image of the sandbox image in imageDir: prebuilt
// when the caller names one (a directory BuildImage filled earlier, so that
// the benchmarks run on a host without Go or the kernel package), else one
// built now.
func Image(ctx context.Context, work, cacheDir, imageDir, prebuilt string) (string, error) {
	if prebuilt == "" {
		return BuildImage(ctx, work, cacheDir, imageDir)
	}
	if _, err := os.Stat(filepath.Join(prebuilt, "initramfs.img")); err != nil {
		return "", fmt.Errorf("floor image: %w", err)
	}
	return prebuilt, nil
}

// BuildImage builds an image with the kernel of the sandbox image in
// imageDir (hull's own, or the Debian package it came from) whose /init is
// the testinit fixture, which powers off at once.
func BuildImage(ctx context.Context, work, cacheDir, imageDir string) (string, error) {
	kernel, m, err := imageKernel(imageDir)
	if err != nil {
		return "", err
	}
	opts := image.BuildOptions{Modules: []string{}}
	if m.KernelPackage == image.OwnKernelPackage {
		opts = image.BuildOptions{KernelPath: kernel}
	} else {
		deb := filepath.Join(cacheDir, m.KernelPackage+"_"+m.KernelPackageVersion+"_amd64.deb")
		if _, err := os.Stat(deb); err != nil {
			return "", fmt.Errorf("the image's kernel package: %w (run make image)", err)
		}
		opts.DebPath = deb
	}
	init := filepath.Join(work, "testinit")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", init, "./tests/fixtures/testinit")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build testinit: %v: %s", err, out)
	}
	opts.OutDir, opts.AgentPath = filepath.Join(work, "floor-image"), init
	_, err = image.Build(ctx, opts)
	return opts.OutDir, err
}

// imageKernel returns the kernel file and the manifest of the image in dir.
func imageKernel(dir string) (string, *image.Manifest, error) {
	kernel, _, m, err := image.Verify(dir)
	if err != nil {
		return "", nil, fmt.Errorf("sandbox image: %w", err)
	}
	return kernel, m, nil
}

// Boot boots the floor guest once and returns the time to its exit.
func Boot(ctx context.Context, cfg config.Config, imageDir string, accel qemu.Accel, id string) (time.Duration, error) {
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
