package container

import (
	"time"

	"github.com/sirupsen/logrus"
)

// stepTimer times the steps of a container call for the debug log, so that
// a slow create or start tells where its time went (under TCG the guest's
// steps are many times slower than on hardware, and each counts).
type stepTimer struct {
	start, last time.Time
	fields      logrus.Fields
}

func newStepTimer() *stepTimer {
	now := time.Now()
	return &stepTimer{start: now, last: now, fields: logrus.Fields{}}
}

// done ends the step called name, which began where the last one ended.
func (t *stepTimer) done(name string) {
	now := time.Now()
	t.fields[name] = roundMS(now.Sub(t.last))
	t.last = now
}

// log writes the steps and the total at debug level.
func (t *stepTimer) log(l *logrus.Entry, msg string) {
	if !l.Logger.IsLevelEnabled(logrus.DebugLevel) {
		return
	}
	t.fields["took"] = roundMS(t.last.Sub(t.start))
	l.WithFields(t.fields).Debug(msg)
}

func roundMS(d time.Duration) string { return d.Round(100 * time.Microsecond).String() }
