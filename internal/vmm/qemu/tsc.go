package qemu

import (
	"sync"
	"time"
)

func rdtsc() uint64

var tscOnce struct {
	sync.Once
	khz uint64
}

// HostTSCKHz measures the host's TSC frequency, once per process.
//
// A TCG guest reads the host's TSC, but has to calibrate its rate against
// the emulated PIT, and on a busy host that calibration fails and the
// Debian kernel hangs before its console starts. Telling the guest the rate
// (tsc_early_khz=) skips the calibration.
func HostTSCKHz() uint64 {
	tscOnce.Do(func() {
		t0, c0 := time.Now(), rdtsc()
		time.Sleep(10 * time.Millisecond)
		t1, c1 := time.Now(), rdtsc()
		if us := t1.Sub(t0).Microseconds(); us > 0 && c1 > c0 {
			tscOnce.khz = (c1 - c0) * 1000 / uint64(us)
		}
	})
	return tscOnce.khz
}
