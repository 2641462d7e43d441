//go:build cgo && seccomp

package container

import (
	"encoding/binary"
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

// The program, run in a BPF interpreter on seccomp_data: allowed calls
// pass, known ones the profile does not allow get its errno, and calls
// numbered past the last it names get ENOSYS.
func TestSeccompProgramENOSYS(t *testing.T) {
	eperm := uint(unix.EPERM)
	cfg := &configs.Seccomp{
		DefaultAction:   configs.Errno,
		DefaultErrnoRet: &eperm,
		Architectures:   []string{"amd64"},
		Syscalls: []*configs.Syscall{
			{Name: "read", Action: configs.Allow},  // 0
			{Name: "write", Action: configs.Allow}, // 1
			{Name: "close", Action: configs.Allow}, // 3
		},
	}
	prog, _, err := seccompProgram(cfg)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(prog)
	run := func(nr uint32) uint32 {
		data := make([]byte, 64) // struct seccomp_data, host order
		binary.LittleEndian.PutUint32(data[0:], nr)
		binary.LittleEndian.PutUint32(data[4:], unix.AUDIT_ARCH_X86_64)
		return runBPF(t, raw, data)
	}
	for nr, want := range map[uint32]uint32{
		0:   unix.SECCOMP_RET_ALLOW,
		3:   unix.SECCOMP_RET_ALLOW,
		2:   unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM),
		435: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS), // clone3
	} {
		if got := run(nr); got != want {
			t.Errorf("syscall %d: %#x, want %#x", nr, got, want)
		}
	}
}

// runBPF interprets the classic BPF that seccomp filters use here (loads of
// seccomp_data words, K jumps and returns, AND), in host byte order.
func runBPF(t *testing.T, prog, data []byte) uint32 {
	t.Helper()
	var a uint32
	for pc := 0; pc*8 < len(prog); pc++ {
		in := prog[pc*8:]
		code, jt, jf, k := binary.LittleEndian.Uint16(in), int(in[2]), int(in[3]), binary.LittleEndian.Uint32(in[4:])
		cond := func(ok bool) {
			if ok {
				pc += jt
			} else {
				pc += jf
			}
		}
		switch code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			a = binary.LittleEndian.Uint32(data[k:])
		case unix.BPF_ALU | unix.BPF_AND | unix.BPF_K:
			a &= k
		case unix.BPF_JMP | unix.BPF_JA:
			pc += int(k)
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K:
			cond(a == k)
		case unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K:
			cond(a > k)
		case unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K:
			cond(a >= k)
		case unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K:
			cond(a&k != 0)
		case unix.BPF_RET | unix.BPF_K:
			return k
		case unix.BPF_RET | unix.BPF_A:
			return a
		default:
			t.Fatalf("instruction %d: opcode %#x not interpreted", pc, code)
		}
	}
	t.Fatal("program ran off its end")
	return 0
}
