package containerd

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The archive writer is deterministic (same image, same bytes, so the same
// digests run after run) and keeps modes such as setuid, which the
// nonewprivs image depends on.
func TestImageArchiveDeterministic(t *testing.T) {
	img := Image{
		Ref: "localhost/test/x:1",
		Files: []File{
			{Path: "/usr/local/bin/nnp", Data: []byte("#!/bin/sh\n"), Mode: 0o755 | fs.ModeSetuid},
			{Path: "/bin/sh", Link: "/bin/busybox"},
			{Path: "/tmp", Dir: true, Mode: 0o777 | fs.ModeSticky},
		},
		Config: ImageConfig{Entrypoint: []string{"/usr/local/bin/nnp"}},
	}
	var a, b bytes.Buffer
	if err := img.WriteOCIArchive(&a); err != nil {
		t.Fatal(err)
	}
	if err := img.WriteOCIArchive(&b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("two archives of the same image differ")
	}
	layer, err := img.layerTar()
	if err != nil {
		t.Fatal(err)
	}
	modes := map[string]int64{}
	tr := tar.NewReader(bytes.NewReader(layer))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		modes[hdr.Name] = hdr.Mode
	}
	for name, want := range map[string]int64{"usr/local/bin/nnp": 0o4755, "tmp/": 0o1777, "usr/": 0o755, "usr/local/": 0o755} {
		if modes[name] != want {
			t.Errorf("%s: mode %o, want %o (all: %v)", name, modes[name], want, modes)
		}
	}
}

// imagesByRef picks images out of StandardImages.
func imagesByRef(t *testing.T, refs ...string) []Image {
	all := StandardImages(t)
	var out []Image
	for _, ref := range refs {
		for _, img := range all {
			if img.Ref == ref {
				out = append(out, img)
			}
		}
	}
	if len(out) != len(refs) {
		t.Fatalf("images %v: found %d", refs, len(out))
	}
	return out
}

func writeJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// crictl and ctrRun run a client and fail the test on error.
func crictl(t *testing.T, d *Daemon, args ...string) string {
	t.Helper()
	out, err := d.Crictl(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

func ctrRun(t *testing.T, d *Daemon, args ...string) string {
	t.Helper()
	out, err := d.Ctr(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// podConfigs are crictl's pod and container configs for a busybox
// container that logs a line and sleeps.
func podConfigs(t *testing.T, name string) (pod, ctr string) {
	pod = writeJSON(t, map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "hull-test", "uid": name + "-uid", "attempt": 1},
		"log_directory": t.TempDir(),
		"linux":         map[string]any{},
	})
	ctr = writeJSON(t, map[string]any{
		"metadata": map[string]any{"name": "box"},
		"image":    map[string]any{"image": BusyboxImage},
		"command":  []string{"sh", "-c", "echo started; exec sleep 1000"},
		"log_path": "box.log",
		"linux":    map[string]any{},
	})
	return pod, ctr
}

// The harness with runc, through the CRI and through ctr: a pod's whole
// life with crictl (run, create, start, exec, logs, stop, remove), the pod
// reaching the host on the bridge, and a ctr run.
func TestHarnessRunc(t *testing.T) {
	Require(t)
	d := Start(t, Options{Images: imagesByRef(t, PauseImage, BusyboxImage)})

	// Something on the host for the pod to reach, at the bridge's address:
	// no forwarding involved.
	ln, err := net.Listen("tcp", net.JoinHostPort(d.Gateway.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hello from the host") }), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	podCfg, ctrCfg := podConfigs(t, "harness-runc")
	pod := crictl(t, d, "runp", "--runtime", "runc", podCfg)
	id := crictl(t, d, "create", pod, ctrCfg, podCfg)
	crictl(t, d, "start", id)

	if out := crictl(t, d, "exec", id, "echo", "hello"); out != "hello" {
		t.Errorf("exec: got %q, want hello", out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := d.Crictl(t, "logs", id)
		if err == nil && strings.Contains(out, "started") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("logs: no \"started\" after 30s: %q, %v", out, err)
		}
		time.Sleep(500 * time.Millisecond)
	}

	var status struct {
		Status struct {
			Network struct{ IP string }
		}
	}
	if err := json.Unmarshal([]byte(crictl(t, d, "inspectp", pod)), &status); err != nil {
		t.Fatal(err)
	}
	if ip := net.ParseIP(status.Status.Network.IP); ip == nil || !d.Subnet.Contains(ip) {
		t.Errorf("pod IP %q is not in the harness subnet %s", status.Status.Network.IP, d.Subnet)
	}
	url := "http://" + ln.Addr().String() + "/"
	if out := crictl(t, d, "exec", id, "wget", "-q", "-O", "-", url); out != "hello from the host" {
		t.Errorf("pod to host %s: got %q", url, out)
	}

	crictl(t, d, "stop", id)
	crictl(t, d, "rm", id)
	crictl(t, d, "stopp", pod)
	crictl(t, d, "rmp", pod)
	if out := crictl(t, d, "pods", "-q"); out != "" {
		t.Errorf("pods left after rmp: %q", out)
	}

	// ctr, with containerd's own (non-CRI) path and the same image; runc
	// state and FIFOs in the daemon's directory, not under /run/containerd.
	out := ctrRun(t, d, "-n", K8sNamespace, "run", "--rm", "--runtime", "io.containerd.runc.v2",
		"--runc-root", filepath.Join(d.State, "runc"), "--fifo-dir", filepath.Join(d.Dir, "fifo"),
		BusyboxImage, "harness-ctr-run", "echo", "from ctr")
	if out != "from ctr" {
		t.Errorf("ctr run: got %q", out)
	}
}

// A pod keeps running across a containerd restart, and containerd finds it
// again: what Restart exists for.
func TestHarnessRestart(t *testing.T) {
	Require(t)
	d := Start(t, Options{Images: imagesByRef(t, PauseImage, BusyboxImage)})
	podCfg, ctrCfg := podConfigs(t, "harness-restart")
	pod := crictl(t, d, "runp", podCfg)
	id := crictl(t, d, "create", pod, ctrCfg, podCfg)
	crictl(t, d, "start", id)

	before := d.Pid()
	d.Restart(t)
	if d.Pid() == before {
		t.Fatalf("containerd pid %d unchanged by Restart", before)
	}

	if out := crictl(t, d, "inspect", "-o", "go-template", "--template", "{{.status.state}}", id); out != "CONTAINER_RUNNING" {
		t.Errorf("after restart: container state %q", out)
	}
	if out := crictl(t, d, "exec", id, "echo", "still here"); out != "still here" {
		t.Errorf("exec after restart: %q", out)
	}
	// Cleanup removes the pod: that is tested here too.
}

// FilesFromDir takes a rootfs directory as it is: files with their
// permissions, symlinks, directories.
func TestFilesFromDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "etc", "motd"), []byte("hi\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("etc/motd", filepath.Join(dir, "motd")); err != nil {
		t.Fatal(err)
	}
	files, err := FilesFromDir(dir, "/")
	if err != nil {
		t.Fatal(err)
	}
	img := Image{Ref: "localhost/test/dir:1", Files: files}
	layer, err := img.layerTar()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(layer))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		got[hdr.Name] = fmt.Sprintf("%c %o %s%s", hdr.Typeflag, hdr.Mode, hdr.Linkname, b)
	}
	want := map[string]string{"etc/": "5 755 ", "etc/motd": "0 600 hi\n", "motd": "2 777 etc/motd"}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: got %q, want %q", name, got[name], w)
		}
	}
}

// crictlStdin runs crictl with stdin and fails the test on error.
func crictlStdin(t *testing.T, d *Daemon, stdin string, args ...string) string {
	t.Helper()
	bin, err := CrictlPath(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("crictl %s < (%d bytes)", strings.Join(args, " "), len(stdin))
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--config", d.CrictlConfig}, args...)...)
	cmd.Env = d.env
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("crictl %s: %v", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out))
}
