package agent

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	api "github.com/hull-runtime/hull/api/agent/v1"
	"github.com/hull-runtime/hull/internal/guest/container"
)

func TestToStatus(t *testing.T) {
	for err, want := range map[error]codes.Code{
		fmt.Errorf("x: %w", errdefs.ErrInvalidArgument):    codes.InvalidArgument,
		fmt.Errorf("x: %w", errdefs.ErrNotFound):           codes.NotFound,
		fmt.Errorf("x: %w", errdefs.ErrAlreadyExists):      codes.AlreadyExists,
		fmt.Errorf("x: %w", errdefs.ErrFailedPrecondition): codes.FailedPrecondition,
		fmt.Errorf("x: %w", context.DeadlineExceeded):      codes.DeadlineExceeded,
		fmt.Errorf("libcontainer said no"):                 codes.Unknown,
	} {
		if got := status.Code(toStatus(err)); got != want {
			t.Errorf("toStatus(%v) = %s, want %s", err, got, want)
		}
	}
}

// Without an engine the container calls say so.
func TestNoEngine(t *testing.T) {
	svc := NewService(ServiceConfig{})
	_, err := svc.CreateContainer(context.Background(), &api.CreateContainerRequest{ContainerId: "c"})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("CreateContainer without engine: %v", err)
	}
}

// GetOOMEvent ends its wait without an event after oomPoll, and with the
// caller's error when the caller's context ends first.
func TestGetOOMEventPoll(t *testing.T) {
	defer func(d time.Duration) { oomPoll = d }(oomPoll)
	oomPoll = 50 * time.Millisecond
	svc := NewService(ServiceConfig{Engine: container.NewEngine(container.Config{StateRoot: t.TempDir()})})
	start := time.Now()
	r, err := svc.GetOOMEvent(context.Background(), &api.GetOOMEventRequest{})
	if err != nil || r.ContainerId != "" || r.Seq != 0 {
		t.Errorf("GetOOMEvent without events = %v, %v", r, err)
	}
	if d := time.Since(start); d < oomPoll {
		t.Errorf("answered after %s, before the poll's end", d)
	}
	oomPoll = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := svc.GetOOMEvent(ctx, &api.GetOOMEventRequest{}); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("GetOOMEvent past the caller's deadline: %v", err)
	}
}
