package container

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/hull-runtime/hull/internal/guest/initsys"
)

func TestValidateID(t *testing.T) {
	for id, ok := range map[string]bool{
		"a": true, "0": true, "abc-DEF_1.2": true, strings.Repeat("a", 64): true,
		"": false, "-a": false, ".a": false, "_a": false, "a/b": false, "a b": false,
		"..": false, strings.Repeat("a", 65): false, "a\n": false, "é": false,
	} {
		err := ValidateID("container", id)
		if (err == nil) != ok {
			t.Errorf("ValidateID(%q) = %v", id, err)
		}
		if err != nil && !errdefs.IsInvalidArgument(err) {
			t.Errorf("ValidateID(%q): %v is not InvalidArgument", id, err)
		}
	}
}

func TestParseSpec(t *testing.T) {
	good := specconv.Example()
	good.Root.Path = "/run/hull/shared/c/rootfs"
	enc := func(mod func(*specs.Spec)) []byte {
		b, _ := json.Marshal(good)
		var s specs.Spec
		json.Unmarshal(b, &s)
		if mod != nil {
			mod(&s)
		}
		b, _ = json.Marshal(&s)
		return b
	}
	if _, err := parseSpec(enc(nil)); err != nil {
		t.Fatalf("good spec: %v", err)
	}
	for name, b := range map[string][]byte{
		"too big":       append(enc(nil), bytes.Repeat([]byte(" "), MaxSpecSize)...),
		"not json":      []byte("{"),
		"no process":    enc(func(s *specs.Spec) { s.Process = nil }),
		"no args":       enc(func(s *specs.Spec) { s.Process.Args = nil }),
		"empty arg0":    enc(func(s *specs.Spec) { s.Process.Args = []string{""} }),
		"relative root": enc(func(s *specs.Spec) { s.Root.Path = "rootfs" }),
		"no root":       enc(func(s *specs.Spec) { s.Root = nil }),
		"no linux":      enc(func(s *specs.Spec) { s.Linux = nil }),
		"relative cwd":  enc(func(s *specs.Spec) { s.Process.Cwd = "tmp" }),
		"bad rlimit":    enc(func(s *specs.Spec) { s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOPE"}} }),
	} {
		if _, err := parseSpec(b); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	if _, err := parseProcess([]byte(`{"args":[]}`)); !errdefs.IsInvalidArgument(err) {
		t.Errorf("exec without args: %v", err)
	}
}

func TestProcessConfig(t *testing.T) {
	p := specconv.Example().Process
	p.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 10, Soft: 5}}
	p.User.AdditionalGids = []uint32{7}
	p.Cwd = ""
	lp, err := processConfig(p, true)
	if err != nil {
		t.Fatal(err)
	}
	if lp.Cwd != "/" || !lp.Init || lp.Rlimits[0].Type != unix.RLIMIT_NOFILE || lp.AdditionalGroups[0] != 7 || lp.Capabilities == nil {
		t.Errorf("processConfig = %+v", lp)
	}
}

func TestExitStatus(t *testing.T) {
	// WaitStatus encoding: exit code in bits 8-15, signal in bits 0-6.
	for ws, want := range map[unix.WaitStatus]int{0: 0, 3 << 8: 3, 255 << 8: 255, 9: 137, 15: 143} {
		if got := initsys.ExitStatus(ws); got != want {
			t.Errorf("ExitStatus(%#x) = %d, want %d", uint32(ws), got, want)
		}
	}
}

func TestStdioFrom(t *testing.T) {
	if s := StdioFrom(nil); s != (Stdio{}) {
		t.Errorf("StdioFrom(nil) = %+v", s)
	}
}
