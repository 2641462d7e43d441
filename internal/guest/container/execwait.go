package container

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// How long Start waits for the init to execute the program, and how often
// it looks: every look costs the one vCPU the program needs.
const (
	execWaitLimit = 2 * time.Second
	execWaitPoll  = 2 * time.Millisecond
)

// initComm is the name libcontainer's nsexec gives a container's init
// process until it executes the user's program.
const initComm = "runc:[2:INIT]"

// waitExec waits until process pid has executed the user's program, has
// exited, or limit has passed, and says which of the first two happened.
//
// libcontainer's start returns once the init has been told to go on, before
// it executes the program. On a fast host the gap is microseconds; a TCG
// guest needs tens of milliseconds more, and a signal sent in that gap
// meets a process that has not set up its handlers yet (a shell's trap; an
// init, which ignores what it does not handle). So start returns only once
// the program runs, as users of runc are used to.
//
// It returns false with no error only when it saw the process end as the
// init (a zombie keeps the name it had); a process already reaped is
// errInitGone, since it may have run its program first.
func waitExec(pid int, limit time.Duration, poll time.Duration) (execd bool, err error) {
	path := fmt.Sprintf("/proc/%d/stat", pid)
	deadline := time.Now().Add(limit)
	for {
		data, err := os.ReadFile(path)
		if err != nil {
			if os.IsNotExist(err) || errors.Is(err, syscall.ESRCH) {
				return false, errInitGone
			}
			return false, err
		}
		comm, state, err := parseStat(data)
		if err != nil {
			return false, err
		}
		switch {
		case comm != initComm:
			return true, nil
		case state == 'Z' || state == 'X':
			return false, nil
		case time.Now().After(deadline):
			return false, fmt.Errorf("process %d still in container init after %s", pid, limit)
		}
		time.Sleep(poll)
	}
}

// errInitGone: the process was reaped before it was seen to run its
// program or to end in the init.
var errInitGone = errors.New("the container's init was reaped before it was seen")

// parseStat returns the command name and state of a /proc/PID/stat line.
// The name may hold spaces and parentheses, so it ends at the last ')'.
func parseStat(data []byte) (comm string, state byte, err error) {
	open := bytes.IndexByte(data, '(')
	end := bytes.LastIndexByte(data, ')')
	if open < 0 || end < open || end+2 >= len(data) {
		return "", 0, fmt.Errorf("malformed /proc stat line %q", data)
	}
	return string(data[open+1 : end]), data[end+2], nil
}
