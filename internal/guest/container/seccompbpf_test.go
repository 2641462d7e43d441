//go:build cgo && seccomp

package container

import (
	"encoding/hex"
	"errors"
	"testing"

	"github.com/opencontainers/runc/libcontainer/configs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestSeccompProgram(t *testing.T) {
	eperm := uint(unix.EPERM)
	cfg := &configs.Seccomp{
		DefaultAction:   configs.Errno,
		DefaultErrnoRet: &eperm,
		Architectures:   []string{"amd64"},
		Flags:           []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagLog},
		Syscalls: []*configs.Syscall{
			{Name: "read", Action: configs.Allow},
			{Name: "no_such_syscall", Action: configs.Allow},
			{Name: "personality", Action: configs.Allow, Args: []*configs.Arg{{Index: 0, Value: 0, Op: configs.EqualTo}}},
		},
	}
	prog, flags, err := seccompProgram(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(prog)
	if err != nil || len(b) == 0 || len(b)%8 != 0 {
		t.Fatalf("program of %d bytes (%v)", len(b), err)
	}
	if flags != unix.SECCOMP_FILTER_FLAG_LOG {
		t.Errorf("flags %#x", flags)
	}

	cfg.Flags = []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_NO_SUCH"}
	if _, _, err := seccompProgram(cfg); !errors.Is(err, errUnsupported) {
		t.Errorf("unknown flag: %v", err)
	}
	cfg.Flags = nil
	cfg.Syscalls = append(cfg.Syscalls, &configs.Syscall{Name: "mkdir", Action: configs.Notify})
	if _, _, err := seccompProgram(cfg); !errors.Is(err, errUnsupported) {
		t.Errorf("notify: %v", err)
	}
}
