package supervisor

import (
	"os"
	"syscall"
)

// ForwardedSignals are the signals that a process standing for a
// container passes on to it, as runc's run does: every signal but those
// that concern the standing process itself. SIGCHLD tells of its own
// children, SIGPIPE of its own writes, SIGURG is the Go runtime's
// preemption, SIGPROF its profiler, and SIGWINCH is a terminal's size,
// which goes its own way. SIGKILL and SIGSTOP cannot be caught.
func ForwardedSignals() []os.Signal {
	var sigs []os.Signal
	for n := syscall.Signal(1); n <= 64; n++ {
		switch n {
		case syscall.SIGKILL, syscall.SIGSTOP, syscall.SIGCHLD, syscall.SIGPIPE,
			syscall.SIGURG, syscall.SIGPROF, syscall.SIGWINCH:
			continue
		}
		if n >= 32 && n <= 33 {
			// glibc's own real-time signals, never sent to a program.
			continue
		}
		sigs = append(sigs, n)
	}
	return sigs
}
