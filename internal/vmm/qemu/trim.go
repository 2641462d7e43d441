package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"
)

// Under TCG a VM's start translates about 47 MB of code (the guest
// kernel's boot, the agent's start, the first container's creation), and
// a translation cache smaller than that is emptied and filled again during
// the start: about 95 ms of a stand-alone container's start with a 32 MiB
// cache (docs/benchmarks.md). A cache that holds the whole start, though,
// stays resident for the VM's life, nearly all of it code that never runs
// again. So the cache is large, and once the VM's translating has settled
// the host empties it and gives the memory back (TrimTranslations); what
// the guest runs next is translated again, a few MiB for an idle guest.
const (
	// trimPoll is how often the cache's resident size is read (an fstat).
	trimPoll = 2 * time.Second
	// trimQuiet: a cache that grew by less than this in one poll has
	// settled; a guest still translating is left alone.
	trimQuiet = 256 << 10
	// trimGrowth is how much a settled cache must have grown since the
	// last trim settled (the guest's working set) to be trimmed again.
	trimGrowth = 8 << 20
	// trimMargin is left resident past the code in use: QEMU's prologue
	// and what the guest translates between the measure and the punch (the
	// VM is stopped then; the margin only guards against a QEMU that
	// counts its cache differently).
	trimMargin = 2 << 20
)

// GDBSocket is the gdbstub's socket in the VM's run directory while a trim
// runs; QEMU removes it when the stub closes, and whoever removes a run
// directory removes it too (a QEMU killed mid-trim leaves it).
const GDBSocket = "gdb.sock"

// errTrimSkipped marks a trim not done because the VM was not in a state
// to do it safely; nothing was freed and the VM runs on.
var errTrimSkipped = errors.New("translation cache not trimmed")

// TrimTranslations empties the VM's translation cache and frees the
// memory behind it, but for what the guest translates meanwhile. It stops
// the VM for a few milliseconds. It returns the bytes freed.
//
// The host frees pages of QEMU's cache behind QEMU's back, so it does so
// only where QEMU cannot run or write code: the VM is stopped (QMP says
// so), QEMU's own count of flushes shows the cache was emptied after the
// last measure, and the pages lie past the end of the code QEMU reports in
// use, in a cache of a single region (one vCPU), which QEMU fills from its
// start after a flush.
func (vm *VM) TrimTranslations(ctx context.Context) (int64, error) {
	vm.trimMu.Lock()
	defer vm.trimMu.Unlock()
	if vm.jit == nil {
		return 0, fmt.Errorf("vm %s: %w: the cache is not in a memfd", vm.cfg.Name, errTrimSkipped)
	}
	if vm.cfg.VCPUs != 1 {
		return 0, fmt.Errorf("vm %s: %w: %d vCPUs share the cache in regions", vm.cfg.Name, errTrimSkipped, vm.cfg.VCPUs)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if running, err := vm.running(ctx); err != nil {
		return 0, err
	} else if !running {
		return 0, fmt.Errorf("vm %s: %w: not running", vm.cfg.Name, errTrimSkipped)
	}
	before, err := vm.jitInfo(ctx)
	if err != nil {
		return 0, err
	}
	residentBefore, err := vm.jit.resident()
	if err != nil {
		return 0, err
	}

	// The stub listens only for this trim, in the run directory (0700);
	// QEMU's working directory is that directory, and the host reaches
	// the socket through a descriptor of it, whatever the path's length.
	sock := filepath.Join(vm.cfg.RunDir, GDBSocket)
	os.Remove(sock)
	if out, err := vm.hmp(ctx, "gdbserver unix:"+GDBSocket+",server=on,wait=off"); err != nil {
		return 0, err
	} else if !strings.Contains(out, "Waiting for gdb connection") {
		return 0, fmt.Errorf("vm %s: gdbserver: %s", vm.cfg.Name, strings.TrimSpace(out))
	}
	// Each step of the way back is bounded on its own: the caller's
	// deadline may be what ended the trim.
	bounded := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	}
	defer func() {
		bctx, cancel := bounded()
		defer cancel()
		if out, err := vm.hmp(bctx, "gdbserver none"); err != nil || !strings.Contains(out, "Disabled gdbserver") {
			log.G(ctx).WithError(err).WithField("output", strings.TrimSpace(out)).Warn("gdbstub not disabled")
		}
		os.Remove(sock)
	}()
	dir, err := os.Open(vm.cfg.RunDir)
	if err != nil {
		return 0, err
	}
	defer dir.Close()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), GDBSocket))
	if err != nil {
		return 0, fmt.Errorf("vm %s: gdbstub: %w", vm.cfg.Name, err)
	}
	defer conn.Close()
	stub := newGDBStub(conn)
	attached := time.Now()
	var stepped time.Duration
	// From here the VM is stopped (a debugger attached); it must run again
	// whatever happens next. Only a trim stops hull's VMs, so it is let
	// run whatever the detach did: cont is harmless on a running VM.
	defer func() {
		if err := stub.detach(time.Second); err != nil {
			log.G(ctx).WithError(err).Debug("gdbstub detach")
		}
		log.G(ctx).WithFields(log.Fields{"step": stepped.Round(time.Microsecond), "stopped": time.Since(attached).Round(time.Microsecond)}).Debug("gdbstub detached")
		for try := 0; try < 3; try++ {
			bctx, cancel := bounded()
			_, err := vm.qmp.execute(bctx, "cont")
			cancel()
			if err == nil || vm.exited() {
				return
			}
			log.G(ctx).WithError(err).Warn("resuming the vm after a trim")
		}
	}()
	err = stub.stepStop(time.Second, 3*time.Second)
	stepped = time.Since(attached)
	if err != nil {
		return 0, fmt.Errorf("vm %s: %w", vm.cfg.Name, err)
	}
	if running, err := vm.running(ctx); err != nil {
		return 0, err
	} else if running {
		return 0, fmt.Errorf("vm %s: %w: still running after the step", vm.cfg.Name, errTrimSkipped)
	}
	// QEMU empties the cache in the vCPU's thread, as work it queues when
	// the step's debug stop comes; that thread may get to it a moment
	// after the stop.
	var after jitInfo
	for try := 0; ; try++ {
		if after, err = vm.jitInfo(ctx); err != nil {
			return 0, err
		}
		if after.Flushes > before.Flushes {
			break
		}
		if try == 10 {
			return 0, fmt.Errorf("vm %s: %w: the cache was not emptied", vm.cfg.Name, errTrimSkipped)
		}
		time.Sleep(2 * time.Millisecond)
	}
	from := (after.Used + trimMargin + 4095) &^ 4095
	if err := vm.jit.punch(from); err != nil {
		return 0, fmt.Errorf("vm %s: freeing the translation cache: %w", vm.cfg.Name, err)
	}
	residentAfter, err := vm.jit.resident()
	if err != nil {
		return 0, err
	}
	return max(residentBefore-residentAfter, 0), nil
}

// running asks QMP whether the guest runs.
func (vm *VM) running(ctx context.Context) (bool, error) {
	raw, err := vm.qmp.execute(ctx, "query-status")
	if err != nil {
		return false, fmt.Errorf("vm %s: %w", vm.cfg.Name, err)
	}
	var st struct {
		Running *bool `json:"running"`
	}
	if err := json.Unmarshal(raw, &st); err != nil || st.Running == nil {
		return false, fmt.Errorf("vm %s: query-status: %s", vm.cfg.Name, raw)
	}
	return *st.Running, nil
}

// hmp runs a human monitor command through QMP.
func (vm *VM) hmp(ctx context.Context, line string) (string, error) {
	raw, err := vm.qmp.executeArgs(ctx, "human-monitor-command", map[string]string{"command-line": line})
	if err != nil {
		return "", fmt.Errorf("vm %s: %w", vm.cfg.Name, err)
	}
	var out string
	if err := json.Unmarshal(raw, &out); err != nil {
		return "", fmt.Errorf("vm %s: %s: %w", vm.cfg.Name, line, err)
	}
	return out, nil
}

func (vm *VM) jitInfo(ctx context.Context) (jitInfo, error) {
	out, err := vm.hmp(ctx, "info jit")
	if err != nil {
		return jitInfo{}, err
	}
	in, err := parseJITInfo(out)
	if err != nil {
		return jitInfo{}, fmt.Errorf("vm %s: %w", vm.cfg.Name, err)
	}
	return in, nil
}

// Trim policy knobs (trimLoop).
const (
	// trimRetryMax caps the polls skipped after a trim that could not be
	// done (2^n polls after the n-th in a row).
	trimRetryMax = 6
	// trimAgain: a cache that has held its working set this long is
	// trimmed again if it is over trimAgainOver, since what the guest
	// runs may have changed.
	trimAgain     = 2 * time.Minute
	trimAgainOver = 16 << 20
)

// trimPolicy decides, poll by poll, when trimLoop trims: each time the
// guest's translating has settled after the cache grew by trimGrowth. The
// resident size (an fstat) says when the cache grew; whether QEMU still
// translates is read from its count of code in the cache (`info jit`,
// which walks the cache, so only then): the resident size says nothing
// while the start fills pages allocated ahead. A cache whose code grows
// back to most of what a trim freed holds the guest's working set: it is
// left alone until it grows by trimGrowth more, or, over trimAgainOver,
// for trimAgain. A trim that could not be done is retried later and
// later, and after trimRetryMax in a row no more.
type trimPolicy struct {
	base     int64 // resident after the last trim, or with the working set
	from     int64 // code in the cache before the last trim, while a trim may pay
	prevUsed int64 // code in the cache at the last poll that read it, or -1
	lastTrim time.Time
	skipped  int // trims not done in a row
	wait     int // polls to let pass
}

func newTrimPolicy(now time.Time) *trimPolicy {
	return &trimPolicy{prevUsed: -1, lastTrim: now}
}

// wants says whether a poll that found r bytes resident reads QEMU's
// count of code.
func (p *trimPolicy) wants(r int64, now time.Time) bool {
	if p.wait > 0 {
		p.wait--
		return false
	}
	again := p.from == 0 && r > trimAgainOver && now.Sub(p.lastTrim) > trimAgain
	if r-p.base < trimGrowth && !again {
		p.prevUsed = -1
		return false
	}
	return true
}

// settled takes QEMU's count of code in use and says whether to trim now.
func (p *trimPolicy) settled(r, used int64, now time.Time) bool {
	grew := used - p.prevUsed
	p.prevUsed = used
	switch {
	case grew > trimQuiet || grew < -trimQuiet:
		// Still translating, or QEMU emptied the cache itself.
		return false
	case p.from > 0 && used*4 >= p.from*3:
		// The working set.
		p.base, p.from, p.lastTrim = r, 0, now
		return false
	}
	return true
}

// trimmed records a trim of a cache that held used bytes of code and
// now has residentAfter bytes resident.
func (p *trimPolicy) trimmed(residentAfter, used int64, now time.Time) {
	p.skipped = 0
	p.base, p.from, p.prevUsed, p.lastTrim = residentAfter, used, -1, now
}

// skip records a trim that could not be done; false means no more tries.
func (p *trimPolicy) skip() bool {
	p.skipped++
	if p.skipped > trimRetryMax {
		return false
	}
	p.wait, p.prevUsed = 1<<p.skipped, -1
	return true
}

// trimLoop trims the cache as trimPolicy says, until the VM ends.
func (vm *VM) trimLoop(ctx context.Context, j *jitCache) {
	t := time.NewTicker(trimPoll)
	defer t.Stop()
	p := newTrimPolicy(time.Now())
	warn := func(msg string, err error) {
		// A VM on its way out fails QMP before its end shows.
		select {
		case <-vm.done:
		case <-time.After(time.Second):
			log.G(ctx).WithError(err).Warn(msg)
		}
	}
	for {
		select {
		case <-vm.done:
			return
		case <-t.C:
		}
		r, err := j.resident()
		if err != nil {
			warn("translation cache", err)
			return
		}
		if !p.wants(r, time.Now()) {
			continue
		}
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		in, err := vm.jitInfo(qctx)
		cancel()
		if err != nil {
			warn("translation cache", err)
			return
		}
		if !p.settled(r, in.Used, time.Now()) {
			continue
		}
		start := time.Now()
		freed, err := vm.TrimTranslations(ctx)
		if err != nil && vm.exited() {
			return
		}
		if errors.Is(err, errTrimSkipped) {
			if !p.skip() {
				log.G(ctx).WithError(err).Info("translation cache: no more trims for this vm")
				return
			}
			log.G(ctx).WithError(err).Debug("translation cache")
			continue
		}
		if err != nil {
			// Not tried again: whatever failed would fail each time.
			warn("translation cache stays resident", err)
			return
		}
		after, err := j.resident()
		if err != nil {
			warn("translation cache", err)
			return
		}
		p.trimmed(after, in.Used, time.Now())
		log.G(ctx).WithFields(log.Fields{"freed_mib": freed >> 20, "took": time.Since(start).Round(time.Microsecond)}).Debug("translation cache trimmed")
	}
}

// exited says whether QEMU has exited, giving it a moment: a QEMU on its
// way out fails QMP before its end shows.
func (vm *VM) exited() bool {
	select {
	case <-vm.done:
		return true
	case <-time.After(100 * time.Millisecond):
		return false
	}
}

// startJIT opens the cache of a VM that keeps it in a memfd, allocates the
// part a start fills ahead of QEMU, and starts the trimming.
func (vm *VM) startJIT(ctx context.Context) {
	j, err := openJIT(vm.Pid())
	if err != nil {
		log.G(ctx).WithError(err).Warn("translation cache stays resident")
		return
	}
	vm.jit = j
	ctx = context.WithoutCancel(ctx)
	go func() {
		// Before any trim: allocating after one would undo it.
		if err := j.populate(prefaultBytes(j.size)); err != nil && !errors.Is(err, unix.ENOSPC) {
			log.G(ctx).WithError(err).Debug("translation cache not allocated ahead")
		}
		vm.trimLoop(ctx, j)
		<-vm.done
		vm.trimMu.Lock()
		vm.jit = nil
		vm.trimMu.Unlock()
		j.Close()
	}()
}

// prefaultBytes is how much of a cache of size is allocated ahead: what a
// start fills, about 48 MB.
func prefaultBytes(size int64) int64 { return min(size, 48<<20) }
