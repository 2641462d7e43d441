package agent

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	api "github.com/hull-runtime/hull/api/agent/v1"
)

// serveTest serves svc on a unix socket and returns a client of it.
func serveTest(t *testing.T, svc api.AgentService) api.AgentService {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	api.RegisterAgentService(srv, svc)
	go srv.Serve(context.Background(), l)
	t.Cleanup(func() { srv.Close() })

	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	client := ttrpc.NewClient(conn)
	t.Cleanup(func() { client.Close() })
	return api.NewAgentClient(client)
}

func TestService(t *testing.T) {
	var destroyed atomic.Int32
	svc := NewService(ServiceConfig{
		Version:   "v1.2.3",
		Commit:    "abc",
		Modules:   []string{"virtio_ring", "virtio_console"},
		OnDestroy: func() { destroyed.Add(1) },
	}).OnChannel("serial")
	c := serveTest(t, svc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	check, err := c.Check(ctx, &api.CheckRequest{})
	if err != nil || check.Status != api.CheckResponse_SERVING {
		t.Errorf("Check = %v, %v", check, err)
	}

	v, err := c.Version(ctx, &api.VersionRequest{})
	if err != nil || v.AgentVersion != "v1.2.3" || v.Commit != "abc" || v.ApiVersion != api.APIVersion {
		t.Errorf("Version = %v, %v", v, err)
	}

	d, err := c.GetGuestDetails(ctx, &api.GetGuestDetailsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if d.KernelRelease == "" || d.MemTotalBytes == 0 || d.MemAvailableBytes == 0 ||
		d.MemAvailableBytes > d.MemTotalBytes || d.OnlineCpus == 0 || d.UptimeMs == 0 {
		t.Errorf("GetGuestDetails = %v", d)
	}
	if d.AgentVersion != "v1.2.3" || d.Channel != "serial" ||
		!reflect.DeepEqual(d.LoadedModules, []string{"virtio_ring", "virtio_console"}) {
		t.Errorf("GetGuestDetails = %v", d)
	}

	if destroyed.Load() != 0 {
		t.Fatal("destroyed before DestroySandbox")
	}
	if _, err := c.DestroySandbox(ctx, &api.DestroySandboxRequest{}); err != nil {
		t.Fatal(err)
	}
	if destroyed.Load() != 1 {
		t.Errorf("OnDestroy called %d times", destroyed.Load())
	}
}

func TestServiceChannels(t *testing.T) {
	base := NewService(ServiceConfig{Version: "v"})
	serial, vsock := base.OnChannel("serial"), base.OnChannel("vsock")
	ctx := context.Background()
	for svc, want := range map[*Service]string{base: "", serial: "serial", vsock: "vsock"} {
		d, err := svc.GetGuestDetails(ctx, &api.GetGuestDetailsRequest{})
		if err != nil || d.Channel != want {
			t.Errorf("channel %q, %v; want %q", d.GetChannel(), err, want)
		}
	}
}

func TestServiceCannotPowerOff(t *testing.T) {
	c := serveTest(t, NewService(ServiceConfig{}))
	_, err := c.DestroySandbox(context.Background(), &api.DestroySandboxRequest{})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("DestroySandbox without OnDestroy: %v", err)
	}
}

// TestMain lets TestMainTestMode run Main in a child process, since Main
// exits.
func TestMain(m *testing.M) {
	if os.Getenv("HULL_AGENT_RUN_MAIN") == "1" {
		Main("test-version", "test-commit")
		return
	}
	os.Exit(m.Run())
}

// Main in test mode serves on a unix socket and exits on DestroySandbox,
// after the answer has come back.
func TestMainTestMode(t *testing.T) {
	if os.Getpid() == 1 {
		t.Skip("running as PID 1")
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "HULL_AGENT_RUN_MAIN=1", TestSocketEnv+"="+sock, TestCmdlineEnv+"=hull.debug=1")
	cmd.Stderr = &testWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer cmd.Process.Kill()

	var conn net.Conn
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var err error
		if conn, err = net.Dial("unix", sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent does not listen: %v", err)
		}
	}
	client := ttrpc.NewClient(conn)
	defer client.Close()
	c := api.NewAgentClient(client)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	v, err := c.Version(ctx, &api.VersionRequest{})
	if err != nil || v.AgentVersion != "test-version" || v.Commit != "test-commit" {
		t.Errorf("Version = %v, %v", v, err)
	}
	d, err := c.GetGuestDetails(ctx, &api.GetGuestDetailsRequest{})
	if err != nil || d.Channel != "unix" {
		t.Errorf("GetGuestDetails = %v, %v", d, err)
	}
	if _, err := c.DestroySandbox(ctx, &api.DestroySandboxRequest{}); err != nil {
		t.Fatalf("DestroySandbox: %v", err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("agent exited with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not exit after DestroySandbox")
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
}

type testWriter struct{ t *testing.T }

func (w *testWriter) Write(b []byte) (int, error) {
	w.t.Logf("agent: %s", b)
	return len(b), nil
}
