package containerd

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// References of the images the harness builds. The critest ones are the
// exact names cri-tools v1.37.0 asks for (pkg/validate, pkg/framework), so
// that critest finds them present and pulls nothing.
const (
	// BusyboxImage is critest's default container image
	// (framework.DefaultLinuxContainerImage), and the harness's.
	BusyboxImage = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
	// PauseImage is the sandbox image the harness configures.
	PauseImage = "localhost/hull-test/pause:3.9"
	// NginxImage: critest's web server (port mapping, port forward,
	// PID namespace specs).
	NginxImage = "registry.k8s.io/e2e-test-images/nginx:1.14-2"
	// HttpdImage: critest's multi-container specs.
	HttpdImage = "registry.k8s.io/e2e-test-images/httpd:2.4.39-4"
	// NoNewPrivsImage: critest's NoNewPrivs specs.
	NoNewPrivsImage = "registry.k8s.io/e2e-test-images/nonewprivs:1.3"
	// HostNetNginxImage: critest's host-network port forward spec, a web
	// server on port 12003 (cri-tools images/hostnet-nginx).
	HostNetNginxImage = "gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64:latest"
	// PredefinedGroupImage: critest's SupplementalGroupsPolicy specs,
	// user 1000 in a group (50000) defined in the image's /etc/group
	// (cri-tools images/image-predefined-group).
	PredefinedGroupImage = "gcr.io/k8s-staging-cri-tools/test-image-predefined-group:latest"
)

const busyboxStatic = "/bin/busybox" // Debian's busybox-static

// RepoRoot is the hull repository: $HULL_REPO_ROOT, else the nearest
// directory above the working directory whose go.mod is hull's.
func RepoRoot() (string, error) {
	if r := os.Getenv("HULL_REPO_ROOT"); r != "" {
		return r, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("repo root: %w", err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(b, []byte("module github.com/hull-runtime/hull\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("repo root: no hull go.mod above the working directory (set HULL_REPO_ROOT)")
		}
		dir = parent
	}
}

// defaultShimDir is where containerd-shim-hull-v2 is looked for: the
// directory of $HULL_SHIM_BIN, else the repository's bin/ (make build).
func defaultShimDir() (string, error) {
	if s := os.Getenv("HULL_SHIM_BIN"); s != "" {
		abs, err := filepath.Abs(s)
		if err != nil {
			return "", fmt.Errorf("HULL_SHIM_BIN: %w", err)
		}
		return filepath.Dir(abs), nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "bin"), nil
}

var (
	crictlOnce sync.Once
	crictlPath string
	crictlErr  error
)

// CrictlPath is the crictl binary: $HULL_CRICTL, else the repository's
// bin/crictl, built there (as `make crictl` does, cri-tools v1.37.0 as
// pinned by tests/critest/go.mod) if missing.
func CrictlPath(ctx context.Context) (string, error) {
	crictlOnce.Do(func() {
		if p := os.Getenv("HULL_CRICTL"); p != "" {
			crictlPath = p
			return
		}
		root, err := RepoRoot()
		if err != nil {
			crictlErr = err
			return
		}
		p := filepath.Join(root, "bin", "crictl")
		if _, err := os.Stat(p); err == nil {
			crictlPath = p
			return
		}
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", p, "sigs.k8s.io/cri-tools/cmd/crictl")
		cmd.Dir = filepath.Join(root, "tests", "critest")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			crictlErr = fmt.Errorf("build crictl (make crictl): %w\n%s", err, out)
			return
		}
		crictlPath = p
	})
	return crictlPath, crictlErr
}

// BuildFixture builds a static program of tests/fixtures (pause,
// webserver, nonewprivs) into dir and returns its path.
func BuildFixture(ctx context.Context, name, dir string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, name)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./tests/fixtures/"+name)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build fixture %s: %w\n%s", name, err, b)
	}
	return out, nil
}

// BusyboxBin is the busybox the images are made of: $HULL_BUSYBOX, else
// Debian's dynamically linked busybox that `make test-busybox` unpacks
// into $HULL_CACHE_DIR/busybox (default /var/cache/hull), else Debian's
// busybox-static. The dynamic one comes first because its shell runs
// commands from PATH, as the busybox of critest's images does; the
// static build's shell runs its own applets in preference ("standalone
// shell"), so masking /bin/ls does not stop `sh -c ls` there, and
// critest's MaskedPaths spec fails for the image, not the runtime.
func BusyboxBin() string {
	if p := os.Getenv("HULL_BUSYBOX"); p != "" {
		return p
	}
	cache := os.Getenv("HULL_CACHE_DIR")
	if cache == "" {
		cache = "/var/cache/hull"
	}
	if p := filepath.Join(cache, "busybox", "bin", "busybox"); fileExists(p) {
		return p
	}
	return busyboxStatic
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// BusyboxFiles is a busybox rootfs: BusyboxBin with the host libraries it
// links (if dynamic) and a hard link per applet (as in the busybox images
// critest expects: masking /bin/ls with a bind mount must not mask
// /bin/sh, as it would through a symlink), pgrep and ipcs scripts for the
// applets Debian's builds lack and critest runs, the usual directories,
// and /etc/passwd and /etc/group with root, nobody and www-data (plus
// extra lines, e.g. for image users).
func BusyboxFiles(extraPasswd, extraGroup []string) ([]File, error) {
	bin := BusyboxBin()
	libs, err := sharedLibraries(bin)
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(bin, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox applets of %s (apt-get install busybox-static): %w", bin, err)
	}
	files := append(libs, File{Path: "/bin/busybox", Source: bin, Mode: 0o755})
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		p := "/" + strings.TrimSpace(sc.Text())
		if p == "/" || p == "/bin/busybox" {
			continue
		}
		files = append(files, File{Path: p, HardLink: "/bin/busybox"})
	}
	files = append(files,
		File{Path: "/usr/bin/pgrep", Mode: 0o755, Data: []byte(pgrepScript)},
		File{Path: "/usr/bin/ipcs", Mode: 0o755, Data: []byte(ipcsScript)})
	for _, d := range []string{"/dev", "/proc", "/sys", "/etc", "/home", "/var/run", "/var/log", "/var/www", "/usr/sbin", "/usr/local/bin"} {
		files = append(files, File{Path: d, Dir: true, Mode: 0o755})
	}
	files = append(files, File{Path: "/root", Dir: true, Mode: 0o700}, File{Path: "/tmp", Dir: true, Mode: 0o777 | fs.ModeSticky})
	passwd := append([]string{
		"root:x:0:0:root:/root:/bin/sh",
		"daemon:x:1:1:daemon:/usr/sbin:/bin/false",
		"www-data:x:33:33:www-data:/var/www:/bin/false",
		"nobody:x:65534:65534:nobody:/home:/bin/false",
	}, extraPasswd...)
	group := append([]string{
		"root:x:0:",
		"daemon:x:1:",
		"www-data:x:33:",
		"nogroup:x:65534:",
	}, extraGroup...)
	files = append(files,
		File{Path: "/etc/passwd", Data: []byte(strings.Join(passwd, "\n") + "\n")},
		File{Path: "/etc/group", Data: []byte(strings.Join(group, "\n") + "\n")},
	)
	return files, nil
}

// sharedLibraries lists, as image files, the dynamic loader and the
// libraries an ELF binary needs, copied from the host at the paths the
// loader looks in; none for a static binary. Needed libraries' own needs
// are followed.
func sharedLibraries(bin string) ([]File, error) {
	f, err := elf.Open(bin)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", bin, err)
	}
	defer f.Close()
	var interp string
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b, err := io.ReadAll(p.Open())
			if err != nil {
				return nil, fmt.Errorf("%s: interpreter: %w", bin, err)
			}
			interp = strings.TrimRight(string(b), "\x00")
		}
	}
	if interp == "" {
		return nil, nil // static
	}
	files := []File{{Path: interp, Source: interp, Mode: 0o755}}
	seen := map[string]bool{}
	var add func(path string) error
	add = func(path string) error {
		ef, err := elf.Open(path)
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		defer ef.Close()
		needed, err := ef.ImportedLibraries()
		if err != nil {
			return fmt.Errorf("%s: needed libraries: %w", path, err)
		}
		for _, lib := range needed {
			if seen[lib] {
				continue
			}
			seen[lib] = true
			var found string
			for _, dir := range []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/lib"} {
				if p := filepath.Join(dir, lib); fileExists(p) {
					found = p
					break
				}
			}
			if found == "" {
				return fmt.Errorf("%s needs %s, not found on the host", path, lib)
			}
			// The file itself, under the name the loader asks for.
			real, err := filepath.EvalSymlinks(found)
			if err != nil {
				return err
			}
			files = append(files, File{Path: found, Source: real, Mode: 0o755})
			if err := add(real); err != nil {
				return err
			}
		}
		return nil
	}
	if err := add(bin); err != nil {
		return nil, err
	}
	return files, nil
}

// pgrepScript is `pgrep PATTERN` (no options): the pids of the other
// processes whose name matches PATTERN. critest's execSync-timeout spec
// runs `pgrep sleep` to see that a timed-out exec was killed.
const pgrepScript = `#!/bin/sh
# pgrep PATTERN: pids of processes whose name (comm) matches the extended
# regular expression PATTERN; status 1 if none. (busybox-static has none.)
[ $# -eq 1 ] || { echo "usage: pgrep PATTERN" >&2; exit 2; }
found=1
for d in /proc/[0-9]*; do
	pid=${d#/proc/}
	[ "$pid" = "$$" ] && continue
	read -r comm < "$d/comm" 2>/dev/null || continue
	if echo "$comm" | grep -qE -- "$1"; then
		echo "$pid"
		found=0
	fi
done
exit $found
`

// ipcsScript is `ipcs -m`: the System V shared memory segments of the
// container's IPC namespace, in util-linux's layout. critest's HostIpc
// specs look for a segment made on the host.
const ipcsScript = `#!/bin/sh
# ipcs -m: System V shared memory segments, from /proc/sysvipc/shm.
# (busybox-static has no ipcs; this supports -m only.)
[ "$1" = "-m" ] || { echo "usage: ipcs -m" >&2; exit 2; }
echo
echo "------ Shared Memory Segments --------"
echo "key        shmid      owner      perms      bytes      nattch     status"
awk 'NR > 1 { printf "%-10s %-10s %-10s %-10s %-10s %-10s\n", $1, $2, $8, $3, $4, $7 }' /proc/sysvipc/shm
echo
`

// Fixtures are built programs of tests/fixtures, by name.
type Fixtures map[string]string

// BuildFixtures builds pause, webserver and nonewprivs into dir.
func BuildFixtures(ctx context.Context, dir string) (Fixtures, error) {
	fx := Fixtures{}
	for _, name := range []string{"pause", "webserver", "nonewprivs"} {
		p, err := BuildFixture(ctx, name, dir)
		if err != nil {
			return nil, err
		}
		fx[name] = p
	}
	return fx, nil
}

// ImagesFrom returns the images the harness's tests and critest need, built
// from busybox-static and the fixtures: BusyboxImage, PauseImage and the
// critest images (NginxImage, HttpdImage, NoNewPrivsImage,
// HostNetNginxImage, PredefinedGroupImage).
func ImagesFrom(fx Fixtures) ([]Image, error) {
	bb, err := BusyboxFiles(nil, nil)
	if err != nil {
		return nil, err
	}
	with := func(extra ...File) []File { return append(append([]File{}, bb...), extra...) }
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	// The nginx stand-ins: the server renames itself as nginx's master
	// does and writes nginx's pid file (see tests/fixtures/webserver).
	nginx := func(ref, port string) Image {
		return Image{
			Ref: ref,
			Files: with(
				File{Path: "/usr/sbin/nginx", Source: fx["webserver"], Mode: 0o755},
				File{Path: "/usr/share/nginx/html/index.html", Data: []byte("<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head><body><h1>Welcome to nginx!</h1></body></html>\n")},
			),
			Config: ImageConfig{
				Env: env,
				Entrypoint: []string{"/usr/sbin/nginx", "--listen=:" + port, "--root=/usr/share/nginx/html",
					"--pidfile=/var/run/nginx.pid", "--title=nginx: master process nginx -g daemon off;"},
				Cmd:          []string{"-g", "daemon off;"},
				ExposedPorts: []string{port + "/tcp"},
			},
		}
	}
	predefinedFiles, err := BusyboxFiles(
		[]string{"default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh"},
		[]string{"default-user:x:1000:", "group-defined-in-image:x:50000:default-user"})
	if err != nil {
		return nil, err
	}
	return []Image{
		{Ref: BusyboxImage, Files: bb, Config: ImageConfig{Env: env, Cmd: []string{"sh"}}},
		{
			Ref:    PauseImage,
			Files:  []File{{Path: "/pause", Source: fx["pause"], Mode: 0o755}},
			Config: ImageConfig{Entrypoint: []string{"/pause"}, User: "65535:65535"},
		},
		nginx(NginxImage, "80"),
		nginx(HostNetNginxImage, "12003"),
		{
			Ref: HttpdImage,
			Files: with(
				File{Path: "/usr/local/apache2/bin/httpd", Source: fx["webserver"], Mode: 0o755},
				File{Path: "/usr/local/apache2/htdocs/index.html", Data: []byte("<html><body><h1>It works!</h1></body></html>\n")},
			),
			Config: ImageConfig{
				Env:          append([]string{"HTTPD_PREFIX=/usr/local/apache2"}, env...),
				Entrypoint:   []string{"/usr/local/apache2/bin/httpd", "--listen=:80", "--root=/usr/local/apache2/htdocs", "--banner=httpd (hull test web server): serving on port 80"},
				WorkingDir:   "/usr/local/apache2",
				ExposedPorts: []string{"80/tcp"},
			},
		},
		{
			// Setuid root, so that only no_new_privs keeps a user at
			// its own uid.
			Ref:    NoNewPrivsImage,
			Files:  with(File{Path: "/usr/local/bin/nnp", Source: fx["nonewprivs"], Mode: 0o755 | fs.ModeSetuid}),
			Config: ImageConfig{Env: env, Entrypoint: []string{"/usr/local/bin/nnp"}},
		},
		{Ref: PredefinedGroupImage, Files: predefinedFiles, Config: ImageConfig{Env: env, Cmd: []string{"sh"}, User: "1000"}},
	}, nil
}

// ImportImage loads img into the k8s.io namespace under img.Ref and unpacks
// it for the overlayfs snapshotter, which the CRI plugin uses.
func (d *Daemon) ImportImage(ctx context.Context, img Image) error {
	var buf bytes.Buffer
	if err := img.WriteOCIArchive(&buf); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, CtrBin, d.ctrArgs("-n", K8sNamespace, "images", "import", "--snapshotter", "overlayfs", "-")...)
	cmd.Env = d.env
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("import %s: %w: %s", img.Ref, err, out)
	}
	return nil
}

// Import imports images, failing the test on error.
func (d *Daemon) Import(t testing.TB, imgs ...Image) {
	t.Helper()
	for _, img := range imgs {
		if err := d.ImportImage(t.Context(), img); err != nil {
			t.Fatal(err)
		}
	}
}

// StandardImages builds the fixtures into a temporary directory and
// returns ImagesFrom, failing the test on error.
func StandardImages(t testing.TB) []Image {
	t.Helper()
	fx, err := BuildFixtures(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := ImagesFrom(fx)
	if err != nil {
		t.Fatal(err)
	}
	return imgs
}
