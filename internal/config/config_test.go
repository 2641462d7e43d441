package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func TestMissingDefaultFileMeansDefaults(t *testing.T) {
	c, err := Load(filepath.Join(t.TempDir(), "none.toml"), false)
	if err != nil {
		t.Fatal(err)
	}
	if c.Hypervisor.Machine != "microvm" || c.Image.Dir != "/usr/local/share/hull" {
		t.Fatalf("not the defaults: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
}

func TestMissingExplicitFileIsAnError(t *testing.T) {
	p := filepath.Join(t.TempDir(), "none.toml")
	_, err := Load(p, true)
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("want an error naming %s, got %v", p, err)
	}
}

func TestFileOverridesDefaults(t *testing.T) {
	p := writeConfig(t, `
[hypervisor]
accelerator = "tcg"
memory_mib = 512
boot_timeout = "3s"
kernel_params = ["quiet"]
[agent]
transport = "serial"
`)
	c, err := Load(p, true)
	if err != nil {
		t.Fatal(err)
	}
	if c.Hypervisor.Accelerator != "tcg" || c.Hypervisor.MemoryMiB != 512 || c.Hypervisor.BootTimeout.D() != 3*time.Second {
		t.Fatalf("file not applied: %+v", c.Hypervisor)
	}
	if c.Hypervisor.VCPUs != 1 || c.Runtime.Root != "/run/hull" {
		t.Fatalf("defaults lost for keys the file does not set: %+v", c)
	}
}

func TestBadConfigNamesKeyAndFile(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"unknown key", "[hypervisor]\nacceleratr = \"kvm\"\n", "hypervisor.acceleratr"},
		{"unknown table", "[hypervisr]\npath = \"x\"\n", "hypervisr"},
		{"bad enum", "[hypervisor]\naccelerator = \"xen\"\n", "hypervisor.accelerator"},
		{"bad type", "[hypervisor]\nvcpus = \"two\"\n", "hypervisor.vcpus"},
		{"bad range", "[hypervisor]\nmemory_mib = 1\n", "hypervisor.memory_mib"},
		{"negative cache", "[hypervisor]\ntcg_translation_cache_mib = -1\n", "hypervisor.tcg_translation_cache_mib"},
		{"bad duration", "[agent]\nrequest_timeout = \"soon\"\n", "agent.request_timeout"},
		{"relative dir", "[image]\ndir = \"share/hull\"\n", "image.dir"},
		{"param with space", "[hypervisor]\nkernel_params = [\"a b\"]\n", "hypervisor.kernel_params"},
		{"syntax", "[hypervisor\n", "line 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeConfig(t, tc.body)
			_, err := Load(p, true)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("error %q does not name %q and the file", err, tc.want)
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("error %v is not ErrInvalidArgument", err)
			}
		})
	}
}

func TestPathPrecedence(t *testing.T) {
	t.Setenv(EnvPath, "/from/env.toml")
	if got := Path("/explicit.toml"); got != "/explicit.toml" {
		t.Fatalf("explicit path lost: %s", got)
	}
	if got := Path(""); got != "/from/env.toml" {
		t.Fatalf("env path lost: %s", got)
	}
	t.Setenv(EnvPath, "")
	if got := Path(""); got != DefaultPath {
		t.Fatalf("default path lost: %s", got)
	}
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTCGCacheByUse(t *testing.T) {
	h := Default().Hypervisor
	if !h.TCGTrim {
		t.Fatal("tcg_trim is off by default")
	}
	if a, b := h.TCGCacheMiB(false), h.TCGCacheMiB(true); a != TCGCacheTrimmedMiB || b != TCGCacheTrimmedMiB {
		t.Errorf("default, trimmed: %d and %d MiB, want %d", a, b, TCGCacheTrimmedMiB)
	}
	// A VM of two vCPUs is not trimmed, and keeps the smaller caches.
	h.VCPUs = 2
	if h.TCGTrimmed() || h.TCGCacheMiB(false) != TCGCacheContainerMiB {
		t.Errorf("two vCPUs: trimmed %v, %d MiB", h.TCGTrimmed(), h.TCGCacheMiB(false))
	}
	h.VCPUs = 1
	// Without trimming the cache stays resident: smaller, smallest for pods.
	h.TCGTrim = false
	if got := h.TCGCacheMiB(false); got != TCGCacheContainerMiB {
		t.Errorf("default, stand-alone container: %d MiB, want %d", got, TCGCacheContainerMiB)
	}
	if got := h.TCGCacheMiB(true); got != TCGCachePodMiB {
		t.Errorf("default, pod: %d MiB, want %d", got, TCGCachePodMiB)
	}
	c, err := Load(writeConfig(t, "[hypervisor]\ntcg_translation_cache_mib = 40\ntcg_trim = false\n"), true)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := c.Hypervisor.TCGCacheMiB(false), c.Hypervisor.TCGCacheMiB(true); a != 40 || b != 40 {
		t.Errorf("set to 40: %d and %d MiB", a, b)
	}
	if c.Hypervisor.TCGTrim {
		t.Error("tcg_trim = false not read")
	}
}
