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
//
// It takes 2 ms of every process that boots a TCG sandbox, so the window
// is short; each end is a clock read bracketed by two TSC reads, retried
// while a preemption stretches the bracket, which keeps the error well
// under 0.1%. The guest only needs the rate roughly: it refines it against
// its HPET or ACPI timer once booted.
func HostTSCKHz() uint64 {
	tscOnce.Do(func() {
		t0, c0 := tscSample()
		time.Sleep(2 * time.Millisecond)
		t1, c1 := tscSample()
		if ns := t1.Sub(t0).Nanoseconds(); ns > 0 && c1 > c0 {
			tscOnce.khz = (c1 - c0) * 1e6 / uint64(ns)
		}
	})
	return tscOnce.khz
}

// maxBracket is the most TSC ticks two reads around a clock read may be
// apart (about 4 µs at 2.5 GHz); a wider one was preempted.
const maxBracket = 10000

// tscSample reads the clock and the TSC at the same moment, as near as
// can be.
func tscSample() (time.Time, uint64) {
	for i := 0; ; i++ {
		a := rdtsc()
		t := time.Now()
		b := rdtsc()
		if b-a <= maxBracket || i == 20 {
			return t, a + (b-a)/2
		}
	}
}
