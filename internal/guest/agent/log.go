package agent

import (
	"fmt"
	"strconv"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/hull-runtime/hull/internal/guest/cmdline"
)

// consoleFormatter stamps each line with the guest's uptime in the kernel's
// own style, so that agent and kernel lines on the console read as one
// timeline; the wall clock of a fresh VM means little.
type consoleFormatter struct {
	text logrus.TextFormatter
}

func newConsoleFormatter() *consoleFormatter {
	return &consoleFormatter{text: logrus.TextFormatter{
		DisableColors:    true,
		DisableTimestamp: true,
		QuoteEmptyFields: true,
	}}
}

func (f *consoleFormatter) Format(e *logrus.Entry) ([]byte, error) {
	line, err := f.text.Format(e)
	if err != nil {
		return nil, err
	}
	up := uptime()
	prefix := fmt.Sprintf("[%5d.%06d] hull-agent: ", up/time.Second, (up%time.Second)/time.Microsecond)
	return append([]byte(prefix), line...), nil
}

// uptime is the time since boot, the clock of the kernel's log.
func uptime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// logLevel reads the level from the command line: `hull.log=<level>` sets
// it (logrus level names), and `hull.debug` or `hull.debug=1` makes it at
// least debug. A bad value is reported; a bad hull.log keeps info, a bad
// hull.debug still turns debug on.
func logLevel(params []cmdline.Param) (logrus.Level, error) {
	level := logrus.InfoLevel
	var err error
	if v, ok := cmdline.Lookup(params, "hull.log"); ok {
		if l, perr := logrus.ParseLevel(v); perr != nil {
			err = fmt.Errorf("hull.log: %w", perr)
		} else {
			level = l
		}
	}
	if v, ok := cmdline.Lookup(params, "hull.debug"); ok {
		on := true
		if v != "" {
			b, perr := strconv.ParseBool(v)
			if perr != nil {
				// Whoever wrote hull.debug=yes wanted debug.
				err = fmt.Errorf("hull.debug: %w", perr)
				b = true
			}
			on = b
		}
		if on {
			level = max(level, logrus.DebugLevel)
		}
	}
	return level, err
}
