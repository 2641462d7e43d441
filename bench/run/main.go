// Command run is the container benchmark (make bench-run): `hull run` of
// /bin/true in a busybox bundle against `runc run` of the same bundle and
// against the floor of a bare VM boot, measured in the same run; the host
// memory of one idle container (supervisor + QEMU + virtiofsd); and stdout
// throughput (256 MiB through dd) of hull and runc.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"

	"github.com/hull-runtime/hull/bench/internal/floor"
	"github.com/hull-runtime/hull/internal/config"
	"github.com/hull-runtime/hull/internal/image"
	"github.com/hull-runtime/hull/internal/oci"
	"github.com/hull-runtime/hull/internal/procmem"
	"github.com/hull-runtime/hull/internal/state"
	"github.com/hull-runtime/hull/internal/vmm/qemu"
)

// floorImageDir names a prebuilt floor image; empty builds one.
var floorImageDir *string

// tcgCache, when positive, sets hull's TCG translation cache size.
var tcgCache *int

func main() {
	n := flag.Int("n", 10, "runs of each kind")
	hull := flag.String("hull", "/usr/local/bin/hull", "hull binary")
	runc := flag.String("runc", "runc", "runc binary")
	imageDir := flag.String("image", image.DefaultOutDir, "guest image directory")
	cacheDir := flag.String("cache", image.DefaultCacheDir, "kernel package cache")
	mib := flag.Int("mib", 256, "MiB for the throughput test")
	floorImageDir = flag.String("floor-image", "", "prebuilt floor image directory (default: build one from the image's kernel)")
	tcgCache = flag.Int("tcg-cache", 0, "hypervisor.tcg_translation_cache_mib for hull (0: hull's default)")
	flag.Parse()
	logrus.SetLevel(logrus.WarnLevel)
	if err := run(*n, *hull, *runc, *imageDir, *cacheDir, *mib); err != nil {
		fmt.Fprintln(os.Stderr, "bench-run:", err)
		os.Exit(1)
	}
}

type bench struct {
	work, hull, runc, hullRoot, runcRoot, config string
}

func run(n int, hullBin, runcBin, imageDir, cacheDir string, mib int) error {
	ctx := log.WithLogger(context.Background(), log.L)
	work, err := os.MkdirTemp("", "hull-bench-run-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if runcBin, err = exec.LookPath(runcBin); err != nil {
		return fmt.Errorf("runc: %w (apt-get install runc)", err)
	}
	b := &bench{work: work, hull: hullBin, runc: runcBin,
		hullRoot: filepath.Join(work, "hull-root"), runcRoot: filepath.Join(work, "runc-root"),
		config: filepath.Join(work, "config.toml")}
	conf := fmt.Sprintf("[image]\ndir = %q\n", imageDir)
	if *tcgCache > 0 {
		conf += fmt.Sprintf("[hypervisor]\ntcg_translation_cache_mib = %d\n", *tcgCache)
		fmt.Printf("TCG translation cache: %d MiB\n", *tcgCache)
	}
	if err := os.WriteFile(b.config, []byte(conf), 0o644); err != nil {
		return err
	}

	cfg := config.Default()
	cfg.Image.Dir = imageDir
	cfg.Runtime.Root = filepath.Join(work, "floor-root")
	if err := os.MkdirAll(cfg.Runtime.Root, 0o700); err != nil {
		return err
	}
	bin, err := qemu.LookBinary(cfg.Hypervisor.Path)
	if err != nil {
		return err
	}
	choice, err := qemu.ChooseAccel("auto", func() error { return qemu.ProbeKVM(ctx, bin, work) })
	if err != nil {
		return err
	}
	fmt.Printf("accelerator: %s\n", choice.Accel)
	floorImage, err := floor.Image(ctx, work, cacheDir, imageDir, *floorImageDir)
	if err != nil {
		return err
	}

	trueBundle, err := b.bundle("true", "true")
	if err != nil {
		return err
	}
	var hullT, runcT, floorT []time.Duration
	for i := range n {
		d, err := b.timeRun(b.hullCmd("run", "--bundle", trueBundle, fmt.Sprintf("t%d", i)), io.Discard)
		if err != nil {
			return fmt.Errorf("hull run: %w", err)
		}
		exec.Command(b.hull, "--root", b.hullRoot, "--config", b.config, "delete", fmt.Sprintf("t%d", i)).Run()
		hullT = append(hullT, d)
		d, err = b.timeRun(exec.Command(b.runc, "--root", b.runcRoot, "run", "--bundle", trueBundle, fmt.Sprintf("r%d", i)), io.Discard)
		if err != nil {
			return fmt.Errorf("runc run: %w", err)
		}
		runcT = append(runcT, d)
		f, err := floor.Boot(ctx, cfg, floorImage, choice.Accel, fmt.Sprintf("floor-%d", i))
		if err != nil {
			return err
		}
		floorT = append(floorT, f)
		fmt.Printf("  run %2d: hull %4d ms, runc %4d ms, bare VM boot %4d ms\n", i+1, hullT[i].Milliseconds(), runcT[i].Milliseconds(), f.Milliseconds())
	}
	mh, mr, mf := median(hullT), median(runcT), median(floorT)
	fmt.Printf("hull run /bin/true: median %d ms, p90 %d ms\n", mh.Milliseconds(), p90(hullT).Milliseconds())
	fmt.Printf("runc run /bin/true: median %d ms, p90 %d ms (hull/runc %.1fx)\n", mr.Milliseconds(), p90(runcT).Milliseconds(), float64(mh)/float64(mr))
	fmt.Printf("bare VM boot:       median %d ms (hull - boot = %d ms, target <= 300 ms)\n", mf.Milliseconds(), (mh - mf).Milliseconds())

	if err := b.idleMemory(); err != nil {
		return err
	}

	ddBundle, err := b.bundle("dd", "dd", "if=/dev/zero", "bs=1M", fmt.Sprintf("count=%d", mib))
	if err != nil {
		return err
	}
	for _, rt := range []struct {
		name string
		cmd  *exec.Cmd
	}{
		{"hull", b.hullCmd("run", "--bundle", ddBundle, "dd")},
		{"runc", exec.Command(b.runc, "--root", b.runcRoot, "run", "--bundle", ddBundle, "dd")},
	} {
		rate, err := b.throughput(rt.cmd, int64(mib)<<20)
		if err != nil {
			return fmt.Errorf("%s throughput: %w", rt.name, err)
		}
		fmt.Printf("stdout throughput, %s: %.0f MB/s (%d MiB)\n", rt.name, rate, mib)
	}
	exec.Command(b.hull, "--root", b.hullRoot, "--config", b.config, "delete", "dd").Run()
	return nil
}

func (b *bench) hullCmd(args ...string) *exec.Cmd {
	return exec.Command(b.hull, append([]string{"--root", b.hullRoot, "--config", b.config}, args...)...)
}

// bundle makes a busybox bundle running args.
func (b *bench) bundle(name string, args ...string) (string, error) {
	dir := filepath.Join(b.work, "bundle-"+name)
	bin := filepath.Join(dir, "rootfs", "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return "", err
	}
	for _, d := range []string{"proc", "dev", "sys", "tmp"} {
		os.MkdirAll(filepath.Join(dir, "rootfs", d), 0o755)
	}
	data, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return "", fmt.Errorf("busybox-static: %w", err)
	}
	if err := os.WriteFile(filepath.Join(bin, "busybox"), data, 0o755); err != nil {
		return "", err
	}
	for _, a := range []string{"sh", "true", "dd", "sleep"} {
		os.Symlink("busybox", filepath.Join(bin, a))
	}
	s := oci.Default()
	s.Process.Terminal = false
	s.Process.Args = args
	// runc on this host: cgroup v1 and no CAP_SYS_RESOURCE for rlimits
	// above the hard limit; keep the default that works for both.
	j, _ := json.Marshal(s)
	return dir, os.WriteFile(filepath.Join(dir, "config.json"), j, 0o644)
}

func (b *bench) timeRun(cmd *exec.Cmd, out io.Writer) (time.Duration, error) {
	cmd.Stdout, cmd.Stderr = out, os.Stderr
	start := time.Now()
	err := cmd.Run()
	return time.Since(start), err
}

// throughput runs cmd and measures its stdout from first to last byte.
func (b *bench) throughput(cmd *exec.Cmd, want int64) (float64, error) {
	r, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	buf := make([]byte, 1<<20)
	var n int64
	var first time.Time
	for {
		m, err := r.Read(buf)
		if m > 0 && first.IsZero() {
			first = time.Now()
		}
		n += int64(m)
		if err != nil {
			break
		}
	}
	last := time.Now()
	if err := cmd.Wait(); err != nil {
		return 0, err
	}
	if n != want {
		return 0, fmt.Errorf("got %d bytes, want %d", n, want)
	}
	return float64(n) / 1e6 / last.Sub(first).Seconds(), nil
}

// idleMemory runs a sleeping container detached and sums the PSS of its
// host processes after it idled.
func (b *bench) idleMemory() error {
	bundle, err := b.bundle("sleep", "sleep", "1000")
	if err != nil {
		return err
	}
	// The detached container keeps its stdio: give it files, not pipes
	// that would never reach EOF.
	errFile, err := os.CreateTemp(b.work, "idle-stderr-")
	if err != nil {
		return err
	}
	defer errFile.Close()
	cmd := b.hullCmd("run", "-d", "--bundle", bundle, "idle")
	cmd.Stderr = errFile
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(errFile.Name())
		return fmt.Errorf("hull run -d: %v: %s", err, out)
	}
	defer b.hullCmd("delete", "--force", "idle").Run()
	time.Sleep(10 * time.Second)
	store, err := state.Open(b.hullRoot)
	if err != nil {
		return err
	}
	st, err := store.Read("idle")
	if err != nil {
		return err
	}
	var total procmem.Usage
	for _, p := range []struct {
		name string
		pid  int
	}{{"supervisor", st.Supervisor}, {"qemu", st.QEMU}, {"virtiofsd", st.Virtiofsd}} {
		var (
			u   procmem.Usage
			n   = 1
			err error
		)
		if p.name == "virtiofsd" {
			// It runs as two processes, hull's and its child.
			u, n, err = procmem.ReadTree(p.pid)
		} else {
			// The supervisor's children are QEMU and virtiofsd.
			u, err = procmem.Read(p.pid)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		fmt.Printf("  %-10s %s (%d processes)\n", p.name, u, n)
		total = total.Add(u)
	}
	fmt.Printf("idle container total: %s (target PSS <= 100 MiB)\n", total)
	return nil
}

func median(ds []time.Duration) time.Duration { return quantile(ds, 0.5) }
func p90(ds []time.Duration) time.Duration    { return quantile(ds, 0.9) }

func quantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1)+0.5)]
}
