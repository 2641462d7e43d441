package hooks

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestRunHooks(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	st := specs.State{Version: specs.Version, ID: "c1", Status: specs.StateCreating, Pid: 42, Bundle: "/b"}
	hooks := []specs.Hook{
		{Path: "/bin/sh", Args: []string{"sh", "-c", "cat > " + out + "; echo $FOO >> " + out}, Env: []string{"FOO=bar"}},
	}
	if err := Run(context.Background(), "createRuntime", hooks, st); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	if !strings.Contains(string(b), `"id":"c1"`) || !strings.Contains(string(b), `"pid":42`) || !strings.HasSuffix(string(b), "bar\n") {
		t.Fatalf("hook saw %q", b)
	}

	one := 1
	for name, tc := range map[string]struct {
		hooks []specs.Hook
		want  string
	}{
		"failing hook names itself": {[]specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "echo broken >&2; exit 3"}}}, "prestart hook 0 (/bin/sh): exit status 3: broken"},
		"timeout":                   {[]specs.Hook{{Path: "/bin/sleep", Args: []string{"sleep", "10"}, Timeout: &one}}, "timed out after 1s"},
		"missing binary":            {[]specs.Hook{{Path: "/nonexistent/hook"}}, "/nonexistent/hook"},
	} {
		t.Run(name, func(t *testing.T) {
			err := Run(context.Background(), "prestart", tc.hooks, st)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error with %q, got %v", tc.want, err)
			}
		})
	}
}
