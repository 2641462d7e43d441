package image

import (
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestCheckAgentStaticGoBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Go program")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not in PATH")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\nfunc main() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module agent\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "agent")
	cmd := exec.Command(goTool, "build", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	size, err := checkAgent(bin, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(bin); size != fi.Size() {
		t.Errorf("size %d, file has %d", size, fi.Size())
	}
	if _, err := checkAgent(bin, "arm64"); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "EM_X86_64") {
		t.Errorf("an amd64 agent for an arm64 kernel: %v", err)
	}
}

func TestCheckAgent(t *testing.T) {
	dir := t.TempDir()
	file := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	static := writeStaticAgent(t, dir)
	if _, err := checkAgent(static, "amd64"); err != nil {
		t.Errorf("static executable: %v", err)
	}
	if _, err := checkAgent(static, "sparc"); err != nil {
		t.Errorf("unknown architecture is not checked: %v", err)
	}
	staticPIE := file("static-pie", makeELF(t, elfSpec{typ: elf.ET_DYN, sections: map[string][]byte{".text": {0x90}}}))
	if _, err := checkAgent(staticPIE, "amd64"); err != nil {
		t.Errorf("static-pie executable: %v", err)
	}

	cases := map[string]struct {
		path string
		is   error
		want string
	}{
		"missing":    {filepath.Join(dir, "nosuch"), errdefs.ErrNotFound, "missing"},
		"directory":  {dir, errdefs.ErrInvalidArgument, "not a regular file"},
		"script":     {file("script", []byte("#!/bin/sh\nexit 0\n")), errdefs.ErrInvalidArgument, "not an ELF file"},
		"object":     {file("object", makeModule(t, "name=x")), errdefs.ErrInvalidArgument, "not an executable"},
		"interp":     {file("interp", makeELF(t, elfSpec{typ: elf.ET_EXEC, interp: "/lib64/ld-linux-x86-64.so.2"})), errdefs.ErrInvalidArgument, "dynamically linked"},
		"wrong arch": {file("arm", makeELF(t, elfSpec{typ: elf.ET_EXEC, machine: elf.EM_AARCH64})), errdefs.ErrInvalidArgument, "EM_AARCH64"},
	}
	// A real dynamic executable, as the host's toolchain links it.
	if _, err := os.Stat("/bin/true"); err == nil {
		cases["/bin/true"] = struct {
			path string
			is   error
			want string
		}{"/bin/true", errdefs.ErrInvalidArgument, "dynamically linked"}
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := checkAgent(tc.path, "amd64")
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path) {
				t.Fatalf("error %v, want %v naming %s and %q", err, tc.is, tc.path, tc.want)
			}
		})
	}
}
