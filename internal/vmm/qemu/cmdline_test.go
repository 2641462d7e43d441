package qemu

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

var update = flag.Bool("update", false, "rewrite golden files")

func baseConfig() Config {
	return Config{
		Name:         "hull-test",
		Binary:       "/usr/bin/qemu-system-x86_64",
		Machine:      MachineMicroVM,
		Accel:        TCG,
		TBSizeMiB:    16,
		TSCKHz:       2596000,
		VCPUs:        2,
		MemoryMiB:    256,
		SharedMemory: true,
		Kernel:       "/usr/local/share/hull/vmlinuz",
		Initrd:       "/usr/local/share/hull/initramfs.img",
		KernelParams: []string{"quiet", "panic=-1"},
		RunDir:       "/run/hull/test/vm",
		SerialPorts:  []string{"hull.agent.0"},
		Balloon:      true,
	}
}

func TestArgsGolden(t *testing.T) {
	q35 := baseConfig()
	q35.Machine = MachineQ35
	q35.Accel = KVM
	q35.VsockCID = 42
	q35.FS = []FSDevice{{Tag: "hullfs", Conn: os.Stdin}}
	q35.Net = []NetDevice{{TapFile: os.Stdin, MAC: "02:42:0a:c8:01:02"}}
	trimmed := baseConfig()
	trimmed.VCPUs = 1
	trimmed.TBSizeMiB = 64
	trimmed.TrimTCG = true
	withNet := baseConfig()
	withNet.FS = []FSDevice{{Tag: "hullfs", Conn: os.Stdin}}
	withNet.Net = []NetDevice{{TapFile: os.Stdin, MAC: "02:42:0a:c8:01:02"}, {TapFile: os.Stdin, MAC: "aa:00:00:00:00:01"}}
	plain := baseConfig()
	plain.SharedMemory = false
	plain.Balloon = false
	plain.SerialPorts = nil
	for name, cfg := range map[string]Config{
		"microvm-tcg":  baseConfig(),
		"q35-kvm":      q35,
		"microvm-min":  plain,
		"microvm-net":  withNet,
		"microvm-trim": trimmed,
	} {
		t.Run(name, func(t *testing.T) {
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			got := strings.Join(cfg.Args(), "\n") + "\n"
			golden := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if got != string(want) {
				t.Fatalf("args differ from %s:\n%s", golden, got)
			}
		})
	}
}

func TestValidateNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"relative binary", func(c *Config) { c.Binary = "qemu" }, "qemu binary"},
		{"machine", func(c *Config) { c.Machine = "pc" }, "machine"},
		{"accel", func(c *Config) { c.Accel = "auto" }, "accelerator"},
		{"vcpus", func(c *Config) { c.VCPUs = 0 }, "vcpus"},
		{"memory", func(c *Config) { c.MemoryMiB = 8 }, "memory"},
		{"tb size", func(c *Config) { c.TBSizeMiB = 0 }, "translation cache"},
		{"kernel", func(c *Config) { c.Kernel = "vmlinuz" }, "kernel"},
		{"param with space", func(c *Config) { c.KernelParams = []string{"a b"} }, "kernel parameter"},
		{"port name", func(c *Config) { c.SerialPorts = []string{"a,b"} }, "serial port"},
		{"fs without shared memory", func(c *Config) {
			c.SharedMemory = false
			c.FS = []FSDevice{{Tag: "t", Conn: os.Stdin}}
		}, "shared memory"},
		{"name with comma", func(c *Config) { c.Name = "a,b" }, "name"},
		{"mac with comma", func(c *Config) { c.Net = []NetDevice{{TapFile: os.Stdin, MAC: "02:00:00:00:00:01,x=y"}} }, "MAC"},
		{"multicast mac", func(c *Config) { c.Net = []NetDevice{{TapFile: os.Stdin, MAC: "01:00:5e:00:00:01"}} }, "MAC"},
		{"net without tap", func(c *Config) { c.Net = []NetDevice{{MAC: "02:00:00:00:00:01"}} }, "no tap"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := baseConfig()
			tc.mutate(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("want invalid-argument error naming %q, got %v", tc.want, err)
			}
		})
	}
}

func TestChooseAccel(t *testing.T) {
	works := func() error { return nil }
	broken := func() error { return errors.New("failed to set MSR 0x10a") }
	notCalled := func() error { t.Fatal("probe ran for tcg"); return nil }
	for _, tc := range []struct {
		mode    string
		probe   func() error
		want    Accel
		warn    bool
		wantErr bool
	}{
		{"auto", works, KVM, false, false},
		{"auto", broken, TCG, true, false},
		{"kvm", works, KVM, false, false},
		{"kvm", broken, "", false, true},
		{"tcg", notCalled, TCG, false, false},
		{"xen", works, "", false, true},
	} {
		got, err := ChooseAccel(tc.mode, tc.probe)
		if (err != nil) != tc.wantErr {
			t.Fatalf("%s: err %v", tc.mode, err)
		}
		if got.Accel != tc.want || (got.Warning != "") != tc.warn {
			t.Fatalf("%s: got %+v", tc.mode, got)
		}
		if tc.warn && !strings.Contains(got.Warning, "MSR 0x10a") {
			t.Fatalf("warning does not say why: %q", got.Warning)
		}
	}
}

func TestProbeFirmware(t *testing.T) {
	fw := probeFirmware()
	if len(fw) != 64<<10 {
		t.Fatalf("firmware is %d bytes; QEMU wants a multiple of 64 KiB", len(fw))
	}
	// The reset vector (16 bytes below the top) must jump to the code that
	// writes to the debug-exit port.
	reset := len(fw) - 16
	if fw[reset] != 0xeb {
		t.Fatalf("no short jump at the reset vector: %#x", fw[reset])
	}
	target := reset + 2 + int(int8(fw[reset+1]))
	if fw[target] != 0xb0 || fw[target+1] != probeValue || fw[target+2] != 0xe6 || fw[target+3] != 0xf4 {
		t.Fatalf("jump lands on % x, not the probe code", fw[target:target+4])
	}
}

// TestProbeRunsUnderTCG runs the probe firmware with TCG, which proves the
// firmware and the exit-code convention with the real QEMU where KVM is
// not usable.
func TestProbeRunsUnderTCG(t *testing.T) {
	bin, err := LookBinary("qemu-system-x86_64")
	if err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	fw := filepath.Join(dir, "fw.bin")
	if err := os.WriteFile(fw, probeFirmware(), 0o600); err != nil {
		t.Fatal(err)
	}
	err = runProbe(t.Context(), bin, fw, "tcg", "max")
	if err != nil {
		t.Fatalf("probe firmware under tcg: %v", err)
	}
}

func TestQEMUEnvHoldsMallocToOneArena(t *testing.T) {
	got := qemuEnv([]string{"PATH=/bin", "MALLOC_ARENA_MAX=8", "HOME=/root"})
	want := []string{"PATH=/bin", "HOME=/root", "MALLOC_ARENA_MAX=1"}
	if !slices.Equal(got, want) {
		t.Fatalf("qemuEnv = %q, want %q", got, want)
	}
}
