package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// What a running container holds as dirty pages of a host file (written
// through a shared mapping it still has, never synced) reaches the host
// when `hull delete --force` removes it, as it does with runc. delete
// --force used to kill the supervisor, which ended the VM under the
// process: this test then found the host file zero-filled. It now kills
// the container through the supervisor, and the process writes its mapping
// back as it unmaps it on the way out, before the VM goes.
func TestCLIDirtyPagesSurviveForcedDelete(t *testing.T) {
	e := newCLIEnv(t)
	bundle := busyboxBundle(t)
	bin := filepath.Join(bundle, "rootfs", "bin", "mmapwrite")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "./tests/fixtures/mmapwrite")
	build.Dir = repoRoot(t)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building mmapwrite: %v\n%s", err, out)
	}
	vol := t.TempDir()
	const text = "written through a shared mapping"
	spec := busyboxSpec("/bin/mmapwrite", "/data/out", text)
	spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: vol, Options: []string{"rbind", "rw"}})
	writeSpec(t, bundle, spec)
	if out, errOut, code := e.hull("run", "--detach", "--bundle", bundle, "dirty"); code != 0 {
		t.Fatalf("run: exit %d: %s %s", code, out, errOut)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(vol, "out.ready")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			e.hull("delete", "--force", "dirty")
			t.Fatal("mmapwrite did not write its file within 60 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, errOut, code := e.hull("delete", "--force", "dirty"); code != 0 {
		t.Fatalf("delete --force: %s", errOut)
	}
	got, err := os.ReadFile(filepath.Join(vol, "out"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != text {
		t.Fatalf("host file holds %q, want %q: the VM ended with the container's dirty pages", got, text)
	}
}

// Dirty pages that a process still holds when the container's init exits
// reach the host too, whether the process dies with the init (its own PID
// namespace: the guest flushes before it reports the exit, and the host
// ends the VM without asking again) or outlives it (no PID namespace of
// its own: the VM ends under the process, after the host asked the guest
// to flush).
func TestCLIDirtyPagesSurviveTheInitsExit(t *testing.T) {
	e := newCLIEnv(t)
	bundle := busyboxBundle(t)
	bin := filepath.Join(bundle, "rootfs", "bin", "mmapwrite")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "./tests/fixtures/mmapwrite")
	build.Dir = repoRoot(t)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building mmapwrite: %v\n%s", err, out)
	}
	for _, pidNS := range []bool{true, false} {
		t.Run(map[bool]string{true: "own PID namespace", false: "no PID namespace"}[pidNS], func(t *testing.T) {
			vol := t.TempDir()
			const text = "left dirty by a process the init leaves behind"
			spec := busyboxSpec("sh", "-c", "/bin/mmapwrite /data/out '"+text+"' & "+
				"while [ ! -e /data/out.ready ]; do sleep 0.1; done")
			if !pidNS {
				spec.Linux.Namespaces = slices.DeleteFunc(spec.Linux.Namespaces, func(ns specs.LinuxNamespace) bool {
					return ns.Type == specs.PIDNamespace
				})
			}
			spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/data", Type: "bind", Source: vol, Options: []string{"rbind", "rw"}})
			writeSpec(t, bundle, spec)
			if out, errOut, code := e.hull("run", "--bundle", bundle, "left"); code != 0 {
				t.Fatalf("run: exit %d: %s %s", code, out, errOut)
			}
			got, err := os.ReadFile(filepath.Join(vol, "out"))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != text {
				t.Fatalf("host file holds %q, want %q: the VM ended with the guest's dirty pages", got, text)
			}
		})
	}
}
