package supervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"

	"github.com/hull-runtime/hull/internal/state"
)

// Request is one control request from a hull command to a supervisor.
type Request struct {
	Op     string `json:"op"` // start, kill
	Signal int    `json:"signal,omitempty"`
	All    bool   `json:"all,omitempty"`
}

// Response answers a Request.
type Response struct {
	Error string `json:"error,omitempty"`
	// Kind names the errdefs class of Error, so the caller keeps the class.
	Kind string `json:"kind,omitempty"`
}

const maxMessage = 64 << 10

// Call sends req to the supervisor of the container whose directory is dir.
func Call(ctx context.Context, dir string, req Request) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", filepath.Join(dir, state.SocketFile))
	if err != nil {
		return fmt.Errorf("container supervisor is not reachable (%v): %w", err, errdefs.ErrUnavailable)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	} else {
		conn.SetDeadline(time.Now().Add(2 * time.Minute))
	}
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return err
	}
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 4096), maxMessage)
	if !sc.Scan() {
		return fmt.Errorf("container supervisor closed the connection: %w", errdefs.ErrUnavailable)
	}
	var r Response
	if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
		return fmt.Errorf("container supervisor: malformed answer: %w", err)
	}
	if r.Error == "" {
		return nil
	}
	return fmt.Errorf("%s: %w", r.Error, kindError(r.Kind))
}

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
