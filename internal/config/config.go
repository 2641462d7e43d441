// Package config loads hull's configuration: /etc/hull/config.toml, or the
// file named by --config or HULL_CONFIG. Every key has a default, so a missing
// file means defaults; an unknown key or a bad value is an error that names
// the key and the file, because a typo silently ignored in a security
// runtime's configuration is worse than a refusal to start.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/pelletier/go-toml/v2"
)

// DefaultPath is where hull looks for its configuration file.
const DefaultPath = "/etc/hull/config.toml"

// EnvPath names the environment variable that overrides DefaultPath.
const EnvPath = "HULL_CONFIG"

// Config is the whole configuration. Field comments are the documentation
// of the keys; docs/configuration.md repeats them for users.
type Config struct {
	Hypervisor Hypervisor `toml:"hypervisor"`
	Image      Image      `toml:"image"`
	Agent      Agent      `toml:"agent"`
	Runtime    Runtime    `toml:"runtime"`
}

// Hypervisor configures how sandbox VMs are run.
type Hypervisor struct {
	// Path of the QEMU binary; a bare name is looked up in PATH.
	Path string `toml:"path"`
	// Machine is the QEMU machine type: microvm (default) or q35.
	Machine string `toml:"machine"`
	// Accelerator is auto, kvm or tcg. auto uses KVM only after a probe
	// proved that it runs a guest, else falls back to TCG with a warning.
	Accelerator string `toml:"accelerator"`
	// VCPUs is the default number of virtual CPUs of a sandbox.
	VCPUs int `toml:"vcpus"`
	// MemoryMiB is the default guest memory of a sandbox.
	MemoryMiB int `toml:"memory_mib"`
	// TCGTranslationCacheMiB caps QEMU's translation cache under TCG; QEMU's
	// own default is a gigabyte, most of it touched by a busy guest. 0
	// picks by the VM's use: TCGCacheContainerMiB for a stand-alone
	// container (hull), TCGCachePodMiB for a pod (the shim).
	TCGTranslationCacheMiB int `toml:"tcg_translation_cache_mib"`
	// TCGTrim keeps the translation cache where the host can free it, and
	// frees it once the guest's translating has settled: a cache large
	// enough for a whole start then costs memory only during the start.
	// Applies under QEMU 7 only (qemu.Version.TrimsTranslations).
	TCGTrim bool `toml:"tcg_trim"`
	// KernelParams are appended to the guest kernel command line.
	KernelParams []string `toml:"kernel_params"`
	// FreePageReporting adds a virtio-balloon device with free page
	// reporting, so the guest returns memory it no longer uses to the host.
	FreePageReporting bool `toml:"free_page_reporting"`
	// BootTimeout bounds the time from starting QEMU to the agent's answer.
	BootTimeout Duration `toml:"boot_timeout"`
}

// Image says where the guest image is.
type Image struct {
	// Dir holds the kernel, initramfs.img and manifest.json, as written by
	// `hull image build`.
	Dir string `toml:"dir"`
}

// Agent configures the channel to the guest agent.
type Agent struct {
	// Transport is auto, serial or vsock. auto uses vsock when the host has
	// /dev/vhost-vsock and the virtio-serial port otherwise.
	Transport string `toml:"transport"`
	// RequestTimeout bounds every request to the agent.
	RequestTimeout Duration `toml:"request_timeout"`
}

// Runtime holds host-side settings.
type Runtime struct {
	// Root is the directory for per-sandbox state.
	Root string `toml:"root"`
	// LogLevel is one of debug, info, warn, error.
	LogLevel string `toml:"log_level"`
}

// Duration is a time.Duration written as a Go duration string ("10s").
type Duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("not a duration (like \"10s\"): %q", b)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// The translation caches chosen when tcg_translation_cache_mib is 0. QEMU
// empties a cache only when it is full, after which everything still
// running is translated again. A stand-alone container's start translates
// about 47 MiB of code (the kernel's boot 24, the agent and the container
// 23): with a 32 MiB cache it flushes once, which costs about 95 ms of the
// start (docs/benchmarks.md, session 12). With tcg_trim the cache holds
// the whole start and is freed after it (TCGCacheTrimmedMiB). Without it,
// a cache is all resident once filled for the VM's life, so the sizes stay
// small: 32 MiB for a container, 16 for a pod, as a node holds many idle
// ones.
const (
	TCGCacheTrimmedMiB   = 64
	TCGCacheContainerMiB = 32
	TCGCachePodMiB       = 16
)

// TCGCacheMiB returns the translation cache for a VM that holds a pod or,
// if pod is false, a stand-alone container.
func (h Hypervisor) TCGCacheMiB(pod bool) int {
	switch {
	case h.TCGTranslationCacheMiB > 0:
		return h.TCGTranslationCacheMiB
	case h.TCGTrimmed():
		return TCGCacheTrimmedMiB
	case pod:
		return TCGCachePodMiB
	default:
		return TCGCacheContainerMiB
	}
}

// TCGTrimmed says whether a VM of this configuration has its translation
// cache trimmed: with tcg_trim, and one vCPU. QEMU splits the cache of a
// VM with more among the vCPUs' threads, and its count of code in use
// then does not say where the code lies, so such VMs keep the smaller
// resident cache.
func (h Hypervisor) TCGTrimmed() bool { return h.TCGTrim && h.VCPUs <= 1 }

// Default returns the configuration used when no file sets a key.
func Default() Config {
	return Config{
		Hypervisor: Hypervisor{
			Path:                   "qemu-system-x86_64",
			Machine:                "microvm",
			Accelerator:            "auto",
			VCPUs:                  1,
			MemoryMiB:              256,
			TCGTranslationCacheMiB: 0,
			FreePageReporting:      true,
			TCGTrim:                true,
			BootTimeout:            Duration(60 * time.Second),
		},
		Image:   Image{Dir: "/usr/local/share/hull"},
		Agent:   Agent{Transport: "auto", RequestTimeout: Duration(30 * time.Second)},
		Runtime: Runtime{Root: "/run/hull", LogLevel: "info"},
	}
}

// Path returns the configuration file to read: explicit if set, else
// $HULL_CONFIG, else DefaultPath.
func Path(explicit string) string {
	if explicit != "" {
		return explicit
	}
	if p := os.Getenv(EnvPath); p != "" {
		return p
	}
	return DefaultPath
}

// Load reads the file at path over the defaults. A missing file is not an
// error when mustExist is false (the default path); a file the user named
// explicitly must exist.
func Load(path string, mustExist bool) (Config, error) {
	c := Default()
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !mustExist {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	if err := Decode(&c, data); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Decode reads TOML data over c and validates the result.
func Decode(c *Config, data []byte) error {
	dec := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		var strict *toml.StrictMissingError
		if errors.As(err, &strict) {
			keys := make([]string, 0, len(strict.Errors))
			for _, e := range strict.Errors {
				keys = append(keys, strings.Join(e.Key(), "."))
			}
			return fmt.Errorf("unknown key %s: %w", strings.Join(keys, ", "), errdefs.ErrInvalidArgument)
		}
		var derr *toml.DecodeError
		if errors.As(err, &derr) {
			row, col := derr.Position()
			key := strings.Join(derr.Key(), ".")
			if key != "" {
				key = " (" + key + ")"
			}
			return fmt.Errorf("line %d column %d%s: %s: %w", row, col, key, derr.Error(), errdefs.ErrInvalidArgument)
		}
		return fmt.Errorf("%v: %w", err, errdefs.ErrInvalidArgument)
	}
	return c.Validate()
}

// Validate checks every value and names the first key that is wrong.
func (c *Config) Validate() error {
	bad := func(key, format string, args ...any) error {
		return fmt.Errorf("%s: %s: %w", key, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
	}
	h := c.Hypervisor
	switch {
	case h.Path == "":
		return bad("hypervisor.path", "must not be empty")
	case h.Machine != "microvm" && h.Machine != "q35":
		return bad("hypervisor.machine", "must be microvm or q35, not %q", h.Machine)
	case h.Accelerator != "auto" && h.Accelerator != "kvm" && h.Accelerator != "tcg":
		return bad("hypervisor.accelerator", "must be auto, kvm or tcg, not %q", h.Accelerator)
	case h.VCPUs < 1 || h.VCPUs > 256:
		return bad("hypervisor.vcpus", "must be between 1 and 256, not %d", h.VCPUs)
	case h.MemoryMiB < 64 || h.MemoryMiB > 1<<20:
		return bad("hypervisor.memory_mib", "must be between 64 and 1048576, not %d", h.MemoryMiB)
	case h.TCGTranslationCacheMiB < 0 || h.TCGTranslationCacheMiB > 2048:
		return bad("hypervisor.tcg_translation_cache_mib", "must be between 1 and 2048, or 0 for hull's choice, not %d", h.TCGTranslationCacheMiB)
	case h.BootTimeout.D() <= 0:
		return bad("hypervisor.boot_timeout", "must be positive")
	}
	for _, p := range h.KernelParams {
		if p == "" || strings.ContainsAny(p, " \t\n\"") {
			return bad("hypervisor.kernel_params", "%q must be one parameter without spaces or quotes", p)
		}
	}
	if c.Image.Dir == "" || !filepath.IsAbs(c.Image.Dir) {
		return bad("image.dir", "must be an absolute path, not %q", c.Image.Dir)
	}
	switch c.Agent.Transport {
	case "auto", "serial", "vsock":
	default:
		return bad("agent.transport", "must be auto, serial or vsock, not %q", c.Agent.Transport)
	}
	if c.Agent.RequestTimeout.D() <= 0 {
		return bad("agent.request_timeout", "must be positive")
	}
	if c.Runtime.Root == "" || !filepath.IsAbs(c.Runtime.Root) {
		return bad("runtime.root", "must be an absolute path, not %q", c.Runtime.Root)
	}
	switch c.Runtime.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return bad("runtime.log_level", "must be debug, info, warn or error, not %q", c.Runtime.LogLevel)
	}
	return nil
}
