package container

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestAllowStatx(t *testing.T) {
	withProfile := func(def specs.LinuxSeccompAction, rules ...specs.LinuxSyscall) *specs.Spec {
		return &specs.Spec{Linux: &specs.Linux{Seccomp: &specs.LinuxSeccomp{DefaultAction: def, Syscalls: rules}}}
	}
	old := withProfile(specs.ActErrno, specs.LinuxSyscall{Names: []string{"read", "stat"}, Action: specs.ActAllow})
	if !allowStatx(old) || old.Linux.Seccomp.Syscalls[1].Names[0] != "statx" {
		t.Fatalf("statx not added to an old profile: %+v", old.Linux.Seccomp.Syscalls)
	}
	denies := withProfile(specs.ActAllow, specs.LinuxSyscall{Names: []string{"statx"}, Action: specs.ActErrno})
	if allowStatx(denies) {
		t.Error("changed a profile that allows by default")
	}
	named := withProfile(specs.ActErrno, specs.LinuxSyscall{Names: []string{"statx"}, Action: specs.ActErrno})
	if allowStatx(named) || len(named.Linux.Seccomp.Syscalls) != 1 {
		t.Error("overrode a profile that names statx itself")
	}
	if allowStatx(&specs.Spec{}) {
		t.Error("changed a spec without seccomp")
	}
}

func TestFifoDevices(t *testing.T) {
	s := &specs.Spec{Linux: &specs.Linux{Devices: []specs.LinuxDevice{
		{Path: "/dev/f", Type: "p", Major: 8, Minor: 666},
		{Path: "/dev/c", Type: "c", Major: 1, Minor: 3},
	}}}
	fifoDevices(s)
	if d := s.Linux.Devices; d[0].Major != 0 || d[0].Minor != 0 || d[1].Major != 1 || d[1].Minor != 3 {
		t.Fatalf("devices %+v", d)
	}
}
