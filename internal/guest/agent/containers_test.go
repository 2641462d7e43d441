package agent

import (
	"context"
	"fmt"
	"testing"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	api "github.com/hull-runtime/hull/api/agent/v1"
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
