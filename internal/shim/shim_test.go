package shim

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	agent "github.com/hull-runtime/hull/api/agent/v1"
	"github.com/hull-runtime/hull/internal/config"
)

func TestGroupOf(t *testing.T) {
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		group       string
		owner       bool
	}{
		{"ctr container is its own pod", nil, "c1", true},
		{"cri sandbox owns its pod", map[string]string{annotationContainerType: "sandbox", annotationSandboxID: "c1"}, "c1", true},
		{"cri container joins its sandbox", map[string]string{annotationContainerType: "container", annotationSandboxID: "pod"}, "pod", false},
		{"container without sandbox id stands alone", map[string]string{annotationContainerType: "container"}, "c1", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, o := groupOf("c1", &specs.Spec{Annotations: tc.annotations})
			if g != tc.group || o != tc.owner {
				t.Fatalf("got %s %v, want %s %v", g, o, tc.group, tc.owner)
			}
		})
	}
}

func TestSizePod(t *testing.T) {
	cfg := config.Default()
	spec := &specs.Spec{Annotations: map[string]string{
		annotationSandboxCPUQuota: "250000", annotationSandboxCPUPeriod: "100000", annotationSandboxMemory: "536870912",
	}}
	sizePod(&cfg, spec)
	if cfg.Hypervisor.VCPUs != 3 || cfg.Hypervisor.MemoryMiB != 256+512 {
		t.Fatalf("got %d vcpus %d MiB, want 3 and 768", cfg.Hypervisor.VCPUs, cfg.Hypervisor.MemoryMiB)
	}
	cfg = config.Default()
	sizePod(&cfg, &specs.Spec{Annotations: map[string]string{annotationSandboxMemory: "junk", annotationSandboxCPUQuota: "-1", annotationSandboxCPUPeriod: "100000"}})
	if cfg.Hypervisor.VCPUs != 1 || cfg.Hypervisor.MemoryMiB != 256 {
		t.Fatalf("bad annotations changed the size: %d vcpus %d MiB", cfg.Hypervisor.VCPUs, cfg.Hypervisor.MemoryMiB)
	}
}

func TestRefuseHostNetwork(t *testing.T) {
	host := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}}}}
	err := refuseHostNetwork(host)
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "host networking") {
		t.Fatalf("host network spec: %v", err)
	}
	own := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/var/run/netns/x"}}}}
	if err := refuseHostNetwork(own); err != nil {
		t.Fatal(err)
	}
}

func TestMetrics(t *testing.T) {
	m := metrics(&agent.StatsContainerResponse{
		CgroupVersion: 2,
		Cpu:           &agent.CpuStats{UsageTotalNs: 5_000_000, UsageUserNs: 3_000_000, UsageSystemNs: 2_000_000},
		Memory: &agent.MemoryStats{UsageBytes: 4096, InactiveFileBytes: 1024, Stat: map[string]uint64{"shmem": 7},
			Events: &agent.MemoryEvents{OomKill: 2}},
		Pids: &agent.PidsStats{Current: 3, Limit: 10},
	})
	if m.CPU.UsageUsec != 5000 || m.CPU.UserUsec != 3000 || m.CPU.SystemUsec != 2000 {
		t.Fatalf("cpu: %+v", m.CPU)
	}
	if m.Memory.Usage != 4096 || m.Memory.InactiveFile != 1024 || m.Memory.Shmem != 7 || m.Memory.UsageLimit != math.MaxUint64 {
		t.Fatalf("memory: %+v", m.Memory)
	}
	if m.MemoryEvents.OomKill != 2 || m.Pids.Current != 3 || m.Pids.Limit != 10 {
		t.Fatalf("events/pids: %+v %+v", m.MemoryEvents, m.Pids)
	}
}

func TestOpenIOFileLog(t *testing.T) {
	log := filepath.Join(t.TempDir(), "out.log")
	h, err := openIO(context.Background(), "c1", "default", stdioPaths{Stdout: "file://" + log})
	if err != nil {
		t.Fatal(err)
	}
	s := h.stdio(false)
	s.Stdout.Write([]byte("out\n"))
	s.Stderr.Write([]byte("err\n"))
	h.close()
	b, _ := os.ReadFile(log)
	if string(b) != "out\nerr\n" {
		t.Fatalf("log holds %q", b)
	}
}

func TestOpenIOBinaryLogger(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "captured")
	script := filepath.Join(dir, "logger")
	// A logger as containerd defines one: output on fds 3 and 4, fd 5
	// closed when ready; the arguments and environment tell it where.
	body := "#!/bin/sh\nexec 5>&-\ncat <&3 > \"$2.$CONTAINER_ID.$CONTAINER_NAMESPACE\"\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	h, err := openIO(context.Background(), "c1", "ns1", stdioPaths{Stdout: "binary://" + script + "?path=" + out})
	if err != nil {
		t.Fatal(err)
	}
	h.stdio(false).Stdout.Write([]byte("through the logger\n"))
	h.close()
	b, err := os.ReadFile(out + ".c1.ns1")
	if err != nil || string(b) != "through the logger\n" {
		t.Fatalf("logger wrote %q (%v)", b, err)
	}
}

func TestOpenIOBadScheme(t *testing.T) {
	_, err := openIO(context.Background(), "c1", "default", stdioPaths{Stdout: "tcp://x"})
	if !errdefs.IsNotImplemented(err) {
		t.Fatalf("got %v", err)
	}
}

func TestProcessExitOnce(t *testing.T) {
	p := newProcess("c1", "", stdioPaths{}, nil)
	if p.hasExited() {
		t.Fatal("exited at birth")
	}
	if !p.setExited(3, time.Unix(1, 0)) || p.setExited(255, time.Now()) {
		t.Fatal("exit recorded other than once")
	}
	status, _, code, at := p.snapshot()
	if status != task.Status_STOPPED || code != 3 || !at.Equal(time.Unix(1, 0)) {
		t.Fatalf("got %v %d %v", status, code, at)
	}
	if _, err := p.running(); !errdefs.IsNotFound(err) {
		t.Fatalf("running() on an exited process: %v", err)
	}
}

// containerd going away (a restart) closes its end of an output FIFO: the
// shim's writes must not fail with EPIPE, which would end the container's
// output for good; they fill the FIFO and wait for a reader instead.
func TestOpenIOFIFOOutlivesReader(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stdout")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	reader, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	h, err := openIO(context.Background(), "c1", "default", stdioPaths{Stdout: path})
	if err != nil {
		t.Fatal(err)
	}
	defer h.close()
	reader.Close()
	if _, err := h.stdio(false).Stdout.Write([]byte("while containerd is away\n")); err != nil {
		t.Fatalf("write with containerd's reader gone: %v", err)
	}
	// containerd back: it reads what was written meanwhile.
	back, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	buf := make([]byte, 64)
	n, _ := back.Read(buf)
	if string(buf[:n]) != "while containerd is away\n" {
		t.Errorf("read %q after the reader came back", buf[:n])
	}
}

// containerd names the pod's namespaces by the sandbox task's pid, the
// pod's QEMU on the host; the guest gets those of the sandbox container's
// init, and containerd's spec stays as it was.
func TestRewriteNamespaces(t *testing.T) {
	spec := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
		{Type: specs.IPCNamespace, Path: "/proc/4242/ns/ipc"},
		{Type: specs.PIDNamespace, Path: "/proc/4242/ns/pid"},
		{Type: specs.UTSNamespace, Path: "/proc/42420/ns/uts"},
		{Type: specs.MountNamespace},
	}}}
	got := rewriteNamespaces(spec, 4242, 7)
	want := []string{"/proc/7/ns/ipc", "/proc/7/ns/pid", "/proc/42420/ns/uts", ""}
	for i, ns := range got.Linux.Namespaces {
		if ns.Path != want[i] {
			t.Errorf("namespace %d: %q, want %q", i, ns.Path, want[i])
		}
	}
	if spec.Linux.Namespaces[0].Path != "/proc/4242/ns/ipc" {
		t.Error("containerd's spec was changed")
	}
	if other := (&specs.Spec{Linux: &specs.Linux{}}); rewriteNamespaces(other, 4242, 7) != other {
		t.Error("a spec without such paths was copied")
	}
}
