package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/urfave/cli"

	"github.com/hull-runtime/hull/internal/supervisor"
)

var pauseCommand = cli.Command{
	Name:      "pause",
	Usage:     "freeze every process of a running container (its cgroup in the guest)",
	ArgsUsage: "<container-id>",
	Action:    func(c *cli.Context) error { return controlOp(c, supervisor.Request{Op: "pause"}) },
}

var resumeCommand = cli.Command{
	Name:      "resume",
	Usage:     "thaw a paused container",
	ArgsUsage: "<container-id>",
	Action:    func(c *cli.Context) error { return controlOp(c, supervisor.Request{Op: "resume"}) },
}

// controlOp sends req to the supervisor of the container the command
// names.
func controlOp(c *cli.Context, req supervisor.Request) error {
	store, id, err := openContainer(c)
	if err != nil {
		return err
	}
	if _, err := store.Read(id); err != nil {
		return err
	}
	ctx, cancel := controlContext()
	defer cancel()
	return supervisor.Call(ctx, store.Dir(id), req)
}

var updateCommand = cli.Command{
	Name:      "update",
	Usage:     "change the resource limits of a container (its cgroup in the guest; the VM keeps its size)",
	ArgsUsage: "<container-id>",
	Flags: []cli.Flag{
		cli.StringFlag{Name: "resources, r", Usage: "file with the OCI linux.resources JSON, or - for stdin; the flags below override it"},
		cli.StringFlag{Name: "memory", Usage: "memory limit (bytes, or with k, m, g)"},
		cli.StringFlag{Name: "memory-reservation", Usage: "memory soft limit"},
		cli.StringFlag{Name: "memory-swap", Usage: "memory plus swap limit"},
		cli.StringFlag{Name: "cpu-period", Usage: "CPU CFS period (µs)"},
		cli.StringFlag{Name: "cpu-quota", Usage: "CPU CFS quota (µs)"},
		cli.StringFlag{Name: "cpu-share", Usage: "CPU shares"},
		cli.StringFlag{Name: "cpuset-cpus", Usage: "CPUs to use (in the VM)"},
		cli.StringFlag{Name: "cpuset-mems", Usage: "memory nodes to use"},
		cli.IntFlag{Name: "pids-limit", Usage: "most processes (0: no change)"},
		cli.StringFlag{Name: "blkio-weight", Usage: "block IO weight (10 to 1000)"},
		cli.StringFlag{Name: "cpu-rt-period", Usage: "not supported in the guest", Hidden: true},
		cli.StringFlag{Name: "cpu-rt-runtime", Usage: "not supported in the guest", Hidden: true},
		cli.StringFlag{Name: "l3-cache-schema", Usage: "not supported: no Intel RDT in the guest", Hidden: true},
		cli.StringFlag{Name: "mem-bw-schema", Usage: "not supported: no Intel RDT in the guest", Hidden: true},
	},
	Action: func(c *cli.Context) error {
		r, err := updateResources(c)
		if err != nil {
			return err
		}
		return controlOp(c, supervisor.Request{Op: "update", Resources: r})
	},
}

// updateResources builds what `update` changes, as runc does: the
// --resources JSON, then each flag given.
func updateResources(c *cli.Context) (*specs.LinuxResources, error) {
	for _, f := range []string{"cpu-rt-period", "cpu-rt-runtime", "l3-cache-schema", "mem-bw-schema"} {
		if c.IsSet(f) {
			return nil, fmt.Errorf("--%s: not supported in a hull guest: %w", f, errdefs.ErrNotImplemented)
		}
	}
	r := &specs.LinuxResources{}
	if path := c.String("resources"); path != "" {
		var in io.Reader = os.Stdin
		if path != "-" {
			f, err := os.Open(path)
			if err != nil {
				return nil, fmt.Errorf("--resources: %w", err)
			}
			defer f.Close()
			in = f
		}
		if err := json.NewDecoder(io.LimitReader(in, 64<<10)).Decode(r); err != nil {
			return nil, fmt.Errorf("--resources %s: malformed: %v: %w", path, err, errdefs.ErrInvalidArgument)
		}
	}
	mem := func() *specs.LinuxMemory {
		if r.Memory == nil {
			r.Memory = &specs.LinuxMemory{}
		}
		return r.Memory
	}
	cpu := func() *specs.LinuxCPU {
		if r.CPU == nil {
			r.CPU = &specs.LinuxCPU{}
		}
		return r.CPU
	}
	for _, f := range []struct {
		name string
		set  func(int64)
	}{
		{"memory", func(v int64) { mem().Limit = &v }},
		{"memory-reservation", func(v int64) { mem().Reservation = &v }},
		{"memory-swap", func(v int64) { mem().Swap = &v }},
	} {
		if s := c.String(f.name); s != "" {
			v, err := parseBytes(s)
			if err != nil {
				return nil, fmt.Errorf("--%s %q: %w", f.name, s, err)
			}
			f.set(v)
		}
	}
	for _, f := range []struct {
		name string
		set  func(uint64)
	}{
		{"cpu-period", func(v uint64) { cpu().Period = &v }},
		{"cpu-share", func(v uint64) { cpu().Shares = &v }},
	} {
		if s := c.String(f.name); s != "" {
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("--%s %q: %w", f.name, s, errdefs.ErrInvalidArgument)
			}
			f.set(v)
		}
	}
	if s := c.String("cpu-quota"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("--cpu-quota %q: %w", s, errdefs.ErrInvalidArgument)
		}
		cpu().Quota = &v
	}
	if s := c.String("cpuset-cpus"); s != "" {
		cpu().Cpus = s
	}
	if s := c.String("cpuset-mems"); s != "" {
		cpu().Mems = s
	}
	if n := c.Int("pids-limit"); n != 0 {
		limit := int64(n)
		r.Pids = &specs.LinuxPids{Limit: &limit}
	}
	if s := c.String("blkio-weight"); s != "" {
		v, err := strconv.ParseUint(s, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("--blkio-weight %q: %w", s, errdefs.ErrInvalidArgument)
		}
		w := uint16(v)
		r.BlockIO = &specs.LinuxBlockIO{Weight: &w}
	}
	return r, nil
}

// parseBytes reads a size as runc's update does: a number of bytes with
// an optional k, m, g or t suffix (powers of 1024), or -1 for no limit.
func parseBytes(s string) (int64, error) {
	if s == "-1" {
		return -1, nil
	}
	t := strings.TrimSuffix(strings.ToLower(s), "b")
	mult := int64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k':
			mult, t = 1<<10, t[:n-1]
		case 'm':
			mult, t = 1<<20, t[:n-1]
		case 'g':
			mult, t = 1<<30, t[:n-1]
		case 't':
			mult, t = 1<<40, t[:n-1]
		}
	}
	v, err := strconv.ParseInt(t, 10, 64)
	if err != nil || v < 0 || v > (1<<62)/mult {
		return 0, fmt.Errorf("not a size: %w", errdefs.ErrInvalidArgument)
	}
	return v * mult, nil
}
