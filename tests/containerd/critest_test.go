package containerd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// critestSkip names the specs that need a registry, which this host
// cannot reach: they pull (PullImage always contacts the registry in
// containerd 1.6, even for an image already present) and then remove the
// cri-tools test images (gcr.io/k8s-staging-cri-tools/test-image-*,
// registry.k8s.io/pause:3.9). Everything else finds its image imported
// locally under the exact name it asks for (ImagesFrom).
var critestSkip = []string{
	`\[k8s\.io\] Image Manager`,                // pull, list, status, remove of test-image-*
	`\[k8s\.io\] Image Consistency`,            // pull, then status/list/remove consistency
	`\[k8s\.io\] Image Identifier Consistency`, // pulls test-image-tag and pause:3.9 from two registries
	`\[Feature:ImageVolume\]`,                  // pulls test-image-* to mount as a volume
}

// critestRun is one handler's run of critest.
type critestRun struct {
	Handler  string
	Specs    map[string]specResult // by full spec name
	Duration time.Duration
	Err      string // the run itself failed (timeout, crash): why
}

type specResult struct {
	State   string // passed, failed, skipped, timedout, interrupted, panicked, aborted, or "not run"
	Message string // the failure or skip message, first lines
	RunTime time.Duration
}

// TestCritest runs cri-tools' critest (the binary $HULL_CRITEST, built by
// make critest) against a private containerd, once per runtime handler in
// $HULL_CRITEST_HANDLERS (default "runc,hull"), each with a fresh daemon,
// and writes the verdicts of both side by side to $HULL_CRITEST_OUT
// (default docs/critest.md). Reports and logs go to $HULL_CRITEST_WORK
// (default /var/cache/hull/critest). Opt-in: without HULL_CRITEST it skips,
// since a run takes many minutes. tests/critest/run.sh (make critest) sets
// it all.
func TestCritest(t *testing.T) {
	bin := os.Getenv("HULL_CRITEST")
	if bin == "" {
		t.Skip("HULL_CRITEST names no critest binary (make critest runs this)")
	}
	// HULL_CRITEST_REPORT_ONLY=1 rewrites the document from the reports
	// of the last runs, running nothing (run.sh -r).
	reportOnly := os.Getenv("HULL_CRITEST_REPORT_ONLY") == "1"
	if !reportOnly {
		Require(t)
	}
	handlers := strings.Split(envOr("HULL_CRITEST_HANDLERS", "runc,hull"), ",")
	work := envOr("HULL_CRITEST_WORK", "/var/cache/hull/critest")
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out := envOr("HULL_CRITEST_OUT", filepath.Join(root, "docs", "critest.md"))
	limit, err := time.ParseDuration(envOr("HULL_CRITEST_TIMEOUT", "45m"))
	if err != nil {
		t.Fatalf("HULL_CRITEST_TIMEOUT: %v", err)
	}
	var images []Image
	if !reportOnly {
		images = StandardImages(t)
	}

	var runs []critestRun
	for _, h := range handlers {
		if reportOnly {
			specs, took, err := parseGinkgoReport(filepath.Join(work, h, "report.json"))
			if err != nil {
				t.Fatal(err)
			}
			runs = append(runs, critestRun{Handler: h, Specs: specs, Duration: took})
			continue
		}
		t.Run(h, func(t *testing.T) {
			dir := filepath.Join(work, h)
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			d := Start(t, Options{Images: images})
			run := runCritest(t, d, bin, h, dir, limit)
			// Keep containerd's log beside the report: the daemon's
			// directory goes with the cleanup.
			if b, err := os.ReadFile(d.LogPath); err == nil {
				_ = os.WriteFile(filepath.Join(dir, "containerd.log"), b, 0o644)
			}
			runs = append(runs, run)
			if run.Err != "" {
				// Spec failures are results; a run without a report
				// is not.
				t.Errorf("critest run for %s: %s (log: %s)", h, run.Err, filepath.Join(dir, "critest.log"))
			}
			n := count(run)
			t.Logf("critest --runtime-handler=%s: %d passed, %d failed, %d skipped, %d other (%s)%s",
				h, n["passed"], n["failed"], n["skipped"], n["other"], run.Duration.Round(time.Second), errSuffix(run.Err))
		})
	}
	if len(runs) == 0 {
		t.Fatal("no critest run")
	}
	md := critestMarkdown(runs, bin)
	// Hand-written notes on the set-up follow the generated part.
	if notes, err := os.ReadFile(filepath.Join(root, "tests", "critest", "notes.md")); err == nil {
		md += string(notes)
	}
	if err := os.WriteFile(out, []byte(md), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", out)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func errSuffix(s string) string {
	if s == "" {
		return ""
	}
	return "; run error: " + s
}

// runCritest runs critest for one handler, serially, under ginkgo's own
// suite timeout (which still writes the report) and a harder one of ours.
func runCritest(t *testing.T, d *Daemon, bin, handler, dir string, limit time.Duration) critestRun {
	report := filepath.Join(dir, "report.json")
	ep := "unix://" + d.Address
	args := []string{
		"-runtime-endpoint=" + ep,
		"-image-endpoint=" + ep,
		"-runtime-handler=" + handler,
		// Serial: critest's default -parallel=1 (passing it trips
		// ginkgo's check against go test's -parallel).
		"-ginkgo.skip=" + strings.Join(critestSkip, "|"),
		"-ginkgo.timeout=" + limit.String(),
		"-ginkgo.json-report=" + report,
		"-ginkgo.no-color",
	}
	if f := os.Getenv("HULL_CRITEST_FOCUS"); f != "" {
		args = append(args, "-ginkgo.focus="+f)
	}
	logf, err := os.Create(filepath.Join(dir, "critest.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	ctx, cancel := context.WithTimeout(t.Context(), limit+5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	// ipcmk and friends from the host; critest runs from the work dir.
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	t.Logf("%s %s (log: %s)", bin, strings.Join(args, " "), logf.Name())
	// critest's HostIpc specs make shared memory segments on the host
	// (ipcmk -M 1048576) and never remove them.
	shmBefore := hostShm(t)
	defer removeNewShm(t, shmBefore)
	start := time.Now()
	runErr := cmd.Run()
	run := critestRun{Handler: handler, Duration: time.Since(start)}
	if ctx.Err() != nil {
		run.Err = fmt.Sprintf("killed after %s", limit+5*time.Minute)
	}
	specs, _, err := parseGinkgoReport(report)
	if err != nil {
		run.Err = strings.TrimPrefix(run.Err+"; ", "; ") + err.Error()
		var exitErr *exec.ExitError
		if runErr != nil && !errors.As(runErr, &exitErr) {
			run.Err += "; " + runErr.Error()
		}
	}
	run.Specs = specs
	return run
}

// shmSegment is a line of /proc/sysvipc/shm.
type shmSegment struct{ id, size, nattch string }

// hostShm lists the host's System V shared memory segments, by id.
func hostShm(t *testing.T) map[string]shmSegment {
	b, err := os.ReadFile("/proc/sysvipc/shm")
	if err != nil {
		t.Fatalf("shared memory segments: %v", err)
	}
	segs := map[string]shmSegment{}
	for i, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 7 {
			continue // header
		}
		segs[f[1]] = shmSegment{id: f[1], size: f[3], nattch: f[6]}
	}
	return segs
}

// removeNewShm removes the segments critest made: new since before,
// critest's size, attached to nothing.
func removeNewShm(t *testing.T, before map[string]shmSegment) {
	for id, s := range hostShm(t) {
		if _, ok := before[id]; ok || s.size != "1048576" || s.nattch != "0" {
			continue
		}
		if _, err := unix.SysvShmCtl(parseInt(id), unix.IPC_RMID, nil); err != nil {
			t.Errorf("remove shared memory segment %s that critest left: %v", id, err)
		}
	}
}

func parseInt(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// ginkgoReport is the part of ginkgo v2's JSON report read here.
type ginkgoReport struct {
	RunTime     time.Duration
	SpecReports []struct {
		ContainerHierarchyTexts []string
		LeafNodeText            string
		LeafNodeType            string
		State                   string
		RunTime                 time.Duration
		Failure                 struct {
			Message             string
			FailureNodeType     string
			FailureNodeLocation struct {
				FileName   string
				LineNumber int
			}
		}
	}
}

// parseGinkgoReport reads the verdict of every spec (It) of a ginkgo JSON
// report, and the suite's run time.
func parseGinkgoReport(path string) (map[string]specResult, time.Duration, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, fmt.Errorf("no ginkgo report: %w", err)
	}
	var suites []ginkgoReport
	if err := json.Unmarshal(b, &suites); err != nil {
		return nil, 0, fmt.Errorf("ginkgo report %s: %w", path, err)
	}
	specs := map[string]specResult{}
	var took time.Duration
	for _, s := range suites {
		took += s.RunTime
		for _, r := range s.SpecReports {
			if r.LeafNodeType != "It" {
				continue // suite setup nodes, report nodes
			}
			name := strings.Join(append(slices.Clone(r.ContainerHierarchyTexts), r.LeafNodeText), " ")
			specs[name] = specResult{State: r.State, Message: firstLines(r.Failure.Message, 3), RunTime: r.RunTime}
		}
	}
	return specs, took, nil
}

func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = append(lines[:n], "...")
	}
	return strings.Join(lines, " ")
}

// count sums a run's verdicts: passed, failed, skipped, other (timed out,
// interrupted, panicked, not run).
func count(r critestRun) map[string]int {
	n := map[string]int{}
	for _, s := range r.Specs {
		switch s.State {
		case "passed", "failed", "skipped":
			n[s.State]++
		default:
			n["other"]++
		}
	}
	return n
}

// critestMarkdown is docs/critest.md: how the runs were made, a summary,
// then every spec's verdict per handler, then the failure messages.
func critestMarkdown(runs []critestRun, bin string) string {
	var b strings.Builder
	ver := func(name string, args ...string) string {
		out, err := exec.Command(name, args...).Output()
		if err != nil {
			return "unknown"
		}
		return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	kernel := ver("uname", "-r")
	b.WriteString("# critest: containerd CRI with runc and with hull\n\n")
	b.WriteString("Generated by `make critest` (tests/critest/run.sh, which runs TestCritest in\n" +
		"tests/containerd); do not edit by hand.\n\n")
	fmt.Fprintf(&b, "- date: %s\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "- host: Linux %s, %d CPUs, %s\n", kernel, runtime.NumCPU(), kvmState())
	fmt.Fprintf(&b, "- containerd: %s (Debian package, private instance: tests/containerd harness)\n", ver(ContainerdBin, "--version"))
	fmt.Fprintf(&b, "- runc: %s\n", ver("runc", "--version"))
	fmt.Fprintf(&b, "- critest: cri-tools v1.37.0 (tests/critest/go.mod), `%s`\n", filepath.Base(bin))
	b.WriteString("- network: CNI bridge (private bridge and /24, isGateway false, no masquerade, hairpin) + portmap, " +
		"from Debian's containernetworking-plugins; ip_forward untouched\n")
	fmt.Fprintf(&b, "- images: built locally from %s (busybox) and tests/fixtures (pause, webserver, nonewprivs), "+
		"imported under the exact names critest asks for (tests/containerd/testimages.go)\n", BusyboxBin())
	fmt.Fprintf(&b, "- skipped on purpose (need a registry): `%s`\n\n", strings.Join(critestSkip, "|"))

	b.WriteString("## Summary\n\n| handler | passed | failed | skipped | other | total | time | run error |\n|---|---|---|---|---|---|---|---|\n")
	for _, r := range runs {
		n := count(r)
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %s | %s |\n", r.Handler, n["passed"], n["failed"], n["skipped"], n["other"],
			len(r.Specs), r.Duration.Round(time.Second), mdCell(r.Err))
	}
	b.WriteString("\n\"skipped\" counts the registry specs above, critest's benchmarks (skipped by default) and specs that skip " +
		"themselves (the message says why). \"other\": timed out, interrupted, panicked.\n\n")

	names := map[string]bool{}
	for _, r := range runs {
		for n := range r.Specs {
			names[n] = true
		}
	}
	sorted := slices.Sorted(func(yield func(string) bool) {
		for n := range names {
			if !yield(n) {
				return
			}
		}
	})
	b.WriteString("## Verdicts\n\n| spec |")
	for _, r := range runs {
		b.WriteString(" " + r.Handler + " |")
	}
	b.WriteString("\n|---|")
	for range runs {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, n := range sorted {
		fmt.Fprintf(&b, "| %s |", mdCell(n))
		for _, r := range runs {
			s, ok := r.Specs[n]
			state := s.State
			if !ok {
				state = "not run"
			}
			if state == "failed" || state == "timedout" || state == "panicked" {
				state = "**" + state + "**"
			}
			fmt.Fprintf(&b, " %s |", state)
		}
		b.WriteString("\n")
	}

	for _, r := range runs {
		var lines []string
		for _, n := range sorted {
			s, ok := r.Specs[n]
			if !ok || s.State == "passed" || s.Message == "" {
				continue
			}
			lines = append(lines, fmt.Sprintf("- %s — %s: %s", mdCell(n), s.State, mdCell(s.Message)))
		}
		if len(lines) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n## Messages, %s\n\n%s\n", r.Handler, strings.Join(lines, "\n"))
	}
	return b.String()
}

func kvmState() string {
	if _, err := os.Stat("/dev/kvm"); err == nil {
		return "/dev/kvm present"
	}
	return "no /dev/kvm"
}

// mdCell makes text safe for one markdown table cell.
func mdCell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	s = strings.ReplaceAll(s, "\n", " ")
	return s
}
