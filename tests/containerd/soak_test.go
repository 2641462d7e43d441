package containerd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// soakPods is how many pods the soak test runs at once.
const soakPods = 20

// Soak: 20 pods started in parallel, each with a container, then all
// removed in parallel; nothing of hull's may be left: no QEMU, virtiofsd,
// shim, mount, tap, netns or state directory.
func TestHullSoak(t *testing.T) {
	Require(t)
	t.Cleanup(func() { assertNoHullLeftovers(t) })
	// Twenty TCG guests booting at once on two cores take far longer than
	// one: the bounds grow so that the test measures leaks, not speed.
	cfg := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(cfg, []byte("[hypervisor]\nboot_timeout = \"240s\"\n[agent]\nrequest_timeout = \"120s\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := Start(t, Options{DefaultRuntime: "hull", Images: imagesByRef(t, PauseImage, BusyboxImage), Env: []string{"HULL_CONFIG=" + cfg}})

	type started struct{ pod, ctr string }
	pods := make([]started, soakPods)
	errs := make([]error, soakPods)
	var wg sync.WaitGroup
	begin := time.Now()
	for i := range soakPods {
		podCfg, ctrCfgs := writePod(t, podSpec{name: fmt.Sprintf("soak-%02d", i), commands: [][]string{{"sleep", "3600"}}})
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
			defer cancel()
			pod, err := d.CrictlContext(ctx, "runp", podCfg)
			if err != nil {
				errs[i] = err
				return
			}
			pods[i].pod = strings.TrimSpace(pod)
			id, err := d.CrictlContext(ctx, "create", pods[i].pod, ctrCfgs[0], podCfg)
			if err != nil {
				errs[i] = err
				return
			}
			pods[i].ctr = strings.TrimSpace(id)
			_, errs[i] = d.CrictlContext(ctx, "start", pods[i].ctr)
		}()
	}
	wg.Wait()
	t.Logf("%d pods started in parallel in %s", soakPods, time.Since(begin).Round(time.Millisecond))
	for i, err := range errs {
		if err != nil {
			t.Errorf("pod %d: %v", i, err)
		}
	}
	running := 0
	for _, p := range pods {
		if p.pod != "" && vmsOf(p.pod) == 1 {
			running++
		}
	}
	if running != soakPods {
		t.Errorf("%d of %d pods have their VM", running, soakPods)
	}

	begin = time.Now()
	for i, p := range pods {
		if p.pod == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			if _, err := d.CrictlContext(ctx, "stopp", p.pod); err != nil {
				errs[i] = err
				return
			}
			_, errs[i] = d.CrictlContext(ctx, "rmp", p.pod)
		}()
	}
	wg.Wait()
	t.Logf("%d pods removed in parallel in %s", soakPods, time.Since(begin).Round(time.Millisecond))
	for i, err := range errs {
		if err != nil {
			t.Errorf("removing pod %d: %v", i, err)
		}
	}
	if out, err := d.Crictl(t, "pods", "-q"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("pods left: %q %v", out, err)
	}
	// What containerd keeps per task, and the pods' network namespaces.
	for _, dir := range []string{
		filepath.Join(d.State, "io.containerd.runtime.v2.task", K8sNamespace),
		filepath.Join(d.State, "io.containerd.grpc.v1.cri", "netns"),
	} {
		if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
			t.Errorf("%s holds %d entries after every pod was removed", dir, len(ents))
		}
	}
	for _, p := range pods {
		if p.pod != "" {
			checkPodGone(t, d, p.pod)
		}
	}
}
