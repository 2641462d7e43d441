// Command pods is the CRI pod benchmark (make bench-pods). Against one
// private containerd (tests/containerd's harness), driven with crictl, it
// measures for runtime handler hull and, as the baseline in the same run,
// runc:
//
//   - the latency of RunPodSandbox + CreateContainer + StartContainer of a
//     pod with one busybox `sleep 3600` container, one pod at a time
//     (handlers interleaved, each pod removed before the next) and with
//     many pods started at once (the time until all of them are started,
//     and each pod's own latency);
//   - the host memory (PSS) per idle pod, on the pods of the parallel phase
//     once they settled: for hull the shim, QEMU and virtiofsd (both of
//     its processes), for runc containerd-shim-runc-v2 and the processes
//     below it (pause and the container).
//
// It prints a table, and the figures as JSON with -json.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/log"
	"github.com/sirupsen/logrus"

	"github.com/hull-runtime/hull/internal/config"
	"github.com/hull-runtime/hull/internal/procmem"
	"github.com/hull-runtime/hull/internal/storage"
	"github.com/hull-runtime/hull/internal/vmm/qemu"
	ctrd "github.com/hull-runtime/hull/tests/containerd"
)

const (
	hullShim = "containerd-shim-hull-v2"
	runcShim = "containerd-shim-runc-v2"
)

// Targets from the issue, printed beside the figures.
const (
	targetPodMiB  = 80.0
	targetShimMiB = 15.0
)

type options struct {
	n, parallel       int
	settle, settleMax time.Duration
	image, hullConfig string
	bootTimeout       time.Duration
	agentTimeout      time.Duration
	jsonPath          string
	keepGoing         bool
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 5, "pods per handler in the serial phase")
	flag.IntVar(&o.parallel, "parallel", 10, "pods per handler started at once (their memory is measured too)")
	flag.DurationVar(&o.settle, "settle", 10*time.Second, "idle time after the last pod started before memory is read")
	flag.DurationVar(&o.settleMax, "settle-max", 60*time.Second, "longest wait for the pods' PSS to stop changing")
	flag.StringVar(&o.image, "image", "", "guest image directory for the shim (default: the shim's configuration decides)")
	flag.StringVar(&o.hullConfig, "hull-config", "", "hull configuration file for the shim (default: one written by the benchmark with -image, -boot-timeout and -agent-timeout)")
	flag.DurationVar(&o.bootTimeout, "boot-timeout", 90*time.Second, "the shim's boot timeout in the configuration the benchmark writes (many VMs booting at once under TCG are slow)")
	flag.DurationVar(&o.agentTimeout, "agent-timeout", 60*time.Second, "the shim's agent request timeout in the configuration the benchmark writes (the default 10 s is too short for 10 pods at once under TCG on 2 CPUs)")
	flag.StringVar(&o.jsonPath, "json", "", "also write the figures as JSON to this file")
	flag.Parse()
	logrus.SetLevel(logrus.WarnLevel)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx = log.WithLogger(ctx, log.L)
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench-pods:", err)
		os.Exit(1)
	}
}

// prerequisites lists what this host lacks to run the benchmark.
func prerequisites(ctx context.Context, cfg config.Config, shimDir string) []string {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	need := func(path, hint string) {
		if _, err := os.Stat(path); err != nil {
			missing = append(missing, path+" ("+hint+")")
		}
	}
	need(ctrd.ContainerdBin, "apt-get install containerd")
	need(ctrd.CtrBin, "apt-get install containerd")
	for _, p := range []string{"bridge", "host-local", "portmap", "loopback"} {
		need(filepath.Join("/usr/lib/cni", p), "apt-get install containernetworking-plugins")
	}
	for _, b := range []string{runcShim, "runc"} {
		if _, err := exec.LookPath(b); err != nil {
			missing = append(missing, b+" on PATH (apt-get install containerd runc)")
		}
	}
	need(filepath.Join(shimDir, hullShim), "make build")
	need(ctrd.BusyboxBin(), "apt-get install busybox-static")
	if _, err := qemu.LookBinary(cfg.Hypervisor.Path); err != nil {
		missing = append(missing, err.Error())
	}
	need(storage.DefaultVirtiofsd, "apt-get install qemu-system-common")
	need(filepath.Join(cfg.Image.Dir, "manifest.json"), "guest image: make image, or -image DIR")
	if _, err := ctrd.CrictlPath(ctx); err != nil {
		missing = append(missing, "crictl (make crictl): "+err.Error())
	}
	return missing
}

func run(ctx context.Context, o options) (err error) {
	if o.n < 1 || o.parallel < 1 {
		return errors.New("-n and -parallel must be at least 1")
	}
	work, err := os.MkdirTemp("", "hull-bench-pods-")
	if err != nil {
		return err
	}
	// Only files of ours: pod configs and the pods' log directories.
	defer os.RemoveAll(work)

	// The shim's configuration: the one named, or one the benchmark
	// writes (image directory; boot and agent request timeouts long
	// enough for many VMs at once under TCG).
	hullConfig := o.hullConfig
	if hullConfig == "" {
		base, err := config.Load(config.Path(""), false)
		if err != nil {
			return fmt.Errorf("hull configuration: %w", err)
		}
		img := o.image
		if img == "" {
			img = base.Image.Dir
		}
		hullConfig = filepath.Join(work, "hull.toml")
		toml := fmt.Sprintf("[image]\ndir = %q\n\n[hypervisor]\nboot_timeout = %q\n\n[agent]\nrequest_timeout = %q\n",
			img, o.bootTimeout.String(), o.agentTimeout.String())
		if err := os.WriteFile(hullConfig, []byte(toml), 0o644); err != nil {
			return err
		}
	}
	cfg, err := config.Load(hullConfig, true)
	if err != nil {
		return fmt.Errorf("hull configuration: %w", err)
	}
	shimDir := os.Getenv("HULL_SHIM_BIN")
	if shimDir != "" {
		shimDir = filepath.Dir(shimDir)
	} else {
		root, err := ctrd.RepoRoot()
		if err != nil {
			return err
		}
		shimDir = filepath.Join(root, "bin")
	}
	if missing := prerequisites(ctx, cfg, shimDir); len(missing) > 0 {
		return fmt.Errorf("prerequisites missing:\n  %s", strings.Join(missing, "\n  "))
	}
	qemuBin, _ := qemu.LookBinary(cfg.Hypervisor.Path)
	choice, err := qemu.ChooseAccel(cfg.Hypervisor.Accelerator, func() error { return qemu.ProbeKVM(ctx, qemuBin, work) })
	if err != nil {
		return err
	}
	fmt.Printf("host: %d CPUs, accelerator %s; hull config %s; shim %s\n", runtime.NumCPU(), choice.Accel, hullConfig, filepath.Join(shimDir, hullShim))

	pause, err := ctrd.BuildFixture(ctx, "pause", work)
	if err != nil {
		return err
	}
	// The harness's busybox and pause images, as its tests use them.
	bb, err := ctrd.BusyboxFiles(nil, nil)
	if err != nil {
		return err
	}
	imgs := []ctrd.Image{
		{Ref: ctrd.BusyboxImage, Files: bb, Config: ctrd.ImageConfig{Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, Cmd: []string{"sh"}}},
		{Ref: ctrd.PauseImage, Files: []ctrd.File{{Path: "/pause", Source: pause, Mode: 0o755}},
			Config: ctrd.ImageConfig{Entrypoint: []string{"/pause"}, User: "65535:65535"}},
	}
	d, err := ctrd.Launch(ctx, ctrd.Options{
		ShimDir: shimDir,
		Images:  imgs,
		Env:     []string{config.EnvPath + "=" + hullConfig},
	})
	if err != nil {
		return fmt.Errorf("containerd: %w", err)
	}
	b := &bench{d: d, work: work, shimRoot: filepath.Join(cfg.Runtime.Root, ".shim", ctrd.K8sNamespace)}
	defer func() {
		// Close removes every pod, the daemon and its shims; then no
		// process of any of our pods may be left.
		if cerr := d.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup: %w", cerr))
		}
		if left := b.leftovers(); len(left) > 0 {
			err = errors.Join(err, fmt.Errorf("processes left after cleanup: %v", left))
		} else if err == nil {
			fmt.Println("cleanup: no pod, shim, VM or virtiofsd left")
		}
	}()

	res := results{Date: time.Now().Format("2006-01-02"), CPUs: runtime.NumCPU(), Accel: string(choice.Accel), N: o.n, Parallel: o.parallel}
	res.CrictlFloorMs = ms(b.crictlFloor(ctx))
	fmt.Printf("crictl call floor (crictl version, median of 5): %.0f ms\n", res.CrictlFloorMs)

	// A pod of each kind first, not counted: the first pays for cold
	// caches (snapshots, image files, the guest image).
	for _, h := range handlers {
		l, pod, err := b.pod(ctx, h, "warmup-"+h)
		if err != nil {
			return fmt.Errorf("warm-up %s: %w", h, err)
		}
		fmt.Printf("warm-up %s pod: %d ms\n", h, l.total.Milliseconds())
		if err := b.remove(ctx, pod); err != nil {
			return err
		}
	}

	// Serial: one pod at a time, handlers interleaved (the order flips
	// each round), each removed before the next starts so that no idle VM
	// competes for the CPUs.
	fmt.Printf("serial: %d pods per handler (RunPodSandbox + CreateContainer + StartContainer, each removed after)\n", o.n)
	serial := map[string][]lat{}
	for i := range o.n {
		order := handlers
		if i%2 == 1 {
			order = []string{handlers[1], handlers[0]}
		}
		line := fmt.Sprintf("  %d:", i+1)
		for _, h := range order {
			l, pod, err := b.pod(ctx, h, fmt.Sprintf("serial-%s-%d", h, i))
			if err != nil {
				return fmt.Errorf("serial %s: %w", h, err)
			}
			serial[h] = append(serial[h], l)
			line += fmt.Sprintf("  %s %5d ms (runp %d, create %d, start %d)", h, l.total.Milliseconds(), l.runp.Milliseconds(), l.create.Milliseconds(), l.start.Milliseconds())
			if err := b.remove(ctx, pod); err != nil {
				return err
			}
		}
		fmt.Println(line)
	}
	for _, h := range handlers {
		res.Serial = append(res.Serial, summarize(h, serial[h]))
	}
	res.SerialRatioMedian = res.Serial[0].MedianMs / res.Serial[1].MedianMs
	res.SerialRatioP90 = res.Serial[0].P90Ms / res.Serial[1].P90Ms

	// Parallel: all pods of a handler at once; then, once they idled,
	// their memory; then they are removed. runc first, so that hull's VMs
	// are the last thing measured and nothing of runc's is left beside
	// them.
	for _, h := range []string{"runc", "hull"} {
		fmt.Printf("parallel: %d %s pods at once\n", o.parallel, h)
		wall, lats, pods, err := b.parallel(ctx, h, o.parallel)
		if err != nil {
			b.remove(ctx, pods...)
			return fmt.Errorf("parallel %s: %w", h, err)
		}
		s := summarize(h, lats)
		s.AllStartedMs = ms(wall)
		res.ParallelRes = append(res.ParallelRes, s)
		fmt.Printf("  all %d started after %d ms; per pod median %.0f ms, p90 %.0f ms\n", o.parallel, wall.Milliseconds(), s.MedianMs, s.P90Ms)

		m, err := b.memory(ctx, h, pods, o.settle, o.settleMax)
		if err != nil {
			b.remove(ctx, pods...)
			return fmt.Errorf("memory %s: %w", h, err)
		}
		res.Memory = append(res.Memory, m)
		start := time.Now()
		if err := b.remove(ctx, pods...); err != nil {
			return err
		}
		fmt.Printf("  removed (stopp + rmp) in %d ms\n", time.Since(start).Milliseconds())
	}
	// Printed in the order hull, runc.
	slices.Reverse(res.ParallelRes)
	slices.Reverse(res.Memory)
	res.ParallelRatioAll = res.ParallelRes[0].AllStartedMs / res.ParallelRes[1].AllStartedMs
	res.ParallelRatioMedian = res.ParallelRes[0].MedianMs / res.ParallelRes[1].MedianMs

	res.print()
	if o.jsonPath != "" {
		j, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(o.jsonPath, append(j, '\n'), 0o644); err != nil {
			return err
		}
		fmt.Printf("figures written to %s\n", o.jsonPath)
	}
	return nil
}

var handlers = []string{"hull", "runc"}

type bench struct {
	d        *ctrd.Daemon
	work     string
	shimRoot string // where hull's shim keeps pods (virtiofsd's source)

	mu   sync.Mutex
	pods []string // every pod id ever made, for the leftover check
}

// lat is one pod's latency, split by CRI call.
type lat struct{ runp, create, start, total time.Duration }

// pod runs a pod of handler h with one busybox `sleep 3600` container,
// timing each crictl call, and returns the pod's id.
func (b *bench) pod(ctx context.Context, h, name string) (lat, string, error) {
	podCfg, ctrCfg, err := b.configs(name)
	if err != nil {
		return lat{}, "", err
	}
	var l lat
	t0 := time.Now()
	out, err := b.d.CrictlContext(ctx, "runp", "-r", h, podCfg)
	if err != nil {
		return l, "", err
	}
	pod := strings.TrimSpace(out)
	b.mu.Lock()
	b.pods = append(b.pods, pod)
	b.mu.Unlock()
	t1 := time.Now()
	out, err = b.d.CrictlContext(ctx, "create", "--no-pull", pod, ctrCfg, podCfg)
	if err != nil {
		return l, pod, err
	}
	t2 := time.Now()
	if _, err := b.d.CrictlContext(ctx, "start", strings.TrimSpace(out)); err != nil {
		return l, pod, err
	}
	t3 := time.Now()
	l = lat{runp: t1.Sub(t0), create: t2.Sub(t1), start: t3.Sub(t2), total: t3.Sub(t0)}
	return l, pod, nil
}

// configs writes a pod's and its container's crictl configs.
func (b *bench) configs(name string) (pod, ctr string, err error) {
	logDir := filepath.Join(b.work, "logs", name)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return "", "", err
	}
	write := func(file string, v any) (string, error) {
		p := filepath.Join(b.work, file)
		j, _ := json.Marshal(v)
		return p, os.WriteFile(p, j, 0o644)
	}
	if pod, err = write(name+"-pod.json", map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "hull-bench", "uid": name + "-uid", "attempt": 1},
		"hostname":      name,
		"log_directory": logDir,
		"linux":         map[string]any{},
	}); err != nil {
		return "", "", err
	}
	ctr, err = write(name+"-ctr.json", map[string]any{
		"metadata": map[string]any{"name": "sleep"},
		"image":    map[string]any{"image": ctrd.BusyboxImage},
		"command":  []string{"sleep", "3600"},
		"log_path": "sleep.log",
		"linux":    map[string]any{},
	})
	return pod, ctr, err
}

// remove stops and removes pods (with their containers).
func (b *bench) remove(ctx context.Context, pods ...string) error {
	if len(pods) == 0 {
		return nil
	}
	if _, err := b.d.CrictlContext(ctx, append([]string{"stopp"}, pods...)...); err != nil {
		return err
	}
	_, err := b.d.CrictlContext(ctx, append([]string{"rmp"}, pods...)...)
	return err
}

// parallel starts n pods of handler h at once and returns the time until
// all of them were started, each one's latency, and the pods made (also
// on error, for removal).
func (b *bench) parallel(ctx context.Context, h string, n int) (time.Duration, []lat, []string, error) {
	lats := make([]lat, n)
	pods := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Go(func() {
			lats[i], pods[i], errs[i] = b.pod(ctx, h, fmt.Sprintf("parallel-%s-%d", h, i))
		})
	}
	wg.Wait()
	wall := time.Since(start)
	made := slices.DeleteFunc(slices.Clone(pods), func(p string) bool { return p == "" })
	return wall, lats, made, errors.Join(errs...)
}

// crictlFloor is what one crictl call costs at least: the median of five
// `crictl version` (one trivial RPC). Each pod above takes three calls.
func (b *bench) crictlFloor(ctx context.Context) time.Duration {
	var ds []time.Duration
	for range 5 {
		t := time.Now()
		if _, err := b.d.CrictlContext(ctx, "version"); err != nil {
			return 0
		}
		ds = append(ds, time.Since(t))
	}
	return quantile(ds, 0.5)
}

// memory waits until the pods idled (settle, then until their total PSS
// changes by less than 1% over 2 s, at most settleMax) and returns the
// average memory per pod, by role.
func (b *bench) memory(ctx context.Context, h string, pods []string, settle, settleMax time.Duration) (memResult, error) {
	shimName := runcShim
	if h == "hull" {
		shimName = hullShim
	}
	read := func() ([]podProcs, []map[string]procmem.Usage, uint64, error) {
		all := ctrd.Processes()
		var pps []podProcs
		var us []map[string]procmem.Usage
		var total uint64
		for _, pod := range pods {
			pp, err := findPod(all, shimName, pod, b.shimRoot)
			if err != nil {
				return nil, nil, 0, err
			}
			u := map[string]procmem.Usage{}
			for role := range pp.roles {
				if u[role], err = pp.usage(role); err != nil {
					return nil, nil, 0, err
				}
				total += u[role].PSS
			}
			pps = append(pps, pp)
			us = append(us, u)
		}
		return pps, us, total, nil
	}
	select {
	case <-ctx.Done():
		return memResult{}, ctx.Err()
	case <-time.After(settle):
	}
	waited := settle
	_, _, prev, err := read()
	if err != nil {
		return memResult{}, err
	}
	var pps []podProcs
	var us []map[string]procmem.Usage
	for {
		select {
		case <-ctx.Done():
			return memResult{}, ctx.Err()
		case <-time.After(2 * time.Second):
		}
		waited += 2 * time.Second
		var total uint64
		if pps, us, total, err = read(); err != nil {
			return memResult{}, err
		}
		change := math.Abs(float64(total)-float64(prev)) / float64(prev)
		prev = total
		if change < 0.01 || waited >= settleMax {
			break
		}
	}
	m := memResult{Handler: h, Pods: len(pods), SettledS: waited.Seconds(), Roles: map[string]roleMem{}}
	roles := []string{roleShim, roleContainer}
	if h == "hull" {
		roles = []string{roleShim, roleQEMU, roleVirtiofsd, roleOther}
	}
	n := float64(len(pods))
	for _, role := range roles {
		var sum procmem.Usage
		procs := 0
		for i := range pps {
			sum = sum.Add(us[i][role])
			procs += pps[i].count(role)
		}
		if procs == 0 && role == roleOther {
			continue
		}
		rm := roleMem{Procs: float64(procs) / n, PSSMiB: mib(sum.PSS) / n, AnonMiB: mib(sum.PSSAnon) / n,
			FileMiB: mib(sum.PSSFile) / n, ShmemMiB: mib(sum.PSSShmem) / n, RSSMiB: mib(sum.RSS) / n}
		m.Roles[role] = rm
		m.PodPSSMiB += rm.PSSMiB
		m.order = append(m.order, role)
	}
	fmt.Printf("  memory after %.0f s idle, average per pod: PSS %.1f MiB", m.SettledS, m.PodPSSMiB)
	for _, role := range m.order {
		r := m.Roles[role]
		fmt.Printf("; %s %.1f (%.1f procs)", role, r.PSSMiB, r.Procs)
	}
	fmt.Println()
	return m, nil
}

// leftovers lists the processes of our pods still running: shims, VMs,
// virtiofsd.
func (b *bench) leftovers() []string {
	var out []string
	for _, p := range ctrd.Processes() {
		if p.Zombie {
			continue
		}
		cmd := strings.Join(p.Argv, " ")
		for _, pod := range b.pods {
			if strings.Contains(cmd, pod) {
				out = append(out, fmt.Sprintf("%d %s", p.Pid, cmd))
				break
			}
		}
	}
	return out
}

// Results, as printed and written as JSON.

type results struct {
	Date                string        `json:"date"`
	CPUs                int           `json:"cpus"`
	Accel               string        `json:"accelerator"`
	N                   int           `json:"serial_pods_per_handler"`
	Parallel            int           `json:"parallel_pods_per_handler"`
	CrictlFloorMs       float64       `json:"crictl_call_floor_ms"`
	Serial              []latSummary  `json:"serial"`
	SerialRatioMedian   float64       `json:"serial_ratio_hull_runc_median"`
	SerialRatioP90      float64       `json:"serial_ratio_hull_runc_p90"`
	ParallelRes         []latSummary  `json:"parallel"`
	ParallelRatioAll    float64       `json:"parallel_ratio_hull_runc_all_started"`
	ParallelRatioMedian float64       `json:"parallel_ratio_hull_runc_median"`
	Memory              []memResult   `json:"memory"`
	Targets             targetsResult `json:"targets"`
}

type targetsResult struct {
	PodMiB  float64 `json:"idle_pod_pss_mib"`
	ShimMiB float64 `json:"shim_pss_mib"`
}

type latSummary struct {
	Handler      string  `json:"handler"`
	MedianMs     float64 `json:"median_ms"`
	P90Ms        float64 `json:"p90_ms"`
	RunpMedianMs float64 `json:"runp_median_ms"`
	CreateMedMs  float64 `json:"create_median_ms"`
	StartMedMs   float64 `json:"start_median_ms"`
	AllStartedMs float64 `json:"all_started_ms,omitempty"`
	SamplesMs    []int64 `json:"samples_ms"`
}

type memResult struct {
	Handler   string             `json:"handler"`
	Pods      int                `json:"pods"`
	SettledS  float64            `json:"idle_s"`
	PodPSSMiB float64            `json:"pod_pss_mib"`
	Roles     map[string]roleMem `json:"per_pod"`
	order     []string
}

type roleMem struct {
	Procs    float64 `json:"processes"`
	PSSMiB   float64 `json:"pss_mib"`
	AnonMiB  float64 `json:"pss_anon_mib"`
	FileMiB  float64 `json:"pss_file_mib"`
	ShmemMiB float64 `json:"pss_shmem_mib"`
	RSSMiB   float64 `json:"rss_mib"`
}

func summarize(h string, ls []lat) latSummary {
	pick := func(f func(lat) time.Duration) []time.Duration {
		var ds []time.Duration
		for _, l := range ls {
			ds = append(ds, f(l))
		}
		return ds
	}
	total := pick(func(l lat) time.Duration { return l.total })
	s := latSummary{Handler: h,
		MedianMs:     ms(quantile(total, 0.5)),
		P90Ms:        ms(quantile(total, 0.9)),
		RunpMedianMs: ms(quantile(pick(func(l lat) time.Duration { return l.runp }), 0.5)),
		CreateMedMs:  ms(quantile(pick(func(l lat) time.Duration { return l.create }), 0.5)),
		StartMedMs:   ms(quantile(pick(func(l lat) time.Duration { return l.start }), 0.5)),
	}
	for _, d := range total {
		s.SamplesMs = append(s.SamplesMs, d.Milliseconds())
	}
	return s
}

func (r *results) print() {
	r.Targets = targetsResult{PodMiB: targetPodMiB, ShimMiB: targetShimMiB}
	fmt.Printf("\n== bench-pods %s: %d CPUs, %s; crictl call floor %.0f ms ==\n\n", r.Date, r.CPUs, r.Accel, r.CrictlFloorMs)
	fmt.Printf("RunPodSandbox + CreateContainer + StartContainer (busybox sleep), through crictl:\n\n")
	fmt.Printf("| what | hull | runc | hull/runc |\n| --- | --- | --- | --- |\n")
	h, c := r.Serial[0], r.Serial[1]
	fmt.Printf("| serial (%d each): median | %.0f ms | %.0f ms | %.1f |\n", r.N, h.MedianMs, c.MedianMs, r.SerialRatioMedian)
	fmt.Printf("| serial: p90 | %.0f ms | %.0f ms | %.1f |\n", h.P90Ms, c.P90Ms, r.SerialRatioP90)
	fmt.Printf("| serial: runp / create / start, medians | %.0f / %.0f / %.0f ms | %.0f / %.0f / %.0f ms | |\n",
		h.RunpMedianMs, h.CreateMedMs, h.StartMedMs, c.RunpMedianMs, c.CreateMedMs, c.StartMedMs)
	ph, pc := r.ParallelRes[0], r.ParallelRes[1]
	fmt.Printf("| %d at once: all started | %.0f ms | %.0f ms | %.1f |\n", r.Parallel, ph.AllStartedMs, pc.AllStartedMs, r.ParallelRatioAll)
	fmt.Printf("| %d at once: per pod median | %.0f ms | %.0f ms | %.1f |\n", r.Parallel, ph.MedianMs, pc.MedianMs, r.ParallelRatioMedian)
	fmt.Printf("| %d at once: per pod p90 | %.0f ms | %.0f ms | %.1f |\n", r.Parallel, ph.P90Ms, pc.P90Ms, ph.P90Ms/pc.P90Ms)

	mh, mc := r.Memory[0], r.Memory[1]
	fmt.Printf("\nHost memory per idle pod (%d pods each, average, after %.0f s / %.0f s idle), PSS:\n\n", mh.Pods, mh.SettledS, mc.SettledS)
	fmt.Printf("| what | PSS | anon | file | shmem | RSS | target |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	row := func(name string, rm roleMem, target string) {
		fmt.Printf("| %s | %.1f MiB | %.1f | %.1f | %.1f | %.1f MiB | %s |\n", name, rm.PSSMiB, rm.AnonMiB, rm.FileMiB, rm.ShmemMiB, rm.RSSMiB, target)
	}
	fmt.Printf("| **hull pod, total** | **%.1f MiB** | | | | | ≤ %.0f MiB |\n", mh.PodPSSMiB, targetPodMiB)
	for _, role := range mh.order {
		t := ""
		if role == roleShim {
			t = fmt.Sprintf("≤ %.0f MiB", targetShimMiB)
		}
		row(fmt.Sprintf("hull: %s (%.0f procs)", role, mh.Roles[role].Procs), mh.Roles[role], t)
	}
	fmt.Printf("| **runc pod, total** | **%.1f MiB** | | | | | |\n", mc.PodPSSMiB)
	for _, role := range mc.order {
		row(fmt.Sprintf("runc: %s (%.0f procs)", role, mc.Roles[role].Procs), mc.Roles[role], "")
	}
	fmt.Printf("\nhull/runc memory per pod: %.1fx\n", mh.PodPSSMiB/mc.PodPSSMiB)
}

func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1)+0.5)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
func mib(b uint64) float64       { return float64(b) / (1 << 20) }
