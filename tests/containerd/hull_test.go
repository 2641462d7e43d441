package containerd

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hull-runtime/hull/internal/oci"
)

// hullDaemon starts a containerd whose CRI runs hull by default, with the
// busybox and pause images.
func hullDaemon(t *testing.T) *Daemon {
	t.Helper()
	Require(t)
	// Registered first, so it runs after the harness removed every pod.
	t.Cleanup(func() { assertNoHullLeftovers(t) })
	return Start(t, Options{DefaultRuntime: "hull", Images: imagesByRef(t, PauseImage, BusyboxImage)})
}

// hullProcesses lists the live (not zombie) processes of hull's making:
// QEMU VMs, virtiofsd and hull shims.
func hullProcesses() []string {
	var out []string
	for _, p := range Processes() {
		c := p.Cmdline()
		if p.Zombie {
			continue
		}
		if strings.Contains(c, "containerd-shim-hull-v2") || (strings.Contains(c, "qemu-system") && strings.Contains(c, "hull-")) ||
			(strings.Contains(c, "virtiofsd") && strings.Contains(c, "/.shim/")) {
			out = append(out, fmt.Sprintf("%d %s", p.Pid, c))
		}
	}
	return out
}

// assertNoHullLeftovers checks, after the harness removed every pod, that
// no VM, virtiofsd, shim, mount or pod directory of hull's is left.
func assertNoHullLeftovers(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var procs []string
	for {
		if procs = hullProcesses(); len(procs) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(procs) > 0 {
		t.Errorf("processes left: %q", procs)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mounts), "\n") {
		if strings.Contains(l, "/.shim/") {
			t.Errorf("mount left: %s", l)
		}
	}
	if ents, err := os.ReadDir("/run/hull/.shim/" + K8sNamespace); err == nil && len(ents) > 0 {
		t.Errorf("pod directories left under /run/hull/.shim/%s: %d", K8sNamespace, len(ents))
	}
}

type podSpec struct {
	name     string
	hostNet  bool
	commands [][]string // one container each
	memLimit int64      // bytes, for every container; 0 = none
}

func writePod(t *testing.T, p podSpec) (pod string, ctrs []string) {
	t.Helper()
	linux := map[string]any{}
	if p.hostNet {
		linux["security_context"] = map[string]any{"namespace_options": map[string]any{"network": 2}}
	}
	pod = writeJSON(t, map[string]any{
		"metadata":      map[string]any{"name": p.name, "namespace": "hull-test", "uid": p.name + "-uid", "attempt": 1},
		"hostname":      p.name,
		"log_directory": t.TempDir(),
		"linux":         linux,
	})
	for i, cmd := range p.commands {
		clinux := map[string]any{}
		if p.memLimit > 0 {
			clinux["resources"] = map[string]any{"memory_limit_in_bytes": p.memLimit}
		}
		ctrs = append(ctrs, writeJSON(t, map[string]any{
			"metadata": map[string]any{"name": fmt.Sprintf("c%d", i)},
			"image":    map[string]any{"image": BusyboxImage},
			"command":  cmd,
			"log_path": fmt.Sprintf("c%d.log", i),
			"linux":    clinux,
		}))
	}
	return pod, ctrs
}

// runPod runs a pod and its containers with crictl and returns their ids.
func runPod(t *testing.T, d *Daemon, p podSpec) (string, []string) {
	t.Helper()
	podCfg, ctrCfgs := writePod(t, p)
	pod := crictl(t, d, "runp", podCfg)
	var ids []string
	for _, c := range ctrCfgs {
		id := crictl(t, d, "create", pod, c, podCfg)
		crictl(t, d, "start", id)
		ids = append(ids, id)
	}
	return pod, ids
}

func podIP(t *testing.T, d *Daemon, pod string) string {
	t.Helper()
	var status struct {
		Status struct{ Network struct{ IP string } }
	}
	if err := json.Unmarshal([]byte(crictl(t, d, "inspectp", pod)), &status); err != nil {
		t.Fatal(err)
	}
	return status.Status.Network.IP
}

func waitLog(t *testing.T, d *Daemon, id, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := d.Crictl(t, "logs", id)
		if err == nil && strings.Contains(out, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("logs of %s: no %q after 30s: %q, %v", id, want, out, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// vmsOf counts the QEMU processes of a pod.
func vmsOf(pod string) int {
	n := 0
	for _, p := range hullProcesses() {
		if strings.Contains(p, "qemu-system") && strings.Contains(p, "hull-"+pod) {
			n++
		}
	}
	return n
}

// ctr run through the shim: output, exit status, a pod of its own, and
// nothing left after --rm.
func TestHullCtrRun(t *testing.T) {
	d := hullDaemon(t)
	out, err := d.Ctr(t, "-n", K8sNamespace, "run", "--rm", "--runtime", "io.containerd.hull.v2", BusyboxImage, "hull-ctr-1",
		"sh", "-c", "echo out; echo err >&2; exit 3")
	// The run fails with the container's status; stderr comes with it.
	if out != "out\n" || err == nil || !strings.Contains(err.Error(), "exit status 3: err") {
		t.Errorf("ctr run: want stdout \"out\" and exit status 3 with stderr \"err\", got %q, %v", out, err)
	}
}

// A pod through the CRI: one VM for the pod and both its containers,
// exec, logs, stats, the network (pod to host, host to pod, pod to pod),
// then removal with nothing left.
func TestHullPod(t *testing.T) {
	d := hullDaemon(t)
	ln, err := net.Listen("tcp", net.JoinHostPort(d.Gateway.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hello from the host") }), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	pod, ids := runPod(t, d, podSpec{name: "hull-pod", commands: [][]string{
		{"sh", "-c", "echo started; mkdir -p /www && echo served-by-pod > /www/index.html && exec httpd -f -p 8080 -h /www"},
		{"sh", "-c", "echo second; exec sleep 1000"},
	}})
	waitLog(t, d, ids[0], "started")
	waitLog(t, d, ids[1], "second")
	if n := vmsOf(pod); n != 1 {
		t.Errorf("pod %s has %d VMs, want 1", pod, n)
	}
	if out := crictl(t, d, "exec", ids[1], "hostname"); out != "hull-pod" {
		t.Errorf("hostname in the pod: %q", out)
	}
	if out, err := d.Crictl(t, "exec", ids[1], "sh", "-c", "exit 4"); err == nil {
		t.Errorf("exec exit 4 succeeded: %q", out)
	}
	// CRI's exec with stdin ends the input with CloseIO right after the
	// last bytes: none of them may be lost.
	if out := crictlStdin(t, d, strings.Repeat("y", 60000), "exec", "-i", ids[1], "wc", "-c"); out != "60000" {
		t.Errorf("exec -i with 60000 bytes on stdin: wc -c says %q", out)
	}
	// The containers share the pod's network: localhost reaches the
	// other container's server.
	if out := crictl(t, d, "exec", ids[1], "wget", "-q", "-O", "-", "http://127.0.0.1:8080/"); out != "served-by-pod" {
		t.Errorf("container to container over localhost: %q", out)
	}
	url := "http://" + ln.Addr().String() + "/"
	if out := crictl(t, d, "exec", ids[1], "wget", "-q", "-O", "-", url); out != "hello from the host" {
		t.Errorf("pod to host: %q", out)
	}
	ip := podIP(t, d, pod)
	if parsed := net.ParseIP(ip); parsed == nil || !d.Subnet.Contains(parsed) {
		t.Fatalf("pod IP %q not in %s", ip, d.Subnet)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + net.JoinHostPort(ip, "8080") + "/")
	if err != nil {
		t.Errorf("host to pod: %v", err)
	} else {
		b := make([]byte, 64)
		n, _ := resp.Body.Read(b)
		resp.Body.Close()
		if strings.TrimSpace(string(b[:n])) != "served-by-pod" {
			t.Errorf("host to pod: %q", b[:n])
		}
	}
	// The CRI's port forwarding: containerd dials the pod's loopback on
	// the host, which the shim relays to the guest's.
	if out := portForward(t, d, pod, 8080); out != "served-by-pod" {
		t.Errorf("port-forward: %q", out)
	}
	// Pod to pod, over the bridge.
	_, other := runPod(t, d, podSpec{name: "hull-pod-2", commands: [][]string{{"sleep", "1000"}}})
	if out := crictl(t, d, "exec", other[0], "wget", "-q", "-O", "-", "http://"+net.JoinHostPort(ip, "8080")+"/"); out != "served-by-pod" {
		t.Errorf("pod to pod: %q", out)
	}
	var stats struct {
		Stats []struct {
			Attributes struct{ ID string }
			Memory     struct{ WorkingSetBytes struct{ Value string } }
			CPU        struct{ UsageCoreNanoSeconds struct{ Value string } }
		}
	}
	if err := json.Unmarshal([]byte(crictl(t, d, "stats", "-o", "json", ids[0])), &stats); err != nil {
		t.Fatal(err)
	}
	if len(stats.Stats) != 1 || zeroOrMissing(stats.Stats[0].Memory.WorkingSetBytes.Value) || zeroOrMissing(stats.Stats[0].CPU.UsageCoreNanoSeconds.Value) {
		t.Errorf("stats: %+v", stats)
	}
	for _, id := range ids {
		crictl(t, d, "stop", "-t", "2", id)
		crictl(t, d, "rm", id)
	}
	crictl(t, d, "stopp", pod)
	crictl(t, d, "rmp", pod)
	if n := vmsOf(pod); n != 0 {
		t.Errorf("pod %s still has %d VMs after rmp", pod, n)
	}
}

// A pod on the host's network is refused with a clear error and leaves
// nothing.
func TestHullHostNetworkRefused(t *testing.T) {
	d := hullDaemon(t)
	podCfg, _ := writePod(t, podSpec{name: "hull-hostnet", hostNet: true})
	out, err := d.Crictl(t, "runp", podCfg)
	if err == nil || !strings.Contains(out+err.Error(), "host networking is not supported") {
		t.Fatalf("host-network pod: %q, %v", out, err)
	}
}

// The guest's OOM killer shows as the container's OOMKilled reason: for an
// init that fills its memory slowly, and for one killed at once (critest's
// `dd bs=20M` under 15 MiB), whose exit comes before the kernel's deferred
// notice of the kill.
func TestHullOOM(t *testing.T) {
	d := hullDaemon(t)
	for _, c := range []struct {
		name  string
		limit int64
		cmd   []string
	}{
		{"hull-oom", 32 << 20, []string{"sh", "-c", "echo filling; x=0123456789abcdef; while true; do x=$x$x; done"}},
		{"hull-oom-at-once", 15 << 20, []string{"sh", "-c", "dd if=/dev/zero of=/dev/null bs=20M"}},
	} {
		_, ids := runPod(t, d, podSpec{name: c.name, memLimit: c.limit, commands: [][]string{c.cmd}})
		deadline := time.Now().Add(60 * time.Second)
		for {
			out := crictl(t, d, "inspect", "-o", "go-template", "--template", "{{.status.state}} {{.status.reason}} {{.status.exitCode}}", ids[0])
			if strings.HasPrefix(out, "CONTAINER_EXITED") {
				if !strings.Contains(out, "OOMKilled 137") {
					t.Errorf("%s: exited container: %q, want reason OOMKilled, exit code 137", c.name, out)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: container not OOM-killed within 60s: %q", c.name, out)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
}

// Faults: containerd restarts under a running pod and finds it again;
// QEMU killed ends every task of the pod (exit 255) and the pod is removed
// cleanly; a SIGKILLed shim is cleaned up by containerd's delete.
func TestHullResilience(t *testing.T) {
	d := hullDaemon(t)
	pod, ids := runPod(t, d, podSpec{name: "hull-restart", commands: [][]string{{"sleep", "1000"}, {"sleep", "1000"}}})
	d.Restart(t)
	if out := crictl(t, d, "exec", ids[0], "echo", "still here"); out != "still here" {
		t.Errorf("exec after containerd restart: %q", out)
	}

	for _, p := range hullProcesses() {
		if strings.Contains(p, "qemu-system") && strings.Contains(p, "hull-"+pod) {
			pid, _ := strconv.Atoi(strings.Fields(p)[0])
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for _, id := range ids {
		deadline := time.Now().Add(30 * time.Second)
		for {
			out := crictl(t, d, "inspect", "-o", "go-template", "--template", "{{.status.state}} {{.status.exitCode}}", id)
			if out == "CONTAINER_EXITED 255" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("container %s after QEMU was killed: %q", id, out)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	crictl(t, d, "stopp", pod)
	crictl(t, d, "rmp", pod)
	checkPodGone(t, d, pod)

	pod2, _ := runPod(t, d, podSpec{name: "hull-shimkill", commands: [][]string{{"sleep", "1000"}}})
	for _, p := range hullProcesses() {
		if strings.Contains(p, "containerd-shim-hull-v2") && strings.Contains(p, pod2) {
			pid, _ := strconv.Atoi(strings.Fields(p)[0])
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	crictl(t, d, "stopp", pod2)
	crictl(t, d, "rmp", pod2)
	checkPodGone(t, d, pod2)
	// assertNoHullLeftovers (cleanup) checks VM, virtiofsd, mounts, dirs.
}

// zeroOrMissing reports whether a number crictl printed (as a JSON string) is
// missing or zero.
func zeroOrMissing(s string) bool {
	n, err := strconv.ParseUint(s, 10, 64)
	return err != nil || n == 0
}

// checkPodGone fails the test if a removed pod's directory is still there,
// with containerd's warnings and errors, which hold the shim's.
func checkPodGone(t *testing.T, d *Daemon, pod string) {
	t.Helper()
	if _, err := os.Stat("/run/hull/.shim/" + K8sNamespace + "/" + pod); err != nil {
		return
	}
	log, _ := os.ReadFile(d.LogPath)
	for _, l := range strings.Split(string(log), "\n") {
		if strings.Contains(l, "level=error") || strings.Contains(l, "level=warn") {
			t.Log(l)
		}
	}
	t.Errorf("pod %s: directory left after removal", pod)
}

// OCI hooks in the spec containerd hands the shim run on the host, at the
// spec's points, with the container's state on stdin; startContainer's in
// the container, as the runtime spec has it (its path is the rootfs's).
func TestHullCtrHooks(t *testing.T) {
	d := hullDaemon(t)
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(filepath.Join(rootfs, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	bb, err := os.ReadFile("/bin/busybox") // busybox-static: the rootfs has no libraries
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	kinds := []string{"createRuntime", "createContainer", "poststart", "poststop"}
	spec := oci.Default()
	spec.Process.Terminal = false
	spec.Process.Args = []string{"/bin/busybox", "echo", "hooked"}
	spec.Root = &specs.Root{Path: rootfs}
	spec.Hooks = &specs.Hooks{}
	for _, k := range kinds {
		h := []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "cat > " + filepath.Join(dir, k)}}}
		switch k {
		case "createRuntime":
			spec.Hooks.CreateRuntime = h
		case "createContainer":
			spec.Hooks.CreateContainer = h
		case "poststart":
			spec.Hooks.Poststart = h
		case "poststop":
			spec.Hooks.Poststop = h
		}
	}
	spec.Hooks.StartContainer = []specs.Hook{{Path: "/bin/busybox", Args: []string{"busybox", "sh", "-c", "cat > /startContainer"}}}
	out := ctrRun(t, d, "run", "--rm", "--runtime", "io.containerd.hull.v2", "--config", writeJSON(t, spec), "hull-hooks")
	if out != "hooked" {
		t.Errorf("output %q", out)
	}
	for _, k := range append(kinds, "rootfs/startContainer") {
		b, err := os.ReadFile(filepath.Join(dir, k))
		if err != nil {
			t.Errorf("%s hook did not run: %v", k, err)
			continue
		}
		var st struct{ ID, Status string }
		if err := json.Unmarshal(b, &st); err != nil || st.ID != "hull-hooks" {
			t.Errorf("%s hook got state %q (%v)", k, b, err)
		}
	}
}

// stdin reaches the container and its end (containerd's CloseIO) ends
// the container's input; a terminal gets the size of the caller's.
func TestHullCtrStdinAndTerminal(t *testing.T) {
	d := hullDaemon(t)
	cmd := exec.Command(CtrBin, "--address", d.Address, "-n", K8sNamespace, "run", "--rm", "--runtime", "io.containerd.hull.v2",
		BusyboxImage, "hull-stdin", "sh", "-c", "wc -c; echo done")
	cmd.Stdin = strings.NewReader(strings.Repeat("x", 100000))
	out, err := cmd.CombinedOutput()
	if err != nil || strings.Fields(string(out))[0] != "100000" || !strings.Contains(string(out), "done") {
		t.Errorf("stdin through ctr run: %q, %v", out, err)
	}

	// script(1) gives ctr a terminal of a known size.
	inner := fmt.Sprintf("stty cols 91 rows 33; %s --address %s -n %s run --rm -t --runtime io.containerd.hull.v2 %s hull-tty sh -c 'stty size; tty'",
		CtrBin, d.Address, K8sNamespace, BusyboxImage)
	out, err = exec.Command("script", "-qec", inner, "/dev/null").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "33 91") || !strings.Contains(string(out), "/dev/pts/") {
		t.Errorf("ctr run -t: want size 33 91 on a pty, got %q, %v", out, err)
	}
}

// portForward runs crictl port-forward to a pod's port and fetches / from
// the local end.
func portForward(t *testing.T, d *Daemon, pod string, port int) string {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	local := l.Addr().(*net.TCPAddr).Port
	l.Close()
	crictlBin, err := CrictlPath(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(crictlBin, "--config", d.CrictlConfig, "port-forward", pod, fmt.Sprintf("%d:%d", local, port))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	url := fmt.Sprintf("http://127.0.0.1:%d/", local)
	client := &http.Client{Timeout: 10 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := client.Get(url)
		if err == nil {
			b := make([]byte, 64)
			n, _ := resp.Body.Read(b)
			resp.Body.Close()
			return strings.TrimSpace(string(b[:n]))
		}
		if time.Now().After(deadline) {
			t.Errorf("port-forward %s: %v", url, err)
			return ""
		}
		time.Sleep(300 * time.Millisecond)
	}
}
