package supervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/hull-runtime/hull/internal/agentclient"
	"github.com/hull-runtime/hull/internal/state"
)

// Request is one control request from a hull command to a supervisor.
type Request struct {
	Op     string `json:"op"` // start, kill, exec, ps, pause, resume, update
	Signal int    `json:"signal,omitempty"`
	All    bool   `json:"all,omitempty"`
	// ExecID and Process describe an exec; its stdin, stdout and stderr
	// come with the request as file descriptors (SCM_RIGHTS), so the
	// process's IO goes straight to the exec command's own stdio.
	ExecID  string         `json:"execID,omitempty"`
	Process *specs.Process `json:"process,omitempty"`
	Detach  bool           `json:"detach,omitempty"`
	// ConsoleSocket, for a Process with a terminal, is the unix socket
	// that gets the terminal's master; no files come with the request.
	ConsoleSocket string `json:"consoleSocket,omitempty"`
	// Resources are the limits an update sets; what they leave out keeps
	// its value.
	Resources *specs.LinuxResources `json:"resources,omitempty"`
}

// Response answers a Request. An exec gets two: one when the process
// started (Pid), one when it exited (Exited, ExitStatus) unless detached.
type Response struct {
	Error string `json:"error,omitempty"`
	// Kind names the errdefs class of Error, so the caller keeps the class.
	Kind string   `json:"kind,omitempty"`
	Pid  uint32   `json:"pid,omitempty"`
	Pids []uint32 `json:"pids,omitempty"`
	// Processes is what `ps -ef` shows of each of Pids (op "ps").
	Processes  []agentclient.Process `json:"processes,omitempty"`
	Exited     bool                  `json:"exited,omitempty"`
	ExitStatus int                   `json:"exitStatus,omitempty"`
}

// maxMessage bounds a request to the supervisor; maxAnswer an answer,
// which may carry a container's whole process list (the agent client
// takes up to 65,536 pids, about 720 KB of JSON).
const (
	maxMessage = 64 << 10
	maxAnswer  = 1 << 20
)

// Call sends req to the supervisor of the container whose directory is dir.
func Call(ctx context.Context, dir string, req Request) error {
	_, err := CallFor(ctx, dir, req)
	return err
}

// CallFor sends req and returns the supervisor's answer.
func CallFor(ctx context.Context, dir string, req Request) (*Response, error) {
	c, err := dial(ctx, dir, req, nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.next()
}

// Exec asks the supervisor to run req.Process with files as its stdin,
// stdout and stderr; started is called with the pid once it runs. Unless
// req.Detach, it returns the exit status.
func Exec(ctx context.Context, dir string, req Request, files []*os.File, started func(pid uint32)) (int, error) {
	req.Op = "exec"
	c, err := dial(ctx, dir, req, files)
	if err != nil {
		return -1, err
	}
	defer c.Close()
	r, err := c.next()
	if err != nil {
		return -1, err
	}
	started(r.Pid)
	if req.Detach {
		return 0, nil
	}
	c.conn.SetDeadline(time.Time{})
	r, err = c.next()
	if err != nil {
		return -1, err
	}
	return r.ExitStatus, nil
}

type client struct {
	conn *net.UnixConn
	sc   *bufio.Scanner
}

func dial(ctx context.Context, dir string, req Request, files []*os.File) (*client, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", filepath.Join(dir, state.SocketFile))
	if err != nil {
		return nil, fmt.Errorf("container supervisor is not reachable (%v): %w", err, errdefs.ErrUnavailable)
	}
	conn := c.(*net.UnixConn)
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	} else {
		conn.SetDeadline(time.Now().Add(2 * time.Minute))
	}
	b, err := json.Marshal(req)
	if err != nil {
		conn.Close()
		return nil, err
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := conn.WriteMsgUnix(append(b, '\n'), oob, nil); err != nil {
		conn.Close()
		return nil, err
	}
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 4096), maxAnswer)
	return &client{conn: conn, sc: sc}, nil
}

func (c *client) next() (*Response, error) {
	if !c.sc.Scan() {
		return nil, fmt.Errorf("container supervisor closed the connection: %w", errdefs.ErrUnavailable)
	}
	var r Response
	if err := json.Unmarshal(c.sc.Bytes(), &r); err != nil {
		return nil, fmt.Errorf("container supervisor: malformed answer: %w", err)
	}
	if r.Error != "" {
		return nil, &answerError{msg: r.Error, kind: kindError(r.Kind)}
	}
	return &r, nil
}

// answerError is an error the supervisor answered with: its text already
// ends with its kind's (it was wrapped there), which wrapping here again
// would repeat ("...: failed precondition: failed precondition").
type answerError struct {
	msg  string
	kind error
}

func (e *answerError) Error() string { return e.msg }
func (e *answerError) Unwrap() error { return e.kind }

func (c *client) Close() error { return c.conn.Close() }

var kinds = map[string]error{
	"not_found":           errdefs.ErrNotFound,
	"invalid_argument":    errdefs.ErrInvalidArgument,
	"failed_precondition": errdefs.ErrFailedPrecondition,
	"already_exists":      errdefs.ErrAlreadyExists,
}

func kindError(kind string) error {
	if e, ok := kinds[kind]; ok {
		return e
	}
	return errdefs.ErrUnknown
}

func kindOf(err error) string {
	for k, e := range kinds {
		if errors.Is(err, e) {
			return k
		}
	}
	return "unknown"
}
