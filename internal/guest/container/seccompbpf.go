//go:build cgo && seccomp

package container

import (
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
// One difference from libcontainer: its init prepends a stub that makes
// syscalls newer than the profile fail with ENOSYS rather than the default
// action; this program leaves them to the default action, as libseccomp
// does. Notify actions (a seccomp agent) are left to libcontainer.
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
	if err := <-exported; err != nil {
		return "", 0, fmt.Errorf("exporting the seccomp filter: %w", err)
	}
	switch {
	case rerr != nil:
		return "", 0, fmt.Errorf("exporting the seccomp filter: %w", rerr)
	case len(prog) == 0 || len(prog)%8 != 0 || len(prog) > maxSeccompProgram:
		return "", 0, fmt.Errorf("seccomp filter of %d bytes: %w", len(prog), errUnsupported)
	}
	return hex.EncodeToString(prog), flags, nil
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
