package container

import (
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// allowStatx lets statx through a seccomp profile that does not name it.
// libcontainer calls statx in the container's init after the filter is in
// place (to close inherited fds it needs mount ids), so a profile written
// before statx existed (runtime-tools' own, older Docker ones) fails every
// container at create with ENOSYS. statx tells nothing that stat and
// fstatat, which every profile allows, do not; a profile that names statx
// itself, allowing or denying it, is left as it is.
func allowStatx(s *specs.Spec) bool {
	if s.Linux == nil || s.Linux.Seccomp == nil {
		return false
	}
	sc := s.Linux.Seccomp
	if sc.DefaultAction == specs.ActAllow || sc.DefaultAction == specs.ActLog {
		return false
	}
	for _, r := range sc.Syscalls {
		if slices.Contains(r.Names, "statx") {
			return false
		}
	}
	sc.Syscalls = append(sc.Syscalls, specs.LinuxSyscall{Names: []string{"statx"}, Action: specs.ActAllow})
	return true
}

// fifoDevices clears the device numbers of FIFOs in linux.devices: a FIFO
// has none, and libcontainer checks that the node it made has the numbers
// the spec gives, which runc 1.1 did not.
func fifoDevices(s *specs.Spec) {
	if s.Linux == nil {
		return
	}
	for i := range s.Linux.Devices {
		if s.Linux.Devices[i].Type == "p" {
			s.Linux.Devices[i].Major, s.Linux.Devices[i].Minor = 0, 0
		}
	}
}
