package initsys

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Exit is the end of a child process as wait4 reported it.
type Exit struct {
	Pid int
	// Status is the exit code, or 128 plus the signal number for a process
	// killed by a signal, as shells report it.
	Status int
	Time   time.Time
}

// Reaper waits for every child of the agent, including the orphans the
// kernel hands to PID 1, so that none stays a zombie.
//
// Two kinds of code start processes beside it. Code that uses os/exec
// starts them with Start and collects them with Wait below (or Subscribe),
// never with exec.Cmd.Wait: the reaper takes their exit statuses and fans
// them out to all subscribers, as containerd's reaper does. Code that must
// wait for its children itself, such as runc's libcontainer, which waits for
// its helper processes inside its own calls, tells the reaper to keep off:
// Hold while it starts processes whose pids it does not know yet, Claim for
// a pid it will wait for. The reaper looks at each ended child without
// reaping it (waitid WNOWAIT) and leaves it while it is claimed or a hold
// is taken; the release of either makes it look again.
type Reaper struct {
	sigs chan os.Signal
	// kick makes the loop look again without a SIGCHLD.
	kick chan struct{}
	stop chan struct{}

	mu      sync.Mutex
	subs    map[*Subscription]struct{} // guarded by mu
	claimed map[int]int                // pid -> claims; guarded by mu
	holds   int                        // guarded by mu
}

// Subscription receives every exit reaped after Subscribe returned.
type Subscription struct {
	// C carries the exits. The subscriber must keep receiving, or Close:
	// the reaper waits for it (rather than drop an exit status), and zombies
	// pile up meanwhile.
	C <-chan Exit

	c      chan Exit
	done   chan struct{}
	once   sync.Once
	reaper *Reaper
}

// Close ends the subscription; the reaper stops sending to it at once.
func (s *Subscription) Close() {
	s.once.Do(func() {
		s.reaper.mu.Lock()
		delete(s.reaper.subs, s)
		s.reaper.mu.Unlock()
		close(s.done)
	})
}

// StartReaper starts reaping on SIGCHLD.
func StartReaper() *Reaper {
	r := &Reaper{
		// One slot is enough: signals coalesce, and each one reaps all
		// children that have ended.
		sigs:    make(chan os.Signal, 1),
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		subs:    make(map[*Subscription]struct{}),
		claimed: make(map[int]int),
	}
	signal.Notify(r.sigs, unix.SIGCHLD)
	go r.loop()
	// Children may have ended before Notify.
	r.wake()
	return r
}

// Stop stops reaping; exits after Stop stay zombies until someone waits.
func (r *Reaper) Stop() {
	signal.Stop(r.sigs)
	close(r.stop)
}

// Subscribe returns a subscription to the exits reaped from now on.
func (r *Reaper) Subscribe() *Subscription {
	c := make(chan Exit, 32)
	s := &Subscription{C: c, c: c, done: make(chan struct{}), reaper: r}
	r.mu.Lock()
	r.subs[s] = struct{}{}
	r.mu.Unlock()
	return s
}

// Hold keeps the reaper from reaping any child until release is called.
// Take it around calls that start children and wait for them before their
// pids are known to the caller (a Claim made after the child started may
// come after its end). Holds nest; release is idempotent. Orphans and the
// children of Start wait meanwhile, so keep holds short.
func (r *Reaper) Hold() (release func()) {
	r.mu.Lock()
	r.holds++
	r.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			r.holds--
			r.mu.Unlock()
			r.wake()
		})
	}
}

// Claim leaves the exit of pid to the caller, who must wait for it (such
// as with os.Process.Wait) and then call release. Claim it under a Hold
// taken before the process was started. Release is idempotent.
func (r *Reaper) Claim(pid int) (release func()) {
	r.mu.Lock()
	r.claimed[pid]++
	r.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			if r.claimed[pid]--; r.claimed[pid] <= 0 {
				delete(r.claimed, pid)
			}
			r.mu.Unlock()
			r.wake()
		})
	}
}

func (r *Reaper) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *Reaper) loop() {
	for {
		select {
		case <-r.sigs:
		case <-r.kick:
		case <-r.stop:
			return
		}
		r.reap()
	}
}

// mayReap tells whether the reaper may reap pid: no hold is taken and
// nobody claimed it.
func (r *Reaper) mayReap(pid int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.holds == 0 && r.claimed[pid] == 0
}

func (r *Reaper) reap() {
	for {
		pid, err := peekExited()
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			// ECHILD: no children; 0: none has ended yet.
			return
		}
		if !r.mayReap(pid) {
			// The kernel shows the same child until it is reaped: its
			// owner reaps it, and the release wakes the loop again.
			return
		}
		var ws unix.WaitStatus
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || got != pid {
			// Reaped by someone else meanwhile: look again.
			continue
		}
		r.publish(Exit{Pid: pid, Status: exitStatus(ws), Time: time.Now()})
	}
}

// peekExited returns the pid of a child that has ended, without reaping
// it, or 0 when none has.
func peekExited() (int, error) {
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil); err != nil {
		return 0, err
	}
	return siginfoPid(&info), nil
}

// siginfoPid reads si_pid, which on 64-bit Linux follows si_signo,
// si_errno, si_code and padding. WNOHANG with no child ended leaves it 0.
func siginfoPid(info *unix.Siginfo) int {
	return int(*(*int32)(unsafe.Add(unsafe.Pointer(info), 16)))
}

func (r *Reaper) publish(e Exit) {
	r.mu.Lock()
	subs := make([]*Subscription, 0, len(r.subs))
	for s := range r.subs {
		subs = append(subs, s)
	}
	r.mu.Unlock()
	for _, s := range subs {
		select {
		case s.c <- e:
		case <-s.done:
		}
	}
}

func exitStatus(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// ExitStatus encodes ws as shells report it: the code, or 128 plus the
// signal number.
func ExitStatus(ws unix.WaitStatus) int { return exitStatus(ws) }

// Start starts cmd with a subscription taken before the process exists,
// so its exit cannot be missed. The caller must then call Wait, not
// cmd.Wait. cmd's Stdin, Stdout and Stderr must be *os.File or nil: the
// goroutines os/exec starts to copy other readers and writers are joined
// only by cmd.Wait.
func (r *Reaper) Start(cmd *exec.Cmd) (*Subscription, error) {
	s := r.Subscribe()
	if err := cmd.Start(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Wait waits on s for the exit of cmd's process, closes s and returns the
// exit status.
func (r *Reaper) Wait(cmd *exec.Cmd, s *Subscription) (int, error) {
	defer s.Close()
	if cmd.Process == nil {
		return 0, fmt.Errorf("wait: %s not started", cmd.Path)
	}
	pid := cmd.Process.Pid
	for {
		if e := <-s.C; e.Pid == pid {
			// Frees the pidfd os/exec keeps for the process; cmd.Wait,
			// which would have, is not called.
			cmd.Process.Release()
			return e.Status, nil
		}
	}
}
