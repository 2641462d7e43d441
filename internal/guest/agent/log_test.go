package agent

import (
	"regexp"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/hull-runtime/hull/internal/guest/cmdline"
)

func TestLogLevel(t *testing.T) {
	for _, tc := range []struct {
		cmdline string
		want    logrus.Level
		bad     bool
	}{
		{"", logrus.InfoLevel, false},
		{"hull.debug=1", logrus.DebugLevel, false},
		{"hull.debug", logrus.DebugLevel, false},
		{"hull.debug=0", logrus.InfoLevel, false},
		{"hull.log=warn", logrus.WarnLevel, false},
		{"hull.log=warn hull.debug=1", logrus.DebugLevel, false},
		{"hull.log=trace hull.debug=1", logrus.TraceLevel, false},
		{"hull.log=loud", logrus.InfoLevel, true},
		{"hull.debug=maybe", logrus.DebugLevel, true},
	} {
		got, err := logLevel(cmdline.Parse(tc.cmdline))
		if got != tc.want || (err != nil) != tc.bad {
			t.Errorf("logLevel(%q) = %v, %v; want %v, error %v", tc.cmdline, got, err, tc.want, tc.bad)
		}
	}
}

func TestConsoleFormatter(t *testing.T) {
	e := logrus.NewEntry(logrus.New()).WithField("channel", "serial")
	e.Level = logrus.InfoLevel
	e.Message = "serving"
	b, err := newConsoleFormatter().Format(e)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^\[ *\d+\.\d{6}\] hull-agent: level=info msg=serving channel=serial\n$`)
	if !re.Match(b) {
		t.Errorf("line %q does not match %v", b, re)
	}
}
