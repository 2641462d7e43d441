package oci

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func writeBundle(t *testing.T, config string) string {
	b := t.TempDir()
	if config != "" {
		if err := os.WriteFile(filepath.Join(b, "config.json"), []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func TestDefaultSpecLoads(t *testing.T) {
	b, _ := json.Marshal(Default())
	s, err := LoadBundle(writeBundle(t, string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if s.Process.Args[0] != "sh" || !s.Root.Readonly {
		t.Fatalf("default spec round trip: %+v", s)
	}
}

func TestLoadBundleErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		config string
		is     error
		want   string
	}{
		"no config.json": {"", errdefs.ErrNotFound, "no config.json"},
		"malformed":      {"{not json", errdefs.ErrInvalidArgument, "malformed"},
		"no process":     {`{"root":{"path":"rootfs"}}`, errdefs.ErrInvalidArgument, "process is missing"},
		"no args":        {`{"root":{"path":"rootfs"},"process":{"cwd":"/","args":[]}}`, errdefs.ErrInvalidArgument, "process.args"},
		"no root":        {`{"process":{"cwd":"/","args":["sh"]}}`, errdefs.ErrInvalidArgument, "root.path"},
		"relative cwd":   {`{"root":{"path":"r"},"process":{"cwd":"x","args":["sh"]}}`, errdefs.ErrInvalidArgument, "process.cwd"},
		"relative mount": {`{"root":{"path":"r"},"process":{"cwd":"/","args":["sh"]},"mounts":[{"destination":"proc"}]}`, errdefs.ErrInvalidArgument, "mounts[0]"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := LoadBundle(writeBundle(t, tc.config))
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want %v naming %q, got %v", tc.is, tc.want, err)
			}
		})
	}
}
