package integration

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hull-runtime/hull/internal/sandbox"
)

func TestContainerRunsInVM(t *testing.T) {
	s, _ := bootWithShare(t)
	ctx := testContext(t)
	bundle := busyboxBundle(t)
	var stdout, stderr bytes.Buffer
	c, err := s.CreateContainer(ctx, sandbox.ContainerConfig{
		ID: "c1", Bundle: bundle,
		Spec:  busyboxSpec("sh", "-c", "echo hi; echo oops >&2; hostname; exit 3"),
		Stdio: sandbox.Stdio{Stdout: &stdout, Stderr: &stderr},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	status, err := c.Init().Wait(wctx)
	if err != nil {
		t.Fatal(err)
	}
	if status != 3 {
		t.Errorf("exit status %d, want 3", status)
	}
	if got := stdout.String(); got != "hi\nhull\n" {
		t.Errorf("stdout %q, want \"hi\\nhull\\n\"", got)
	}
	if got := stderr.String(); got != "oops\n" {
		t.Errorf("stderr %q", got)
	}
	if err := c.Delete(ctx, false); err != nil {
		t.Fatal(err)
	}
}

func TestContainerStdinAndSignal(t *testing.T) {
	s, _ := bootWithShare(t)
	ctx := testContext(t)
	bundle := busyboxBundle(t)
	var out bytes.Buffer
	c, err := s.CreateContainer(ctx, sandbox.ContainerConfig{
		ID: "cat", Bundle: bundle, Spec: busyboxSpec("sh", "-c", "cat; exit 5"),
		Stdio: sandbox.Stdio{Stdin: strings.NewReader("through the VM\n"), Stdout: &out},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	status, err := c.Init().Wait(ctx)
	if err != nil || status != 5 || out.String() != "through the VM\n" {
		t.Errorf("cat: status %d, out %q, err %v", status, out.String(), err)
	}
	if err := c.Delete(ctx, false); err != nil {
		t.Fatal(err)
	}

	sl, err := s.CreateContainer(ctx, sandbox.ContainerConfig{ID: "sleeper", Bundle: busyboxBundle(t), Spec: busyboxSpec("sleep", "100")})
	if err != nil {
		t.Fatal(err)
	}
	if err := sl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sl.Delete(ctx, false); err == nil {
		t.Error("deleted a running container without force")
	}
	// The container's init is PID 1 of its pid namespace: without a
	// handler it ignores SIGTERM (as under runc); SIGKILL always works.
	if err := sl.Signal(ctx, 9, false); err != nil {
		t.Fatal(err)
	}
	if status, err := sl.Init().Wait(ctx); err != nil || status != 128+9 {
		t.Errorf("SIGKILL: status %d, err %v", status, err)
	}
	if err := sl.Delete(ctx, false); err != nil {
		t.Fatal(err)
	}
}
