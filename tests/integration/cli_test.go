package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	agent "github.com/hull-runtime/hull/api/agent/v1"
	"github.com/hull-runtime/hull/internal/image"
)

// writeConfig writes a config file for one hull invocation.
func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// copyImage copies the installed image to a temp dir that a test may break.
func copyImage(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{image.KernelFile, image.KernelELFFile, image.InitrdFile, image.ManifestFile} {
		if _, err := os.Stat(filepath.Join(imageDir, f)); err != nil {
			continue
		}
		src, err := os.Open(filepath.Join(imageDir, f))
		if err != nil {
			t.Fatal(err)
		}
		dst, err := os.Create(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(dst, src); err != nil {
			t.Fatal(err)
		}
		src.Close()
		dst.Close()
	}
	return dir
}

// resign makes the manifest match a modified artifact, so that the
// runtime's own checks pass and the guest is what fails.
func resign(t *testing.T, dir, key string) {
	t.Helper()
	m, err := image.LoadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	a := m.Artifacts[key]
	b, err := os.ReadFile(filepath.Join(dir, a.File))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	a.SHA256, a.Size = hex.EncodeToString(sum[:]), int64(len(b))
	m.Artifacts[key] = a
	out, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, image.ManifestFile), out, 0o644); err != nil {
		t.Fatal(err)
	}
}

// hullCase runs `hull --config C check --boot` against a broken setup and
// asserts a clear error, a non-zero exit and nothing left behind.
type hullCase struct {
	name   string
	config func(t *testing.T, root string) string // returns config body
	env    []string
	want   []string // each must appear in the output
}

func TestCheckBootBadInput(t *testing.T) {
	requireHull(t)
	for _, tc := range []hullCase{
		{
			name:   "unknown config key",
			config: func(t *testing.T, root string) string { return "[hypervisor]\nacelerator = \"tcg\"\n" },
			want:   []string{"unknown key hypervisor.acelerator", "config.toml"},
		},
		{
			name:   "bad config value",
			config: func(t *testing.T, root string) string { return "[hypervisor]\nmachine = \"pc\"\n" },
			want:   []string{"hypervisor.machine", "config.toml"},
		},
		{
			name: "missing kernel",
			config: func(t *testing.T, root string) string {
				dir := copyImage(t)
				os.Remove(kernelPath(t, dir))
				return imageConfig(dir, root)
			},
			want: []string{"FAIL  guest image", "kernel", "missing", "hull image build"},
		},
		{
			name: "initrd not matching the manifest",
			config: func(t *testing.T, root string) string {
				dir := copyImage(t)
				corrupt(t, filepath.Join(dir, image.InitrdFile))
				return imageConfig(dir, root)
			},
			want: []string{"FAIL  guest image", image.InitrdFile, "sha256"},
		},
		{
			name: "corrupt kernel",
			config: func(t *testing.T, root string) string {
				dir := copyImage(t)
				if err := os.WriteFile(kernelPath(t, dir), []byte("not a kernel\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				resign(t, dir, image.ArtifactKernel)
				return imageConfig(dir, root)
			},
			want: []string{"FAIL  boot", "qemu exited at start", "kernel"},
		},
		{
			name: "corrupt initrd",
			config: func(t *testing.T, root string) string {
				dir := copyImage(t)
				if err := os.WriteFile(filepath.Join(dir, image.InitrdFile), []byte("garbage, not a cpio archive\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				resign(t, dir, image.ArtifactInitrd)
				return imageConfig(dir, root) + "boot_timeout = \"20s\"\n"
			},
			want: []string{"FAIL  boot", "exited before its agent answered"},
		},
		{
			name:   "no qemu installed",
			config: func(t *testing.T, root string) string { return imageConfig(imageDir, root) },
			env:    []string{"PATH=/nonexistent"},
			want:   []string{"FAIL  qemu", "qemu-system-x86_64", "apt-get install qemu-system-x86"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			tmp := t.TempDir()
			cfg := writeConfig(t, tc.config(t, root))
			env := append([]string{"TMPDIR=" + tmp}, tc.env...)
			stdout, stderr, code := runHull(t, env, "--config", cfg, "check", "--boot")
			out := stdout + stderr
			if code == 0 {
				t.Fatalf("exit 0 for bad input:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output does not contain %q:\n%s", w, out)
				}
			}
			assertNoLeaks(t, "hull-check-", root)
			assertNoLeaks(t, "hull-check-", tmp)
		})
	}
}

// kernelPath is the kernel file the manifest in dir names.
func kernelPath(t *testing.T, dir string) string {
	t.Helper()
	m, err := image.LoadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, m.Artifacts[image.ArtifactKernel].File)
}

// imageConfig points a config at an image and a state root; the hypervisor
// table stays open for cases that add to it.
func imageConfig(dir, root string) string {
	return "[image]\ndir = \"" + dir + "\"\n[runtime]\nroot = \"" + root + "\"\n[hypervisor]\naccelerator = \"tcg\"\n"
}

func corrupt(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{0xde, 0xad}, 1000); err != nil {
		t.Fatal(err)
	}
}

func TestCheckAndBoot(t *testing.T) {
	requireHull(t)
	root := t.TempDir()
	tmp := t.TempDir()
	cfg := writeConfig(t, "[image]\ndir = \""+imageDir+"\"\n[runtime]\nroot = \""+root+"\"\n")
	stdout, stderr, code := runHull(t, []string{"TMPDIR=" + tmp}, "--config", cfg, "check", "--boot")
	if code != 0 {
		t.Fatalf("hull check --boot: exit %d\n%s%s", code, stdout, stderr)
	}
	for _, name := range []string{"config", "qemu", "accelerator", "tcg cache", "vhost-vsock", "virtiofsd", "guest image", "cgroups", "tun", "tc", "boot"} {
		found := false
		for _, line := range strings.Split(stdout, "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && (f[0] == "OK" || f[0] == "WARN") && strings.HasPrefix(strings.TrimSpace(line[len(f[0]):]), name) {
				found = true
			}
		}
		if !found {
			t.Errorf("no OK/WARN line for %s:\n%s", name, stdout)
		}
	}
	// Debian 12's QEMU 7.2: the cache is trimmed.
	if strings.Contains(stdout, "version 7.") && !strings.Contains(stdout, "given back once the guest settles") {
		t.Errorf("tcg cache line does not say it is trimmed:\n%s", stdout)
	}
	if !strings.Contains(stdout, "agent ready") || !strings.Contains(stdout, "guest kernel") {
		t.Errorf("boot line lacks timings or guest details:\n%s", stdout)
	}
	// Auto falls back to TCG where KVM cannot run a guest, and says so once.
	if strings.Contains(stdout, "WARN  accelerator") && strings.Count(stdout+stderr, "falling back to TCG") < 1 {
		t.Errorf("fallback to TCG not explained:\n%s%s", stdout, stderr)
	}
	assertNoLeaks(t, "hull-check-", root)
	assertNoLeaks(t, "hull-kvm-probe", tmp)
}

func TestVersion(t *testing.T) {
	requireHull(t)
	stdout, _, code := runHull(t, nil, "version")
	if code != 0 || !strings.HasPrefix(stdout, "hull version ") || !strings.Contains(stdout, fmt.Sprintf("agent api: %d\n", agent.APIVersion)) ||
		!strings.Contains(stdout, "\nspec: "+specs.Version+"\n") {
		t.Fatalf("hull version: exit %d: %q", code, stdout)
	}
	// runc's global flags: podman asks the runtime for its version so.
	for _, flag := range []string{"--version", "-v"} {
		out, errOut, code := runHull(t, nil, flag)
		if code != 0 || out != stdout {
			t.Errorf("hull %s: exit %d: %q (stderr %q), want %q", flag, code, out, errOut, stdout)
		}
	}
}

// An error goes to stderr as "hull: ..."; with --log-format json and no
// --log as a JSON line (runc's), and with --log to the file too, as
// logfmt or JSON.
func TestErrorOutputFormats(t *testing.T) {
	requireHull(t)
	root := t.TempDir()
	_, errOut, code := runHull(t, nil, "--root", root, "kill", "nosuch")
	if code != 1 || errOut != "hull: container \"nosuch\" does not exist: not found\n" {
		t.Errorf("plain: exit %d, %q", code, errOut)
	}
	_, errOut, code = runHull(t, nil, "--root", root, "--log-format", "json", "kill", "nosuch")
	var line struct{ Level, Msg string }
	if err := json.Unmarshal([]byte(errOut), &line); code != 1 || err != nil || line.Level != "error" || !strings.Contains(line.Msg, "nosuch") {
		t.Errorf("json: exit %d, %q (%v)", code, errOut, err)
	}
	logFile := filepath.Join(t.TempDir(), "log")
	_, errOut, code = runHull(t, nil, "--root", root, "--log", logFile, "kill", "nosuch")
	b, _ := os.ReadFile(logFile)
	if code != 1 || !strings.HasPrefix(errOut, "hull: ") || !strings.Contains(string(b), `msg="container \"nosuch\" does not exist: not found"`) {
		t.Errorf("--log: exit %d, stderr %q, log %q", code, errOut, b)
	}
}
