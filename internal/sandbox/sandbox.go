// Package sandbox runs a sandbox: one VM with its guest agent, and later the
// containers inside it. It composes the hypervisor driver, the guest image
// and the agent client, and owns cleanup: every failure on the way up
// undoes every step already taken.
package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"

	agent "github.com/hull-runtime/hull/api/agent/v1"
	"github.com/hull-runtime/hull/internal/agentclient"
	"github.com/hull-runtime/hull/internal/config"
	"github.com/hull-runtime/hull/internal/image"
	"github.com/hull-runtime/hull/internal/network"
	"github.com/hull-runtime/hull/internal/storage"
	"github.com/hull-runtime/hull/internal/vmm/qemu"
)

// Options describes a sandbox to boot.
type Options struct {
	// ID names the sandbox; it becomes part of file names.
	ID     string
	Config config.Config
	// Accel is the accelerator already chosen (see ChooseAccel).
	Accel qemu.Accel
	// RunDir is the directory for this sandbox's VM files and its Record
	// (RecordFile); it is created and, when the sandbox is destroyed or
	// reclaimed (Reclaim), removed.
	RunDir string
	// SharedDir, when set, is a directory (created if missing) that holds
	// what the guest sees through virtio-fs at agent.SharedMountPoint; it
	// is removed when the sandbox is destroyed.
	SharedDir string
	// Hostname is set in the guest when not empty.
	Hostname string
	// Virtiofsd is virtiofsd's path; empty means storage.DefaultVirtiofsd.
	Virtiofsd string
	// NetNS is the path of the network namespace whose links the VM
	// mirrors (see package network); empty means loopback only.
	NetNS string
	// Pod says the VM holds a pod (the shim) rather than one stand-alone
	// container (hull): defaults then favour density (see
	// config.Hypervisor.TCGCacheMiB).
	Pod bool
	// ForwardLoopback relays TCP connections made to 127.0.0.1 in NetNS
	// on the host to the same port on the guest's loopback: the CRI's
	// port forwarding dials there.
	ForwardLoopback bool
	// DeferSetup puts the guest's part of the sandbox's set-up (the
	// shared directory's mount, the hostname, the network) off to the
	// first CreateContainer, which carries it: a VM that holds one
	// container saves a round trip to the host that its guest would spend
	// waiting. Until then the sandbox is only booted.
	DeferSetup bool
}

// SharedFSTag is the virtio-fs tag of the shared directory.
const SharedFSTag = "hullfs"

// coldPagesDelay is how long after the boot QEMU's cold file pages are
// paged out: past the start of a container.
const coldPagesDelay = time.Second

// Timings says where the time of a boot went.
type Timings struct {
	// VMStarted is the time from the call to QEMU answering QMP.
	VMStarted time.Duration
	// AgentReady is the time from the call to the agent answering Check.
	AgentReady time.Duration
}

// Sandbox is a booted VM with a ready agent.
type Sandbox struct {
	id     string
	runDir string
	vm     *qemu.VM
	fs     *storage.Virtiofsd // nil without a shared directory
	io     *agentclient.IOSession
	// shared is what the guest sees at agent.SharedMountPoint; nil
	// without a shared directory.
	shared *storage.Shared
	agent  *agentclient.Client
	net    *network.Network         // nil without a network namespace
	fwd    *network.LoopbackForward // nil without ForwardLoopback
	// rec is what the sandbox holds on the host, kept in RecordFile for
	// Reclaim.
	rec     Record
	channel string
	timings Timings
	// pod says the VM holds a pod rather than one stand-alone container.
	pod bool
	// setupMu guards pendingSetup, the CreateSandbox request that
	// Options.DeferSetup put off to the first container's creation.
	setupMu      sync.Mutex
	pendingSetup *agent.CreateSandboxRequest
	// guestSynced says the guest flushed its unwritten pages when the
	// last process the host waited for exited (Process.WaitLast), and no
	// exec started and no container was removed since.
	guestSynced atomic.Bool
}

var validID = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$`)

// ValidID reports whether id can name a sandbox.
func ValidID(id string) error {
	if !validID.MatchString(id) {
		return fmt.Errorf("sandbox id %q must be 1-64 of [a-zA-Z0-9_.-] starting with a letter or digit: %w", id, errdefs.ErrInvalidArgument)
	}
	return nil
}

// vsockDevice is the device that lets QEMU offer vsock to a guest.
const vsockDevice = "/dev/vhost-vsock"

// useVsock decides the agent transport for the configured mode.
func useVsock(mode string) (bool, error) {
	_, err := os.Stat(vsockDevice)
	have := err == nil
	switch mode {
	case "vsock":
		if !have {
			return false, fmt.Errorf("agent.transport is vsock but %s is missing (modprobe vhost_vsock): %w", vsockDevice, errdefs.ErrFailedPrecondition)
		}
		return true, nil
	case "serial":
		return false, nil
	default:
		return have, nil
	}
}

// kernelParams are the guest kernel parameters hull always sets.
func kernelParams(cfg config.Config) []string {
	p := []string{
		"quiet", "loglevel=3",
		// The VM ends instead of hanging when the guest kernel panics.
		"panic=-1",
		// The guest zeroes pages on allocation by default; that touches, and
		// so costs the host, every page the guest ever allocates.
		"init_on_alloc=0",
		// A sandbox has nothing to gain from mitigations between its own
		// processes that the VM boundary does not already give, and they
		// slow TCG guests badly.
		"mitigations=off",
		"random.trust_cpu=on",
		// The default first percpu chunk is embedded in 2 MiB units, so each
		// later chunk spans 2 MiB per CPU, and kernel memory accounting gives
		// each chunk a zeroed array of 8 bytes per 4-byte slot: 4 MiB of
		// every guest, resident from boot. Page-sized units cut it to
		// about 350 KiB.
		"percpu_alloc=page",
		"hull.log=" + cfg.Runtime.LogLevel,
	}
	if cfg.Hypervisor.FreePageReporting {
		// Report free blocks from 128 KiB up rather than from 2 MiB: an idle
		// guest then gives back about 16 MiB more.
		p = append(p, "hull.page_reporting_order=5")
	}
	return append(p, cfg.Hypervisor.KernelParams...)
}

// VMConfig returns the VM configuration Boot would start for opts, after
// checking the guest image against its manifest.
func VMConfig(opts Options) (qemu.Config, error) {
	cfg := opts.Config
	kernel, initrd, _, err := image.VerifyCached(cfg.Image.Dir, cfg.Runtime.Root)
	if err != nil {
		return qemu.Config{}, fmt.Errorf("guest image: %w", err)
	}
	binary, err := qemu.LookBinary(cfg.Hypervisor.Path)
	if err != nil {
		return qemu.Config{}, err
	}
	vsock, err := useVsock(cfg.Agent.Transport)
	if err != nil {
		return qemu.Config{}, err
	}
	// The translation cache is trimmed only where hull can do it: under
	// TCG, with one vCPU, on a QEMU release it was checked against. Other
	// VMs keep the smaller cache that stays resident.
	h := cfg.Hypervisor
	if h.TCGTrimmed() && opts.Accel == qemu.TCG {
		v, err := qemu.CachedVersion(context.Background(), binary, cfg.Runtime.Root)
		h.TCGTrim = err == nil && v.TrimsTranslations()
	}
	vc := qemu.Config{
		Name:         "hull-" + opts.ID,
		Binary:       binary,
		Machine:      cfg.Hypervisor.Machine,
		Accel:        opts.Accel,
		TBSizeMiB:    h.TCGCacheMiB(opts.Pod),
		TrimTCG:      h.TCGTrimmed() && opts.Accel == qemu.TCG,
		VCPUs:        cfg.Hypervisor.VCPUs,
		MemoryMiB:    cfg.Hypervisor.MemoryMiB,
		SharedMemory: true,
		Kernel:       kernel,
		Initrd:       initrd,
		KernelParams: kernelParams(cfg),
		RunDir:       opts.RunDir,
		SerialPorts:  []string{agent.SerialPortName, agent.IOPortName},
		Balloon:      cfg.Hypervisor.FreePageReporting,
	}
	// The agent loads the modules of the channel the host uses before it
	// serves, and the others after.
	channel := "serial"
	if vsock {
		vc.VsockCID = randomCID()
		channel = "vsock"
	}
	vc.KernelParams = append(vc.KernelParams, "hull.channel="+channel)
	if opts.SharedDir != "" {
		// The agent mounts it while it waits for its channel.
		vc.KernelParams = append(vc.KernelParams, "hull.share="+SharedFSTag)
	}
	if opts.Accel == qemu.TCG {
		vc.TSCKHz = qemu.HostTSCKHz()
	}
	return vc, nil
}

// Boot starts the VM and waits for its agent. On error nothing is left
// behind: no QEMU, no run directory.
func Boot(ctx context.Context, opts Options) (_ *Sandbox, retErr error) {
	start := time.Now()
	if err := ValidID(opts.ID); err != nil {
		return nil, err
	}
	cfg := opts.Config
	logger := log.G(ctx).WithField("sandbox", opts.ID)

	vc, err := VMConfig(opts)
	if err != nil {
		return nil, err
	}
	vsock := vc.VsockCID != 0
	if err := os.MkdirAll(opts.RunDir, 0o700); err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", opts.ID, err)
	}
	s := &Sandbox{id: opts.ID, runDir: opts.RunDir, pod: opts.Pod, rec: Record{Version: recordVersion, ID: opts.ID}}
	defer func() {
		if retErr != nil {
			s.stop(context.WithoutCancel(ctx), 0)
		}
	}()
	// The record says what the sandbox holds as it comes to hold it, so
	// that Reclaim can release it if this process dies: the shared
	// directory and the network before they are set up, the processes
	// once they run.
	if opts.SharedDir != "" {
		s.rec.SharedDir = filepath.Clean(opts.SharedDir)
	}
	if err := s.saveRecord(); err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", opts.ID, err)
	}
	if opts.SharedDir != "" {
		bin := opts.Virtiofsd
		if bin == "" {
			bin = storage.DefaultVirtiofsd
		}
		if s.shared, err = storage.NewShared(opts.SharedDir); err != nil {
			return nil, fmt.Errorf("sandbox %s: %w", opts.ID, err)
		}
		s.rec.View = s.shared.View
		s.fs, err = storage.StartVirtiofsd(ctx, storage.VirtiofsdConfig{Binary: bin, SharedDir: s.shared.View, RunDir: opts.RunDir})
		if err != nil {
			return nil, fmt.Errorf("sandbox %s: %w", opts.ID, err)
		}
		s.rec.Virtiofsd = processRecord(s.fs.Pid())
		if err := s.saveRecord(); err != nil {
			return nil, fmt.Errorf("sandbox %s: %w", opts.ID, err)
		}
		vc.FS = []qemu.FSDevice{{Tag: SharedFSTag, Conn: s.fs.QEMUConn()}}
	}
	if opts.NetNS != "" {
		s.net, err = network.SetupRecorded(opts.NetNS, func(r network.Record) error {
			s.rec.Network = &r
			return s.saveRecord()
		})
		if err != nil {
			return nil, fmt.Errorf("sandbox %s: %w", opts.ID, err)
		}
		vc.Net = netDevices(s.net)
	}
	vm, err := qemu.Start(ctx, vc)
	if err != nil {
		// A virtiofsd that refused to run exits at once, long before QEMU
		// gives up on it: a short wait tells the two failures apart.
		if s.fs != nil {
			if ferr := s.fs.ExitedAtStart(250 * time.Millisecond); ferr != nil {
				return nil, fmt.Errorf("sandbox %s: %w (then qemu: %w)", opts.ID, ferr, err)
			}
		}
		return nil, err
	}
	s.vm = vm
	s.rec.QEMU = processRecord(vm.Pid())
	if err := s.saveRecord(); err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", opts.ID, err)
	}
	if s.fs != nil {
		s.fs.ReleaseQEMUConn()
	}
	s.timings.VMStarted = time.Since(start)
	logger.Debug("qemu started")

	bootCtx, cancel := context.WithTimeout(ctx, cfg.Hypervisor.BootTimeout.D())
	defer cancel()
	// A VM that dies while we wait must end the wait at once, not at the
	// deadline.
	go func() {
		select {
		case <-vm.Done():
			cancel()
		case <-bootCtx.Done():
		}
	}()
	if vsock {
		s.agent, err = dialVsock(bootCtx, vc.VsockCID, cfg.Agent.RequestTimeout.D())
		s.channel = "vsock"
	} else {
		conn, perr := vm.Port(agent.SerialPortName)
		err = perr
		if perr == nil {
			s.agent = agentclient.New(conn, cfg.Agent.RequestTimeout.D())
		}
		s.channel = "serial"
	}
	var version *agent.VersionResponse
	if err == nil {
		version, err = s.agent.WaitReady(bootCtx)
	}
	if err != nil {
		return nil, s.bootError(bootCtx, cfg.Hypervisor.BootTimeout.D(), err)
	}
	logger.Debug("agent answers")
	if err := agentclient.CheckVersion(version); err != nil {
		return nil, err
	}
	// The guest is up: QEMU's copies of the kernel and initramfs, and
	// most of its start-up code, are dead weight from here on. Paging
	// them out takes a while (tens of MiB of mappings) and host CPU that
	// the container's start needs more, so it waits a moment; a QEMU gone
	// meanwhile only fails the advice.
	time.AfterFunc(coldPagesDelay, func() {
		if n, err := vm.ReleaseColdPages(); err != nil {
			logger.WithError(err).Debug("qemu's cold pages stay")
		} else {
			logger.Debugf("paged out %d bytes of files from qemu", n)
		}
	})
	if s.io, err = s.openIO(ctx, vc.VsockCID); err != nil {
		return nil, fmt.Errorf("sandbox %s: %w", opts.ID, err)
	}
	if opts.ForwardLoopback && s.net != nil {
		s.fwd, err = s.net.ForwardLoopback(func(r network.Record) error {
			s.rec.Network = &r
			return s.saveRecord()
		})
		if err != nil {
			// The pod runs without port forwarding rather than not at all.
			logger.WithError(err).Warn("no port forwarding into this sandbox")
			s.fwd = nil
		} else {
			go s.relayLoopback(logger)
		}
	}

	s.timings.AgentReady = time.Since(start)
	if opts.SharedDir != "" || opts.Hostname != "" || s.net != nil {
		req := &agent.CreateSandboxRequest{Hostname: opts.Hostname}
		if opts.SharedDir != "" {
			req.SharedFsTag = SharedFSTag
		}
		if s.net != nil {
			netRequest(s.net, req)
		}
		if opts.DeferSetup {
			s.pendingSetup = req
		} else if err := s.agent.CreateSandboxWith(ctx, req); err != nil {
			return nil, fmt.Errorf("sandbox %s: %w", opts.ID, err)
		}
	}
	logger.WithFields(log.Fields{
		"accel": opts.Accel, "channel": s.channel,
		"vm_ms": s.timings.VMStarted.Milliseconds(), "ready_ms": s.timings.AgentReady.Milliseconds(),
	}).Debug("sandbox booted")
	return s, nil
}

// bootError explains why the agent did not answer, with the end of the
// console log, which is where a guest that failed to boot says why.
func (s *Sandbox) bootError(ctx context.Context, timeout time.Duration, err error) error {
	// A channel that closed under the call usually means QEMU is on its way
	// out; give it a moment so the error says so.
	exited := s.vm.Done()
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		select {
		case <-exited:
		case <-time.After(2 * time.Second):
		}
	}
	tail := consoleTail(s.vm.ConsoleLogPath(), 8)
	select {
	case <-exited:
		return fmt.Errorf("vm exited before its agent answered (%v); console: %s: %w", s.vm.ExitError(), tail, errdefs.ErrUnavailable)
	default:
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("agent did not answer within %s (hypervisor.boot_timeout); console: %s: %w", timeout, tail, context.DeadlineExceeded)
	}
	return fmt.Errorf("agent: %w; console: %s", err, tail)
}

// consoleLineMax bounds each console line quoted in an error.
const consoleLineMax = 240

// consoleTail returns the last n lines of the console log for an error
// message. The guest wrote them: each is cut and escaped, so that they
// can neither swell the error nor carry control sequences to a terminal
// or a log.
func consoleTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return "(empty)"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		lines[i] = agentclient.Printable(strings.TrimSuffix(l, "\r"), consoleLineMax)
	}
	return strings.Join(lines, " | ")
}

// randomCID picks a guest CID; collisions among 2^32 values are left to
// QEMU's start-up error.
func randomCID() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return 3 + binary.LittleEndian.Uint32(b[:])%(1<<31)
}

// ID returns the sandbox id.
func (s *Sandbox) ID() string { return s.id }

// Agent returns the client of the sandbox's agent.
func (s *Sandbox) Agent() *agentclient.Client { return s.agent }

// Timings returns how long the boot took.
func (s *Sandbox) Timings() Timings { return s.timings }

// Channel says how the host reaches the agent: serial or vsock.
func (s *Sandbox) Channel() string { return s.channel }

// VirtiofsdPid returns virtiofsd's pid, or 0 without a shared directory.
func (s *Sandbox) VirtiofsdPid() int {
	if s.fs == nil {
		return 0
	}
	return s.fs.Pid()
}

// VMPid returns QEMU's pid.
func (s *Sandbox) VMPid() int { return s.vm.Pid() }

// Done is closed when the VM has exited.
func (s *Sandbox) Done() <-chan struct{} { return s.vm.Done() }

// Destroy ends the VM, then releases every host resource. The agent's
// answer to DestroySandbox says that the guest has flushed what it held
// for the host's files; QEMU is then told to quit rather than left to wait
// for the guest's own power-off (about 70 ms under TCG), which the agent
// starts anyway in case the host's request fails.
func (s *Sandbox) Destroy(ctx context.Context) error {
	s.Shutdown(ctx)
	return s.stop(ctx, 0)
}

// destroyAnswerTimeout bounds the wait for DestroySandbox's answer.
const destroyAnswerTimeout = 5 * time.Second

// Shutdown ends the VM as Destroy does but keeps the host's resources
// (virtiofsd, the shared directory, the network) for Destroy to release:
// a front end whose VM holds one container ends it this way, then
// releases the container's host side (Container.Release), with no
// per-container call into a guest that is going anyway.
func (s *Sandbox) Shutdown(ctx context.Context) {
	select {
	case <-s.vm.Done():
	default:
		if s.guestSynced.Load() {
			// The guest flushed when its last process exited
			// (Process.WaitLast): DestroySandbox would only sync again.
			log.G(ctx).WithField("sandbox", s.id).Debug("guest synced at the exit: stopping the vm")
			if err := s.vm.Kill(ctx); err != nil {
				log.G(ctx).WithError(err).WithField("sandbox", s.id).Warn("stopping the vm")
			}
			return
		}
		// The agent answers once the guest has synced: bounded as the
		// guest's power-off used to be, for a host slow to flush.
		dctx, cancel := context.WithTimeout(ctx, destroyAnswerTimeout)
		err := s.agent.DestroySandbox(dctx)
		cancel()
		log.G(ctx).WithField("sandbox", s.id).Debug("guest ready to stop")
		if err == nil {
			// Synced: nothing in the guest is left to lose, and killing
			// QEMU is 20 to 30 ms quicker under TCG than its quit.
			if err := s.vm.Kill(ctx); err != nil {
				log.G(ctx).WithError(err).WithField("sandbox", s.id).Warn("stopping the vm")
			}
			return
		}
		select {
		case <-s.vm.Done():
		case <-time.After(time.Second):
			log.G(ctx).WithError(err).WithField("sandbox", s.id).Warn("agent did not power off, stopping the vm")
		}
	}
	if err := s.vm.Stop(ctx, 0); err != nil {
		log.G(ctx).WithError(err).WithField("sandbox", s.id).Warn("stopping the vm")
	}
}

func (s *Sandbox) stop(ctx context.Context, grace time.Duration) error {
	var errs []error
	if s.vm != nil {
		errs = append(errs, s.vm.Stop(ctx, grace))
	}
	if s.agent != nil {
		s.agent.Close()
	}
	if s.io != nil {
		s.io.Close()
	}
	// virtiofsd exits by itself once QEMU is gone.
	if s.fs != nil {
		errs = append(errs, s.fs.Stop())
	}
	if s.shared != nil {
		errs = append(errs, s.shared.Close())
	}
	if s.fwd != nil {
		s.fwd.Close()
	}
	// After QEMU: the taps go with it, then the namespace is put back.
	if s.net != nil {
		errs = append(errs, s.net.Close())
	}
	if err := errors.Join(errs...); err != nil {
		// The record stays: Reclaim retries what is left.
		return err
	}
	return removeRunDir(s.runDir)
}

// openIO starts the IO session on its own channel.
func (s *Sandbox) openIO(ctx context.Context, cid uint32) (*agentclient.IOSession, error) {
	if cid != 0 {
		conn, err := dialVsockConn(ctx, cid, agent.IOVsockPort)
		if err != nil {
			return nil, err
		}
		return agentclient.NewIOSession(conn)
	}
	conn, err := s.vm.Port(agent.IOPortName)
	if err != nil {
		return nil, err
	}
	return agentclient.NewIOSession(conn)
}

// RunDirFor returns the conventional VM run directory of a sandbox.
func RunDirFor(root, id string) string { return filepath.Join(root, id, "vm") }
