//go:build cgo && seccomp

package container

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/opencontainers/runc/libcontainer/configs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// maxSeccompProgram bounds an exported filter (BPF_MAXINSNS instructions
// of 8 bytes).
const maxSeccompProgram = 4096 * 8

// seccompProgram compiles cfg with libseccomp, as libcontainer's init
// would, and returns the BPF program for hull-init to load, with the
// seccomp(2) flags to load it with.
//
// As libcontainer's, the program starts with a stub that fails syscalls
// newer than any the profile names with ENOSYS rather than the default
// action, so that programs fall back from them (clone3, faccessat2) as on
// an older kernel. Notify actions (a seccomp agent) are left to
// libcontainer.
func seccompProgram(cfg *configs.Seccomp) (program string, flags uint, err error) {
	unsupported := func(what string) error { return fmt.Errorf("seccomp %s: %w", what, errUnsupported) }
	if cfg.DefaultAction == configs.Notify || cfg.ListenerPath != "" {
		return "", 0, unsupported("notify")
	}
	for _, call := range cfg.Syscalls {
		if call == nil {
			return "", 0, fmt.Errorf("seccomp: nil syscall")
		}
		if call.Action == configs.Notify {
			return "", 0, unsupported("notify")
		}
	}
	defAct, err := seccompAction(cfg.DefaultAction, cfg.DefaultErrnoRet)
	if err != nil {
		return "", 0, fmt.Errorf("seccomp default action: %w", err)
	}
	filter, err := libseccomp.NewFilter(defAct)
	if err != nil {
		return "", 0, fmt.Errorf("seccomp filter: %w", err)
	}
	defer filter.Release()
	for _, a := range cfg.Architectures {
		arch, err := libseccomp.GetArchFromString(a)
		if err != nil {
			return "", 0, fmt.Errorf("seccomp architecture %q: %w", a, err)
		}
		if err := filter.AddArch(arch); err != nil {
			return "", 0, fmt.Errorf("seccomp architecture %q: %w", a, err)
		}
	}
	for _, f := range cfg.Flags {
		switch f {
		case "SECCOMP_FILTER_FLAG_TSYNC":
			// hull-init has one thread.
		case specs.LinuxSeccompFlagLog:
			flags |= unix.SECCOMP_FILTER_FLAG_LOG
		case specs.LinuxSeccompFlagSpecAllow:
			flags |= unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW
		default:
			return "", 0, unsupported("flag " + string(f))
		}
	}
	if len(cfg.Syscalls) > 32 {
		// libseccomp's binary tree; not fatal where it is too old.
		_ = filter.SetOptimize(2)
	}
	for _, call := range cfg.Syscalls {
		if err := addSeccompRule(filter, call, defAct); err != nil {
			return "", 0, err
		}
	}
	r, w, err := os.Pipe()
	if err != nil {
		return "", 0, err
	}
	defer r.Close()
	exported := make(chan error, 1)
	go func() {
		exported <- filter.ExportBPF(w)
		w.Close()
	}()
	prog, rerr := io.ReadAll(io.LimitReader(r, maxSeccompProgram+1))
	// The rest of a program too long, so that the export ends.
	_, _ = io.Copy(io.Discard, r)
	if err := <-exported; err != nil {
		return "", 0, fmt.Errorf("exporting the seccomp filter: %w", err)
	}
	if rerr != nil {
		return "", 0, fmt.Errorf("exporting the seccomp filter: %w", rerr)
	}
	prog = append(enosysStub(cfg), prog...)
	if len(prog) == 0 || len(prog)%8 != 0 || len(prog) > maxSeccompProgram {
		return "", 0, fmt.Errorf("seccomp filter of %d bytes: %w", len(prog), errUnsupported)
	}
	return hex.EncodeToString(prog), flags, nil
}

// enosysStub is the program's head that returns ENOSYS for a syscall
// numbered above the last one the profile names on its architecture (x86
// 64-bit and 32-bit; x32 calls are left to the filter). Nothing when the
// default action allows, as in libcontainer's patchbpf.
func enosysStub(cfg *configs.Seccomp) []byte {
	switch cfg.DefaultAction {
	case configs.Allow, configs.Log, configs.Trace:
		return nil
	}
	if native, err := libseccomp.GetNativeArch(); err != nil || native != libseccomp.ArchAMD64 {
		return nil
	}
	last := func(arch libseccomp.ScmpArch) int64 {
		max := int64(-1)
		for _, call := range cfg.Syscalls {
			if nr, err := libseccomp.GetSyscallFromNameByArch(call.Name, arch); err == nil && int64(nr) > max {
				max = int64(nr)
			}
		}
		return max
	}
	max64 := last(libseccomp.ArchAMD64)
	max32 := int64(-1)
	for _, a := range cfg.Architectures {
		if arch, err := libseccomp.GetArchFromString(a); err == nil && arch == libseccomp.ArchX86 {
			max32 = last(libseccomp.ArchX86)
		}
	}
	// As patchbpf: a last syscall of 0 (read alone) is none.
	if max64 <= 0 {
		max64 = -1
	}
	if max32 <= 0 {
		max32 = -1
	}
	if max64 < 0 && max32 < 0 {
		return nil
	}
	// Instructions with jumps to labels, resolved below.
	type insn struct {
		code   uint16
		k      uint32
		jt, jf string // label names; "" is the next instruction
		label  string
	}
	const (
		ldAbs = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq   = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jgt   = unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K
		jset  = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
		ret   = unix.BPF_RET | unix.BPF_K
		x32   = 0x40000000
	)
	var p []insn
	p = append(p, insn{code: ldAbs, k: 4}) // seccomp_data.arch
	if max64 >= 0 {
		p = append(p,
			insn{code: jeq, k: unix.AUDIT_ARCH_X86_64, jf: "i386"},
			insn{code: ldAbs, k: 0}, // seccomp_data.nr
			insn{code: jset, k: x32, jt: "end"},
			insn{code: jgt, k: uint32(max64), jt: "enosys", jf: "end"})
	}
	p = append(p, insn{label: "i386", code: jeq, k: unix.AUDIT_ARCH_I386, jf: "end"})
	if max32 >= 0 {
		p = append(p,
			insn{code: ldAbs, k: 0},
			insn{code: jgt, k: uint32(max32), jt: "enosys", jf: "end"})
	} else {
		p[len(p)-1] = insn{label: "i386", code: unix.BPF_JMP | unix.BPF_JA, jt: "", jf: ""}
		p[len(p)-1].k = 1 // over the ENOSYS return
	}
	p = append(p, insn{label: "enosys", code: ret, k: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)})
	labels := map[string]int{"end": len(p)}
	for i, in := range p {
		if in.label != "" {
			labels[in.label] = i
		}
	}
	out := make([]byte, 0, 8*len(p))
	for i, in := range p {
		off := func(l string) uint8 {
			if l == "" {
				return 0
			}
			return uint8(labels[l] - i - 1)
		}
		out = binary.LittleEndian.AppendUint16(out, in.code)
		out = append(out, off(in.jt), off(in.jf))
		out = binary.LittleEndian.AppendUint32(out, in.k)
	}
	return out
}

func seccompAction(act configs.Action, errnoRet *uint) (libseccomp.ScmpAction, error) {
	switch act {
	case configs.Kill, configs.KillThread:
		return libseccomp.ActKillThread, nil
	case configs.KillProcess:
		return libseccomp.ActKillProcess, nil
	case configs.Errno:
		if errnoRet != nil {
			return libseccomp.ActErrno.SetReturnCode(int16(*errnoRet)), nil
		}
		return libseccomp.ActErrno.SetReturnCode(int16(unix.EPERM)), nil
	case configs.Trap:
		return libseccomp.ActTrap, nil
	case configs.Allow:
		return libseccomp.ActAllow, nil
	case configs.Trace:
		if errnoRet != nil {
			return libseccomp.ActTrace.SetReturnCode(int16(*errnoRet)), nil
		}
		return libseccomp.ActTrace.SetReturnCode(int16(unix.EPERM)), nil
	case configs.Log:
		return libseccomp.ActLog, nil
	}
	return libseccomp.ActInvalid, fmt.Errorf("action %v: %w", act, errUnsupported)
}

var seccompOps = map[configs.Operator]libseccomp.ScmpCompareOp{
	configs.EqualTo:              libseccomp.CompareEqual,
	configs.NotEqualTo:           libseccomp.CompareNotEqual,
	configs.GreaterThan:          libseccomp.CompareGreater,
	configs.GreaterThanOrEqualTo: libseccomp.CompareGreaterEqual,
	configs.LessThan:             libseccomp.CompareLess,
	configs.LessThanOrEqualTo:    libseccomp.CompareLessOrEqual,
	configs.MaskEqualTo:          libseccomp.CompareMaskedEqual,
}

// addSeccompRule adds call's rule, as libcontainer does: a rule with the
// default action is left out, a syscall this libseccomp does not know is
// skipped, and conditions on one argument more than once become a rule
// each.
func addSeccompRule(filter *libseccomp.ScmpFilter, call *configs.Syscall, defAct libseccomp.ScmpAction) error {
	if call.Name == "" {
		return errors.New("seccomp: a syscall without a name")
	}
	act, err := seccompAction(call.Action, call.ErrnoRet)
	if err != nil {
		return fmt.Errorf("seccomp rule for %s: %w", call.Name, err)
	}
	if act == defAct {
		return nil
	}
	nr, err := libseccomp.GetSyscallFromName(call.Name)
	if err != nil {
		return nil
	}
	if len(call.Args) == 0 {
		if err := filter.AddRule(nr, act); err != nil {
			return fmt.Errorf("seccomp rule for %s: %w", call.Name, err)
		}
		return nil
	}
	var conds []libseccomp.ScmpCondition
	seen := map[uint]int{}
	repeated := false
	for _, a := range call.Args {
		if a == nil {
			return fmt.Errorf("seccomp rule for %s: nil argument", call.Name)
		}
		op, ok := seccompOps[a.Op]
		if !ok {
			return fmt.Errorf("seccomp rule for %s: operator %v: %w", call.Name, a.Op, errUnsupported)
		}
		c, err := libseccomp.MakeCondition(a.Index, op, a.Value, a.ValueTwo)
		if err != nil {
			return fmt.Errorf("seccomp rule for %s: %w", call.Name, err)
		}
		seen[a.Index]++
		repeated = repeated || seen[a.Index] > 1
		conds = append(conds, c)
	}
	if !repeated {
		if err := filter.AddRuleConditional(nr, act, conds); err != nil {
			return fmt.Errorf("seccomp rule for %s: %w", call.Name, err)
		}
		return nil
	}
	for _, c := range conds {
		if err := filter.AddRuleConditional(nr, act, []libseccomp.ScmpCondition{c}); err != nil {
			return fmt.Errorf("seccomp rule for %s: %w", call.Name, err)
		}
	}
	return nil
}
