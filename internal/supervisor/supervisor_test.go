package supervisor

import (
	"encoding/json"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hull-runtime/hull/internal/agentclient"
)

// Whether the guest may skip the flush at the VM's end (ownPIDNamespace)
// and whether run may start in the create call (HasHooks) are read off
// the spec.
func TestSpecChecks(t *testing.T) {
	withNS := func(ns ...specs.LinuxNamespace) *specs.Spec {
		return &specs.Spec{Linux: &specs.Linux{Namespaces: ns}}
	}
	for _, c := range []struct {
		name string
		spec *specs.Spec
		want bool
	}{
		{"new pid namespace", withNS(specs.LinuxNamespace{Type: specs.MountNamespace}, specs.LinuxNamespace{Type: specs.PIDNamespace}), true},
		{"no pid namespace", withNS(specs.LinuxNamespace{Type: specs.MountNamespace}), false},
		{"a pid namespace by path", withNS(specs.LinuxNamespace{Type: specs.PIDNamespace, Path: "/proc/1/ns/pid"}), false},
		{"no linux section", &specs.Spec{}, false},
	} {
		if got := ownPIDNamespace(c.spec); got != c.want {
			t.Errorf("%s: ownPIDNamespace %v, want %v", c.name, got, c.want)
		}
	}

	if HasHooks(&specs.Spec{}) || HasHooks(&specs.Spec{Hooks: &specs.Hooks{}}) {
		t.Error("a spec without hooks has hooks")
	}
	for name, h := range map[string]*specs.Hooks{
		"prestart":        {Prestart: []specs.Hook{{Path: "/bin/true"}}},
		"createRuntime":   {CreateRuntime: []specs.Hook{{Path: "/bin/true"}}},
		"createContainer": {CreateContainer: []specs.Hook{{Path: "/bin/true"}}},
		"startContainer":  {StartContainer: []specs.Hook{{Path: "/bin/true"}}},
		"poststart":       {Poststart: []specs.Hook{{Path: "/bin/true"}}},
		"poststop":        {Poststop: []specs.Hook{{Path: "/bin/true"}}},
	} {
		if !HasHooks(&specs.Spec{Hooks: h}) {
			t.Errorf("a %s hook not seen", name)
		}
	}
}

// The details of "ps" stay within the answer's bound whatever the guest
// puts in command lines (JSON escapes grow "<" six times).
func TestFitAnswerBounded(t *testing.T) {
	procs := make([]agentclient.Process, maxDetailed)
	for i := range procs {
		procs[i] = agentclient.Process{Pid: uint32(i + 1), Cmd: strings.Repeat("<", 4096)}
	}
	fit := fitAnswer(procs)
	b, _ := json.Marshal(Response{Pids: make([]uint32, 65536), Processes: fit})
	if len(b) > maxAnswer {
		t.Errorf("answer of %d bytes, over %d", len(b), maxAnswer)
	}
	if len(fitAnswer(make([]agentclient.Process, maxDetailed+1))) != 0 {
		t.Error("details past maxDetailed processes")
	}
}
