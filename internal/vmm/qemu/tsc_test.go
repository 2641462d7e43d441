package qemu

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// The measured rate must agree with what the host kernel says, where it
// says it: "cpu MHz" in /proc/cpuinfo is the TSC's rate on hosts with a
// constant TSC (within a few per cent elsewhere).
func TestHostTSCKHz(t *testing.T) {
	khz := HostTSCKHz()
	// Any x86 host of the last twenty years runs its TSC between 1 and 6 GHz.
	if khz < 1_000_000 || khz > 6_000_000 {
		t.Fatalf("host TSC measured at %d kHz", khz)
	}
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		t.Skip(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(k) != "cpu MHz" {
			continue
		}
		mhz, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || mhz == 0 {
			t.Skip("no usable cpu MHz")
		}
		t.Logf("TSC at %d kHz, cpuinfo says %.3f MHz", khz, mhz)
		if r := float64(khz) / (mhz * 1000); r < 0.9 || r > 1.1 {
			t.Errorf("TSC at %d kHz, cpuinfo says %.0f MHz", khz, mhz)
		}
		return
	}
	t.Skip("no cpu MHz in /proc/cpuinfo")
}
