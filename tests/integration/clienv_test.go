package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hull-runtime/hull/internal/image"
	"github.com/hull-runtime/hull/internal/oci"
	"github.com/hull-runtime/hull/internal/vmm/qemu"
)

// cliEnv is one runtime root and config for a black-box CLI test.
type cliEnv struct {
	t      *testing.T
	root   string
	config string
}

func newCLIEnv(t *testing.T) *cliEnv {
	requireHull(t)
	root := t.TempDir()
	cfg := writeConfig(t, "[image]\ndir = \""+imageDir+"\"\n[hypervisor]\naccelerator = \"tcg\"\nboot_timeout = \"60s\"\n")
	e := &cliEnv{t: t, root: root, config: cfg}
	t.Cleanup(func() {
		e.assertClean()
		// A test that stopped half-way leaves its containers: remove them
		// (after the check, which reports them), so that no VM outlives
		// the test and the temporary root holds no mount when it goes.
		// t's context is over by now: the commands run on their own.
		run := func(args ...string) string {
			out, _ := exec.Command(hullBin, append([]string{"--root", e.root, "--config", e.config}, args...)...).Output()
			return string(out)
		}
		for _, id := range strings.Fields(run("list", "--quiet")) {
			run("delete", "--force", id)
		}
	})
	return e
}

func (e *cliEnv) hull(args ...string) (string, string, int) {
	e.t.Helper()
	return runHull(e.t, nil, append([]string{"--root", e.root, "--config", e.config}, args...)...)
}

// assertClean checks that no container state, VM, virtiofsd or mount of
// this test is left.
func (e *cliEnv) assertClean() {
	e.t.Helper()
	ents, _ := os.ReadDir(e.root)
	for _, d := range ents {
		if d.Name() != image.VerifiedCacheFile && d.Name() != qemu.ProbeCacheFile && d.Name() != qemu.VersionCacheFile {
			e.t.Errorf("state left: %s", filepath.Join(e.root, d.Name()))
		}
	}
	mounts, _ := os.ReadFile("/proc/mounts")
	if strings.Contains(string(mounts), e.root) {
		e.t.Errorf("mounts left under %s", e.root)
	}
	for _, p := range []string{"qemu-system", "virtiofsd"} {
		out, _ := exec.Command("pgrep", "-f", p+".*"+e.root).Output()
		if len(strings.TrimSpace(string(out))) > 0 {
			e.t.Errorf("%s left: %s", p, out)
		}
	}
}

func writeSpec(t *testing.T, bundle string, s *oci.Spec) {
	b, _ := json.Marshal(s)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (e *cliEnv) state(id string) map[string]any {
	e.t.Helper()
	out, errOut, code := e.hull("state", id)
	if code != 0 {
		e.t.Fatalf("state %s: %s", id, errOut)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		e.t.Fatalf("state JSON: %v: %s", err, out)
	}
	return m
}
