package agentclient

import (
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// A guest's error status keeps its code and a bounded, printable message;
// its details are never decoded. Before, a status nesting statuses in its
// details made the host allocate quadratically in the reply's size (a
// 116 KiB reply took 282 MiB, a 468 KiB one 5.4 GiB).
func TestNativeDropsDetails(t *testing.T) {
	// Statuses nested in the details, 4000 deep: 120 KB on the wire, which
	// took 550 MiB to translate before.
	b, _ := proto.Marshal(&spb.Status{Code: int32(codes.Internal), Message: "x"})
	for i := 0; i < 4000; i++ {
		b, _ = proto.Marshal(&spb.Status{Code: int32(codes.Internal), Details: []*anypb.Any{{TypeUrl: "/google.rpc.Status", Value: b}}})
	}
	msg := "\x1b[2J\x1b[31mfake\nlevel=error msg=forged " + strings.Repeat("x", 4000)
	nested := &spb.Status{Code: int32(codes.NotFound), Message: msg, Details: []*anypb.Any{{TypeUrl: "/google.rpc.Status", Value: b}}}
	bomb := status.FromProto(nested)

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	got := native("create container", bomb.Err())
	runtime.ReadMemStats(&after)

	if !errdefs.IsNotFound(got) {
		t.Errorf("code lost: %v", got)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Errorf("translating the error allocated %d bytes", alloc)
	}
	s := got.Error()
	if len(s) > maxErrorMessage+200 {
		t.Errorf("message of %d bytes kept", len(s))
	}
	if strings.ContainsAny(s, "\x1b\n") || !strings.Contains(s, `\x1b[2J`) || !strings.Contains(s, `fake\nlevel=error`) {
		t.Errorf("control characters not escaped: %.200q", s)
	}
	if !strings.HasPrefix(s, "agent create container: ") {
		t.Errorf("call not named: %.100q", s)
	}

	// Errors that are no status stay as they are.
	plain := errors.New("connection closed")
	if got := native("wait", plain); !errors.Is(got, plain) {
		t.Errorf("plain error: %v", got)
	}
}

func TestPrintable(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"container \"a\" not found", 100, "container \"a\" not found"},
		{"tab\tand bell\a", 100, `tab\tand bell\a`},
		{"bad \xff byte", 100, `bad \xff byte`},
		{"ünïcödé ✓", 100, "ünïcödé ✓"},
		{"abcdef", 3, "abc..."},
		{"ab✓", 4, "ab..."}, // the cut splits ✓: its first byte goes
		{"\u202eevil", 100, `\u202eevil`},
	} {
		if got := Printable(tc.in, tc.max); got != tc.want {
			t.Errorf("Printable(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
}

func TestCheckPid(t *testing.T) {
	for pid, ok := range map[uint32]bool{0: false, 1: true, 4194304: true, 4194305: false, 1<<32 - 1: false} {
		if _, err := checkPid("create container", pid); (err == nil) != ok {
			t.Errorf("pid %d: %v", pid, err)
		}
	}
}
