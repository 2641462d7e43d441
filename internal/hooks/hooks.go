// Package hooks runs OCI hooks on the host. In a VM runtime every hook
// runs on the host, whoever drives the container (the CLI's supervisor or
// the containerd shim): prestart and createRuntime before the VM boots or
// the container is created (so that they can prepare the network
// namespace the VM mirrors), createContainer and startContainer around the
// guest's calls, poststart after the start, poststop once the container is
// gone.
package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// defaultHookTimeout bounds a hook that names no timeout: a hook that
// hangs must not hang the runtime.
const defaultHookTimeout = 2 * time.Minute

// Poststop runs the poststop hooks of a container's spec, once the
// container is gone: all of them, as the runtime spec says, a failure
// being only a warning.
func Poststop(ctx context.Context, spec *specs.Spec, st specs.State) error {
	if spec.Hooks == nil {
		return nil
	}
	return RunAll(ctx, "poststop", spec.Hooks.Poststop, st)
}

// RunAll runs hooks of one kind in order as Run does, but goes on after a
// failure and returns all failures joined: the runtime spec's poststart
// and poststop hooks, whose failures are warnings and must not keep the
// hooks after them from running.
func RunAll(ctx context.Context, kind string, hooks []specs.Hook, st specs.State) error {
	if len(hooks) == 0 {
		return nil
	}
	stateJSON, err := json.Marshal(st)
	if err != nil {
		return err
	}
	var errs []error
	for i, h := range hooks {
		if err := runHook(ctx, h, stateJSON); err != nil {
			errs = append(errs, fmt.Errorf("%s hook %d (%s): %w", kind, i, h.Path, err))
		}
	}
	return errors.Join(errs...)
}

// Run runs hooks of one kind in order, each with the container's state on
// its stdin, as the runtime spec says. The first failure stops the run and
// is returned.
func Run(ctx context.Context, kind string, hooks []specs.Hook, st specs.State) error {
	if len(hooks) == 0 {
		return nil
	}
	stateJSON, err := json.Marshal(st)
	if err != nil {
		return err
	}
	for i, h := range hooks {
		if err := runHook(ctx, h, stateJSON); err != nil {
			return fmt.Errorf("%s hook %d (%s): %w", kind, i, h.Path, err)
		}
	}
	return nil
}

func runHook(ctx context.Context, h specs.Hook, state []byte) error {
	timeout := defaultHookTimeout
	if h.Timeout != nil {
		if *h.Timeout <= 0 {
			return fmt.Errorf("timeout %d must be positive: %w", *h.Timeout, errdefs.ErrInvalidArgument)
		}
		timeout = time.Duration(*h.Timeout) * time.Second
	}
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(hctx, h.Path)
	// A group of its own, killed whole: a hook's children (sh -c 'a; b')
	// must not outlive its timeout.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if len(h.Args) > 0 {
		// args[0] is the hook's argv[0], as in execv.
		cmd.Args = h.Args
	}
	cmd.Env = h.Env
	cmd.Stdin = bytes.NewReader(state)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		return fmt.Errorf("cancelled: %w", context.Cause(ctx))
	}
	if hctx.Err() != nil {
		return fmt.Errorf("timed out after %s: %w", timeout, errdefs.ErrFailedPrecondition)
	}
	if err != nil {
		msg := strings.TrimSpace(out.String())
		if len(msg) > 512 {
			msg = msg[len(msg)-512:]
		}
		if msg == "" {
			return fmt.Errorf("%v: %w", err, errdefs.ErrFailedPrecondition)
		}
		return fmt.Errorf("%v: %s: %w", err, msg, errdefs.ErrFailedPrecondition)
	}
	return nil
}
