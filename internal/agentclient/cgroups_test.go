package agentclient

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	agent "github.com/hull-runtime/hull/api/agent/v1"
)

// fakeAgent answers the cgroup calls as a test tells it to; the other
// calls are not implemented.
type fakeAgent struct {
	agent.AgentService

	mu    sync.Mutex
	stats *agent.StatsContainerResponse
	// oom answers GetOOMEvent calls in turn; the last is repeated.
	oom     []func(ctx context.Context, after uint64) (*agent.GetOOMEventResponse, error)
	oomCall int
	afters  []uint64
	updated []byte
}

func (f *fakeAgent) PauseContainer(_ context.Context, r *agent.PauseContainerRequest) (*agent.PauseContainerResponse, error) {
	if r.ContainerId != "c" {
		return nil, status.Error(codes.NotFound, "no such container")
	}
	return &agent.PauseContainerResponse{}, nil
}

func (f *fakeAgent) ResumeContainer(_ context.Context, r *agent.ResumeContainerRequest) (*agent.ResumeContainerResponse, error) {
	return nil, status.Error(codes.FailedPrecondition, "not paused")
}

func (f *fakeAgent) UpdateContainer(_ context.Context, r *agent.UpdateContainerRequest) (*agent.UpdateContainerResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.updated = r.Resources
	return &agent.UpdateContainerResponse{}, nil
}

func (f *fakeAgent) StatsContainer(context.Context, *agent.StatsContainerRequest) (*agent.StatsContainerResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats, nil
}

func (f *fakeAgent) GetOOMEvent(ctx context.Context, r *agent.GetOOMEventRequest) (*agent.GetOOMEventResponse, error) {
	f.mu.Lock()
	f.afters = append(f.afters, r.AfterSeq)
	answer := f.oom[min(f.oomCall, len(f.oom)-1)]
	f.oomCall++
	f.mu.Unlock()
	return answer(ctx, r.AfterSeq)
}

func (f *fakeAgent) Version(context.Context, *agent.VersionRequest) (*agent.VersionResponse, error) {
	return &agent.VersionResponse{ApiVersion: agent.APIVersion}, nil
}

// serve serves f and returns a client for it with the given timeout.
func serve(t *testing.T, f *fakeAgent, timeout time.Duration) *Client {
	t.Helper()
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	agent.RegisterAgentService(srv, f)
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(context.Background(), l)
	t.Cleanup(func() { srv.Close() })
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	c := New(conn, timeout)
	t.Cleanup(func() { c.Close() })
	return c
}

func event(id string, seq uint64) func(context.Context, uint64) (*agent.GetOOMEventResponse, error) {
	return func(context.Context, uint64) (*agent.GetOOMEventResponse, error) {
		return &agent.GetOOMEventResponse{ContainerId: id, Seq: seq}, nil
	}
}

// waitThen answers with an event after d.
func waitThen(d time.Duration, id string, seq uint64) func(context.Context, uint64) (*agent.GetOOMEventResponse, error) {
	return func(ctx context.Context, _ uint64) (*agent.GetOOMEventResponse, error) {
		select {
		case <-time.After(d):
			return &agent.GetOOMEventResponse{ContainerId: id, Seq: seq}, nil
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
}

func TestPauseResumeUpdate(t *testing.T) {
	f := &fakeAgent{}
	c := serve(t, f, time.Second)
	ctx := context.Background()
	if err := c.PauseContainer(ctx, "c"); err != nil {
		t.Error(err)
	}
	if err := c.PauseContainer(ctx, "x"); !errdefs.IsNotFound(err) {
		t.Errorf("pause unknown: %v", err)
	}
	if err := c.ResumeContainer(ctx, "c"); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("resume: %v", err)
	}
	if err := c.UpdateContainer(ctx, "c", []byte(`{"pids":{"limit":5}}`)); err != nil || string(f.updated) != `{"pids":{"limit":5}}` {
		t.Errorf("update: %v, sent %q", err, f.updated)
	}
	if err := c.UpdateContainer(ctx, "c", make([]byte, MaxResourcesSize+1)); !errdefs.IsInvalidArgument(err) {
		t.Errorf("update with too much: %v", err)
	}
}

func TestStatsContainer(t *testing.T) {
	f := &fakeAgent{}
	c := serve(t, f, time.Second)
	ctx := context.Background()

	// Missing messages are filled in.
	f.stats = &agent.StatsContainerResponse{CgroupVersion: 2}
	r, err := c.StatsContainer(ctx, "c")
	if err != nil || r.Cpu == nil || r.Memory == nil || r.Memory.Events == nil || r.Memory.Stat == nil || r.Pids == nil {
		t.Fatalf("StatsContainer = %v, %v", r, err)
	}
	f.stats = &agent.StatsContainerResponse{CgroupVersion: 2, Memory: &agent.MemoryStats{UsageBytes: 5, Stat: map[string]uint64{"anon": 1}}}
	if r, err := c.StatsContainer(ctx, "c"); err != nil || r.Memory.UsageBytes != 5 || r.Memory.Stat["anon"] != 1 {
		t.Errorf("StatsContainer = %v, %v", r, err)
	}

	many := map[string]uint64{}
	for i := range maxMemoryStat + 1 {
		many[strings.Repeat("k", i%60+1)+string(rune('a'+i/60))] = 1
	}
	for name, bad := range map[string]*agent.StatsContainerResponse{
		"version":    {CgroupVersion: 3},
		"no version": {},
		"entries":    {CgroupVersion: 2, Memory: &agent.MemoryStats{Stat: many}},
		"long key":   {CgroupVersion: 2, Memory: &agent.MemoryStats{Stat: map[string]uint64{strings.Repeat("a", maxStatKey+1): 1}}},
		"odd key":    {CgroupVersion: 2, Memory: &agent.MemoryStats{Stat: map[string]uint64{"anon\n": 1}}},
	} {
		f.stats = bad
		if _, err := c.StatsContainer(ctx, "c"); !errdefs.IsOutOfRange(err) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestWaitOOMEvent(t *testing.T) {
	ctx := context.Background()

	t.Run("in order, no timeout", func(t *testing.T) {
		f := &fakeAgent{oom: []func(context.Context, uint64) (*agent.GetOOMEventResponse, error){
			// Longer than the client's timeout.
			waitThen(300*time.Millisecond, "a", 1),
			event("b", 3),
		}}
		c := serve(t, f, 50*time.Millisecond)
		for _, want := range []string{"a", "b"} {
			if id, err := c.WaitOOMEvent(ctx); err != nil || id != want {
				t.Fatalf("WaitOOMEvent = %q, %v; want %q", id, err, want)
			}
		}
		if f.afters[0] != 0 || f.afters[1] != 1 {
			t.Errorf("cursors sent: %v", f.afters)
		}
	})

	t.Run("empty answers", func(t *testing.T) {
		f := &fakeAgent{oom: []func(context.Context, uint64) (*agent.GetOOMEventResponse, error){
			event("", 0), event("", 0), event("a", 1),
		}}
		c := serve(t, f, time.Second)
		start := time.Now()
		if id, err := c.WaitOOMEvent(ctx); err != nil || id != "a" {
			t.Fatalf("WaitOOMEvent = %q, %v", id, err)
		}
		// A guest that answers at once with nothing is asked again only
		// after minOOMPoll.
		if d := time.Since(start); d < 2*minOOMPoll-100*time.Millisecond {
			t.Errorf("two empty answers took only %s", d)
		}
	})

	t.Run("cancel", func(t *testing.T) {
		f := &fakeAgent{oom: []func(context.Context, uint64) (*agent.GetOOMEventResponse, error){
			waitThen(time.Hour, "a", 1),
		}}
		c := serve(t, f, time.Second)
		short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		if _, err := c.WaitOOMEvent(short); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("WaitOOMEvent past ctx: %v", err)
		}
		// The next call asks from the same place.
		f.mu.Lock()
		f.oom = append(f.oom, event("a", 1))
		f.mu.Unlock()
		if id, err := c.WaitOOMEvent(ctx); err != nil || id != "a" {
			t.Errorf("WaitOOMEvent = %q, %v", id, err)
		}
		if f.afters[0] != 0 || f.afters[1] != 0 {
			t.Errorf("cursors sent: %v", f.afters)
		}
	})

	t.Run("other calls meanwhile", func(t *testing.T) {
		f := &fakeAgent{oom: []func(context.Context, uint64) (*agent.GetOOMEventResponse, error){
			waitThen(time.Hour, "a", 1),
		}}
		c := serve(t, f, time.Second)
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			_, err := c.WaitOOMEvent(wctx)
			done <- err
		}()
		time.Sleep(50 * time.Millisecond)
		if _, err := c.Version(ctx); err != nil {
			t.Errorf("Version while WaitOOMEvent waits: %v", err)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("WaitOOMEvent after cancel: %v", err)
		}
	})

	t.Run("bad answers", func(t *testing.T) {
		for name, tc := range map[string]struct {
			answers []func(context.Context, uint64) (*agent.GetOOMEventResponse, error)
			then    string // what a further call returns
		}{
			"bad id":     {answers: []func(context.Context, uint64) (*agent.GetOOMEventResponse, error){event("../x", 1), event("b", 2)}, then: "b"},
			"long id":    {answers: []func(context.Context, uint64) (*agent.GetOOMEventResponse, error){event(strings.Repeat("a", 65), 1), event("b", 2)}, then: "b"},
			"no seq":     {answers: []func(context.Context, uint64) (*agent.GetOOMEventResponse, error){event("a", 0)}},
			"seq behind": {answers: []func(context.Context, uint64) (*agent.GetOOMEventResponse, error){event("a", 2), event("a", 2)}},
		} {
			f := &fakeAgent{oom: tc.answers}
			c := serve(t, f, time.Second)
			if name == "seq behind" {
				if id, err := c.WaitOOMEvent(ctx); err != nil || id != "a" {
					t.Fatalf("%s: first call = %q, %v", name, id, err)
				}
			}
			if id, err := c.WaitOOMEvent(ctx); !errdefs.IsOutOfRange(err) {
				t.Errorf("%s: WaitOOMEvent = %q, %v", name, id, err)
			}
			if tc.then != "" {
				if id, err := c.WaitOOMEvent(ctx); err != nil || id != tc.then {
					t.Errorf("%s: next WaitOOMEvent = %q, %v", name, id, err)
				}
			}
		}
	})
}

// Errors that are no status of the agent keep their identity.
func TestNativeKeepsLocalErrors(t *testing.T) {
	if err := native("x", context.Canceled); !errors.Is(err, context.Canceled) {
		t.Errorf("native(Canceled) = %v", err)
	}
	if err := native("x", ttrpc.ErrClosed); !errors.Is(err, ttrpc.ErrClosed) {
		t.Errorf("native(ErrClosed) = %v", err)
	}
	if err := native("x", status.Error(codes.NotFound, "gone")); !errdefs.IsNotFound(err) {
		t.Errorf("native(NotFound) = %v", err)
	}
}
