package integration

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hull-runtime/hull/internal/sandbox"
)

// The guest kernel must have what runc and Kubernetes expect of a host's:
// a container whose spec asks for it is created, and sees it. The limits
// and sysctls are ones the kubelet sets (a hugetlb limit for every page
// size the node has, the "safe" sysctls) or that podman passes
// (--blkio-weight). Each one failed, or was missing, with a first cut of
// hull's own kernel config.
func TestGuestKernelHasWhatContainersUse(t *testing.T) {
	s, _ := bootWithShare(t)
	ctx := testContext(t)
	spec := busyboxSpec("sh", "-c", `cd /sys/fs/cgroup && cat hugetlb.2MB.max hugetlb.1GB.max io.weight pids.max cgroup.controllers &&
cat /proc/sys/net/ipv4/tcp_syncookies /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/kernel/shm_rmid_forced /proc/filesystems`)
	weight := uint16(500)
	pids := int64(64)
	spec.Linux.Resources.HugepageLimits = []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 4 << 21}, {Pagesize: "1GB", Limit: 0}}
	spec.Linux.Resources.BlockIO = &specs.LinuxBlockIO{Weight: &weight}
	spec.Linux.Resources.Pids = &specs.LinuxPids{Limit: &pids}
	spec.Linux.Sysctl = map[string]string{
		"net.ipv4.tcp_syncookies":             "0",
		"net.ipv4.ip_unprivileged_port_start": "80",
		"kernel.shm_rmid_forced":              "1",
	}
	var stdout, stderr bytes.Buffer
	c, err := s.CreateContainer(ctx, sandbox.ContainerConfig{
		ID: "kernel", Bundle: busyboxBundle(t), Spec: spec,
		Stdio: sandbox.Stdio{Stdout: &stdout, Stderr: &stderr},
	})
	if err != nil {
		t.Fatalf("a container with hugetlb, io weight, pids and safe sysctls: %v", err)
	}
	defer c.Delete(context.WithoutCancel(ctx), true)
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if status, err := c.Init().Wait(wctx); err != nil || status != 0 {
		t.Fatalf("exit %d, %v; stderr %q", status, err, stderr.String())
	}
	lines := strings.Split(stdout.String(), "\n")
	if len(lines) < 8 {
		t.Fatalf("output %q", stdout.String())
	}
	// libcontainer turns blkio weight 500 (10-1000) into io.weight 4950
	// (1-10000).
	want := []string{"8388608", "0", "default 4950", "64"}
	for i, w := range want {
		if lines[i] != w {
			t.Errorf("line %d: %q, want %q (output %q)", i, lines[i], w, stdout.String())
		}
	}
	for _, ctl := range []string{"cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"} {
		if !strings.Contains(" "+lines[4]+" ", " "+ctl+" ") {
			t.Errorf("controller %s missing from %q", ctl, lines[4])
		}
	}
	if lines[5] != "0" || lines[6] != "80" || lines[7] != "1" {
		t.Errorf("sysctls %q, want 0, 80, 1", lines[5:8])
	}
	for _, fs := range []string{"mqueue", "overlay", "virtiofs", "devpts", "cgroup2", "tmpfs", "hugetlbfs"} {
		if !strings.Contains(stdout.String(), "\t"+fs+"\n") {
			t.Errorf("guest kernel lacks file system %s", fs)
		}
	}
}
