package initsys

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"time"

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
// kernel hands to PID 1, so that none stays a zombie. Since it waits for
// any pid, it takes the exit status that exec.Cmd.Wait would have
// collected: code that starts processes must use Start and Wait below (or
// Subscribe) and never exec.Cmd.Wait.
//
// Exits are fanned out to all subscribers, as containerd's reaper does;
// each subscriber picks the pids it started.
type Reaper struct {
	sigs chan os.Signal

	mu   sync.Mutex
	subs map[*Subscription]struct{} // guarded by mu
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
		sigs: make(chan os.Signal, 1),
		subs: make(map[*Subscription]struct{}),
	}
	signal.Notify(r.sigs, unix.SIGCHLD)
	go r.loop()
	// Children may have ended before Notify.
	select {
	case r.sigs <- unix.SIGCHLD:
	default:
	}
	return r
}

// Stop stops reaping; exits after Stop stay zombies until someone waits.
func (r *Reaper) Stop() {
	signal.Stop(r.sigs)
	close(r.sigs)
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

func (r *Reaper) loop() {
	for range r.sigs {
		r.reap()
	}
}

func (r *Reaper) reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			// ECHILD: no children; 0: none has ended yet.
			return
		}
		r.publish(Exit{Pid: pid, Status: exitStatus(ws), Time: time.Now()})
	}
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
