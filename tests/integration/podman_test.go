package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// podmanEnv is podman with its own storage, run directory and
// containers.conf, driving the hull under test.
type podmanEnv struct {
	t    *testing.T
	dir  string
	conf string
	// netns, when set, is the network namespace podman runs in: its
	// bridge, iptables rules and forwarding sysctl stay out of the host's.
	netns string
}

func newPodman(t *testing.T) *podmanEnv {
	t.Helper()
	requireHull(t)
	_, err := exec.LookPath("podman")
	require(t, err == nil, "podman not installed (scripts/setup.sh installs it)")
	dir := t.TempDir()
	hullCfg := writeConfig(t, "[image]\ndir = \""+imageDir+"\"\n[hypervisor]\naccelerator = \"tcg\"\nboot_timeout = \"60s\"\n")
	// conmon runs the runtime with podman's flags only: a wrapper adds the
	// test's config and state root.
	wrapper := filepath.Join(dir, "hull")
	script := "#!/bin/sh\nexec " + hullBin + " --config " + hullCfg + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "containers.conf")
	body := "[containers]\ndefault_ulimits = [\"nofile=1024:1024\"]\n[engine]\nruntime = \"hull\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n[engine.runtimes]\nhull = [\"" + wrapper + "\"]\n"
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &podmanEnv{t: t, dir: dir, conf: conf}
	// The test image: busybox, imported from a local rootfs.
	b := busyboxBundle(t)
	tar := filepath.Join(dir, "busybox.tar")
	if out, err := exec.Command("tar", "-C", filepath.Join(b, "rootfs"), "-cf", tar, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	if out, code := p.run("import", tar, "localhost/busybox:latest"); code != 0 {
		t.Fatalf("podman import: %s", out)
	}
	t.Cleanup(func() {
		p.run("rm", "-af")
		p.run("rmi", "-af")
		mounts, _ := os.ReadFile("/proc/mounts")
		for _, l := range strings.Split(string(mounts), "\n") {
			if f := strings.Fields(l); len(f) > 1 && strings.HasPrefix(f[1], dir) {
				exec.Command("umount", "-l", f[1]).Run()
			}
		}
	})
	return p
}

// run runs podman and returns its combined output and exit code.
func (p *podmanEnv) run(args ...string) (string, int) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	full := append([]string{"--root", filepath.Join(p.dir, "root"), "--runroot", filepath.Join(p.dir, "runroot"),
		"--storage-driver", "vfs", "--tmpdir", filepath.Join(p.dir, "tmp")}, args...)
	full = append([]string{"--cni-config-dir", filepath.Join(p.dir, "cni")}, full...)
	name, argv := "podman", full
	if p.netns != "" {
		name, argv = "ip", append([]string{"netns", "exec", p.netns, "podman"}, full...)
	}
	cmd := exec.CommandContext(ctx, name, argv...)
	cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+p.conf)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		p.t.Fatalf("podman %v: %v", args, err)
	}
	return string(out), code
}

func TestPodmanRun(t *testing.T) {
	p := newPodman(t)
	out, code := p.run("run", "--rm", "--network", "none", "localhost/busybox", "sh", "-c", "echo hello from a VM; exit 3")
	if code != 3 || !strings.Contains(out, "hello from a VM") {
		t.Fatalf("podman run: exit %d: %s", code, out)
	}
	vol := t.TempDir()
	os.WriteFile(filepath.Join(vol, "f"), []byte("volume-data\n"), 0o644)
	out, code = p.run("run", "--rm", "--network", "none", "-v", vol+":/data:ro", "--read-only", "--memory", "64m", "--cpus", "2",
		"localhost/busybox", "sh", "-c", "cat /data/f; touch /data/x || echo vol-ro; touch /x || echo root-ro; grep -c processor /proc/cpuinfo")
	if code != 0 {
		t.Fatalf("podman run with a volume: exit %d: %s", code, out)
	}
	for _, want := range []string{"volume-data", "vol-ro", "root-ro", "\n2\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(vol, "x")); err == nil {
		t.Error("the container wrote into a read-only volume")
	}
	// A user namespace, as --uidmap makes it: root in the container is
	// host uid 100000.
	out, code = p.run("run", "--rm", "--network", "none", "--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536",
		"localhost/busybox", "sh", "-c", "id -u; cat /proc/self/uid_map")
	if f := strings.Fields(out); code != 0 || len(f) < 4 || f[0] != "0" || f[2] != "100000" {
		t.Errorf("podman run --uidmap: exit %d: %s", code, out)
	}
}

func TestPodmanDetached(t *testing.T) {
	p := newPodman(t)
	out, code := p.run("run", "-d", "--name", "bg", "--network", "none", "localhost/busybox", "sh", "-c", "echo started; sleep 1000")
	if code != 0 {
		t.Fatalf("podman run -d: %s", out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, _ = p.run("logs", "bg")
		if strings.Contains(out, "started") || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(out, "started") {
		t.Errorf("podman logs: %q", out)
	}
	out, code = p.run("exec", "bg", "sh", "-c", "echo in-exec; exit 4")
	if code != 4 || !strings.Contains(out, "in-exec") {
		t.Errorf("podman exec: exit %d: %q", code, out)
	}
	// podman cp joins the mount namespace of the pid the runtime reports
	// (the supervisor): it must find the container's files there, and
	// never write to the host's.
	src := filepath.Join(t.TempDir(), "cp-in")
	if err := os.WriteFile(src, []byte("copied in\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	escape := "/hull-podman-cp-" + strconv.Itoa(os.Getpid())
	defer os.Remove(escape)
	if out, code := p.run("cp", src, "bg:"+escape); code != 0 {
		t.Errorf("podman cp into the container: %s", out)
	}
	if _, err := os.Stat(escape); err == nil {
		t.Errorf("podman cp wrote %s on the host", escape)
	}
	if out, code := p.run("exec", "bg", "cat", escape); code != 0 || out != "copied in\n" {
		t.Errorf("the copied file in the container: exit %d, %q", code, out)
	}
	dst := t.TempDir()
	if out, code := p.run("cp", "bg:"+escape, filepath.Join(dst, "cp-out")); code != 0 {
		t.Errorf("podman cp out of the container: %s", out)
	} else if b, err := os.ReadFile(filepath.Join(dst, "cp-out")); err != nil || string(b) != "copied in\n" {
		t.Errorf("copied out: %q, %v", b, err)
	}
	// podman pause and unpause go through the runtime's pause and resume.
	if out, code := p.run("pause", "bg"); code != 0 {
		t.Errorf("podman pause: %s", out)
	}
	if out, _ := p.run("inspect", "-f", "{{.State.Status}}", "bg"); strings.TrimSpace(out) != "paused" {
		t.Errorf("status after podman pause: %q", out)
	}
	if out, code := p.run("unpause", "bg"); code != 0 {
		t.Errorf("podman unpause: %s", out)
	}
	if out, code := p.run("exec", "bg", "echo", "thawed"); code != 0 || !strings.Contains(out, "thawed") {
		t.Errorf("exec after unpause: exit %d: %q", code, out)
	}
	if out, code := p.run("stop", "-t", "1", "bg"); code != 0 {
		t.Errorf("podman stop: %s", out)
	}
	if out, code := p.run("rm", "bg"); code != 0 {
		t.Errorf("podman rm: %s", out)
	}
}

// Port publishing (-p) on a podman network, with podman in a network
// namespace of the test's: the CNI bridge and portmap plugins work there,
// and the container's veth is mirrored into its VM.
func TestPodmanPortPublish(t *testing.T) {
	p := newPodman(t)
	ns := fmt.Sprintf("hullpm%d", os.Getpid()%10000)
	before := netnsNames()
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() {
		p.run("rm", "-af")
		exec.Command("ip", "netns", "del", ns).Run()
		// podman run under `ip netns exec` mounts its containers'
		// namespace files in that command's private mount namespace and
		// leaves the file in /run/netns behind when it removes one (the
		// bind mount was never visible outside that namespace; hull does
		// not touch /run/netns); the test removes them.
		for n := range netnsNames() {
			if !before[n] {
				t.Logf("removing network namespace %s that podman left", n)
				exec.Command("ip", "netns", "del", n).Run()
			}
		}
	})
	exec.Command("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up").Run()
	p.netns = ns
	if out, code := p.run("network", "create", "--subnet", "10.89.7.0/24", "hullnet"); code != 0 {
		t.Fatalf("podman network create: %s", out)
	}
	www := t.TempDir()
	os.WriteFile(filepath.Join(www, "index.html"), []byte("served from a VM\n"), 0o644)
	if out, code := p.run("run", "-d", "--name", "web", "--network", "hullnet", "-p", "8080:80", "-v", www+":/www:ro",
		"localhost/busybox", "busybox", "httpd", "-f", "-p", "80", "-h", "/www"); code != 0 {
		t.Fatalf("podman run -p: %s", out)
	}
	var body []byte
	var err error
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if body, err = httpGet(ns, "127.0.0.1:8080", "/"); err == nil && strings.Contains(string(body), "served from a VM") {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(string(body), "served from a VM") {
		t.Fatalf("GET through the published port: %v: %q", err, body)
	}
	if out, code := p.run("rm", "-f", "web"); code != 0 {
		t.Errorf("podman rm -f: %s", out)
	}
}

func netnsNames() map[string]bool {
	names := map[string]bool{}
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		names[e.Name()] = true
	}
	return names
}

// podman run -it in a terminal: conmon hands hull a console socket, and the
// container's shell talks to the caller's terminal.
func TestPodmanInteractive(t *testing.T) {
	p := newPodman(t)
	master, slave := openPty(t)
	setSize(t, master, 24, 80)
	out := readTTY(master)
	args := append([]string{"--root", filepath.Join(p.dir, "root"), "--runroot", filepath.Join(p.dir, "runroot"),
		"--storage-driver", "vfs", "--tmpdir", filepath.Join(p.dir, "tmp"), "--cni-config-dir", filepath.Join(p.dir, "cni")},
		"run", "-it", "--rm", "--network", "none", "localhost/busybox", "sh")
	cmd := exec.Command("podman", args...)
	cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+p.conf)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// Type until the shell answers: it reads only once it runs.
	if !out.waitFor(t, "answer-42", 90*time.Second, func() { master.Write([]byte("echo answer-$((6*7))\n")) }) {
		cmd.Process.Kill()
		<-done
		t.Fatalf("no answer from the shell; terminal: %q", out.String())
	}
	master.Write([]byte("exit 5\n"))
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("podman run -it did not end; terminal: %q", out.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != 5 {
		t.Errorf("exit status %d, want 5; terminal: %q", code, out.String())
	}
}
