package container

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/opencontainers/cgroups/fscommon"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// DefaultOOMEvents is how many OOM events the engine keeps for the host.
const DefaultOOMEvents = 128

// OOMEvent says that the OOM killer killed a process of a container.
type OOMEvent struct {
	// Seq numbers the events of the engine from 1.
	Seq         uint64
	ContainerID string
}

// OOMEvents keeps the most recent OOM events, oldest dropped first, for
// readers that each follow them with their own cursor: reading does not
// consume, so that an event answered to a caller who has gone is not lost
// to the next one.
type OOMEvents struct {
	max int

	mu      sync.Mutex
	events  []OOMEvent    // oldest first; guarded by mu
	last    uint64        // Seq of the last event added; guarded by mu
	changed chan struct{} // closed and replaced on each add; guarded by mu
}

// NewOOMEvents returns a queue that keeps max events (DefaultOOMEvents
// when max <= 0).
func NewOOMEvents(max int) *OOMEvents {
	if max <= 0 {
		max = DefaultOOMEvents
	}
	return &OOMEvents{max: max, changed: make(chan struct{})}
}

// Add records an OOM kill in container id.
func (q *OOMEvents) Add(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.events) == q.max {
		copy(q.events, q.events[1:])
		q.events = q.events[:len(q.events)-1]
	}
	q.last++
	q.events = append(q.events, OOMEvent{Seq: q.last, ContainerID: id})
	close(q.changed)
	q.changed = make(chan struct{})
}

// Next returns the first kept event with a Seq above after, waiting for
// one as long as ctx allows. A cursor beyond the last event counts as the
// last event, so that only new events answer it.
func (q *OOMEvents) Next(ctx context.Context, after uint64) (OOMEvent, error) {
	for {
		q.mu.Lock()
		after = min(after, q.last)
		for _, ev := range q.events {
			if ev.Seq > after {
				q.mu.Unlock()
				return ev, nil
			}
		}
		changed := q.changed
		q.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return OOMEvent{}, ctx.Err()
		}
	}
}

// oomWatch follows the OOM kills in one container's cgroup.
type oomWatch struct {
	f    *os.File // inotify (v2) or eventfd (v1); closing it ends the watch
	done chan struct{}
	// evFile is v1's memory.oom_control, registered with the eventfd.
	evFile *os.File

	// With v2: the cgroup, and the kills counted and told so far.
	dir    string
	notify func()
	mu     sync.Mutex
	last   uint64 // guarded by mu
	killed bool   // guarded by mu: a kill was told
}

// check reads the kill counter (v2) and tells of kills not told yet. The
// kernel rate-limits its notices of memory.events (one per 10 ms, the
// others deferred): an init killed at once may be reaped before the
// notice comes, so its exit checks too. It reports whether the cgroup saw
// a kill since the watch began.
func (w *oomWatch) check() bool {
	if w.dir != "" {
		if ev, err := readMemoryEvents(w.dir, true); err == nil {
			w.grew(ev.OOMKill)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.killed
}

// grew takes a new reading of the kill counter, which only grows, and
// tells of it once per increase, however large.
func (w *oomWatch) grew(n uint64) {
	w.mu.Lock()
	tell := n > w.last
	if tell {
		w.last, w.killed = n, true
	}
	w.mu.Unlock()
	if tell {
		w.notify()
	}
}

// watchOOM calls notify each time the OOM killer kills processes in the
// cgroup dir (its memory controller's directory with cgroup v1). With
// cgroup v2 it follows memory.events' oom_kill counter, and calls notify
// once each time it grows, however much (the kernel may report several
// kills at once). With v1 it calls notify on each OOM notification of
// memory.oom_control.
func watchOOM(dir string, v2 bool, notify func(), log *logrus.Entry) (*oomWatch, error) {
	if dir == "" {
		return nil, errors.New("no memory cgroup")
	}
	var (
		w   *oomWatch
		err error
	)
	if v2 {
		w, err = watchOOMv2(dir, notify, log)
	} else {
		w, err = watchOOMv1(dir, notify, log)
	}
	if err != nil {
		return nil, fmt.Errorf("watching OOM kills in %s: %w", dir, err)
	}
	return w, nil
}

func watchOOMv2(dir string, notify func(), log *logrus.Entry) (*oomWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, os.NewSyscallError("inotify_init1", err)
	}
	// A non-blocking fd makes a pollable File, whose Close ends a Read.
	f := os.NewFile(uintptr(fd), "inotify")
	events := filepath.Join(dir, "memory.events")
	if _, err := unix.InotifyAddWatch(fd, events, unix.IN_MODIFY); err != nil {
		f.Close()
		return nil, os.NewSyscallError("inotify_add_watch "+events, err)
	}
	// Read after the watch is in, so that no kill falls in between.
	ev, err := readMemoryEvents(dir, true)
	if err != nil {
		f.Close()
		return nil, err
	}
	w := &oomWatch{f: f, done: make(chan struct{}), dir: dir, notify: notify, last: ev.OOMKill}
	go func() {
		defer close(w.done)
		buf := make([]byte, 4096)
		for {
			// The events say only that the file changed; the counter says
			// whether a kill did.
			if _, err := f.Read(buf); err != nil {
				if !errors.Is(err, os.ErrClosed) {
					log.WithError(err).Warn("OOM watch ended")
				}
				return
			}
			ev, err := readMemoryEvents(dir, true)
			if err != nil {
				// The cgroup is gone: nothing left to watch.
				log.WithError(err).Debug("OOM watch: reading memory.events")
				continue
			}
			w.grew(ev.OOMKill)
		}
	}()
	return w, nil
}

func watchOOMv1(dir string, notify func(), log *logrus.Entry) (*oomWatch, error) {
	control := filepath.Join(dir, "cgroup.event_control")
	evFile, err := os.Open(filepath.Join(dir, "memory.oom_control"))
	if err != nil {
		return nil, err
	}
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		evFile.Close()
		return nil, os.NewSyscallError("eventfd", err)
	}
	f := os.NewFile(uintptr(fd), "eventfd")
	reg := strconv.Itoa(fd) + " " + strconv.Itoa(int(evFile.Fd())) + "\n"
	if err := os.WriteFile(control, []byte(reg), 0); err != nil {
		f.Close()
		evFile.Close()
		return nil, err
	}
	w := &oomWatch{f: f, evFile: evFile, done: make(chan struct{}), notify: notify}
	go func() {
		defer close(w.done)
		buf := make([]byte, 8)
		for {
			if _, err := f.Read(buf); err != nil {
				if !errors.Is(err, os.ErrClosed) {
					log.WithError(err).Warn("OOM watch ended")
				}
				return
			}
			// The kernel signals the eventfd also when the cgroup goes.
			if _, err := os.Lstat(control); err != nil {
				continue
			}
			w.mu.Lock()
			w.killed = true
			w.mu.Unlock()
			notify()
		}
	}()
	return w, nil
}

// stop ends the watch and waits for its goroutine.
func (w *oomWatch) stop() {
	w.f.Close()
	<-w.done
	if w.evFile != nil {
		w.evFile.Close()
	}
}

// memoryEvents are the counters of cgroup v2's memory.events; with v1 only
// OOMKill (memory.oom_control) is read.
type memoryEvents struct {
	Low, High, Max, OOM, OOMKill uint64
}

// readMemoryEvents reads the counters of the memory cgroup dir.
func readMemoryEvents(dir string, v2 bool) (memoryEvents, error) {
	name := "memory.events"
	if !v2 {
		name = "memory.oom_control"
	}
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return memoryEvents{}, err
	}
	defer f.Close()
	var ev memoryEvents
	fields := map[string]*uint64{"oom_kill": &ev.OOMKill}
	if v2 {
		fields["low"], fields["high"], fields["max"], fields["oom"] = &ev.Low, &ev.High, &ev.Max, &ev.OOM
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, err := fscommon.ParseKeyValue(sc.Text())
		if err != nil {
			return memoryEvents{}, fmt.Errorf("%s: %w", name, err)
		}
		if p := fields[k]; p != nil {
			*p = v
		}
	}
	return ev, sc.Err()
}
