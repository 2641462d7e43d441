package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"time"

	"github.com/containerd/ttrpc"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	api "github.com/hull-runtime/hull/api/agent/v1"
	"github.com/hull-runtime/hull/internal/guest/channel"
	"github.com/hull-runtime/hull/internal/guest/cmdline"
	"github.com/hull-runtime/hull/internal/guest/container"
	"github.com/hull-runtime/hull/internal/guest/initsys"
	"github.com/hull-runtime/hull/internal/guest/iosession"
	"github.com/hull-runtime/hull/internal/guest/kmod"
)

const (
	// TestSocketEnv names a unix socket to serve on instead of the VM's
	// channels. Setting it is also what lets the agent run as a process
	// other than PID 1, for trying the API on a development machine: it
	// then mounts nothing, loads no module and exits instead of powering
	// off.
	TestSocketEnv = "HULL_AGENT_TEST_SOCKET"
	// TestCmdlineEnv stands in for /proc/cmdline in test mode.
	TestCmdlineEnv = "HULL_AGENT_TEST_CMDLINE"
	// TestIOSocketEnv names a unix socket to serve the IO session on in
	// test mode: each connection is a yamux session.
	TestIOSocketEnv = "HULL_AGENT_TEST_IO_SOCKET"
	// TestStateEnv names libcontainer's state directory in test mode
	// (container.DefaultStateRoot otherwise).
	TestStateEnv = "HULL_AGENT_TEST_STATE"
	// TestInitEnv names hull-init in test mode (none otherwise: the host
	// has no container.DefaultInitPath).
	TestInitEnv = "HULL_AGENT_TEST_INIT"

	// serialTimeout bounds the wait for the virtio-serial port after the
	// modules are loaded. It is long because TCG guests are slow; a VM
	// without the port fails to boot only after it.
	serialTimeout = 10 * time.Second

	// flushTimeout bounds the wait for DestroySandbox's answer to be
	// written, and flushGrace is left to the VMM to pass it on, before the
	// power-off.
	flushTimeout = time.Second
	flushGrace   = 50 * time.Millisecond
)

// Main runs the agent. In a VM it does not return.
func Main(version, commit string) {
	testSocket := os.Getenv(TestSocketEnv)
	a := &agent{
		version:    version,
		commit:     commit,
		testSocket: testSocket,
		start:      uptime(),
		log:        logrus.StandardLogger(),
	}
	if testSocket == "" && os.Getpid() != 1 {
		fmt.Fprintf(os.Stderr, "hull-agent: runs as PID 1 of a sandbox VM; set %s=PATH to serve on a unix socket for tests\n", TestSocketEnv)
		os.Exit(2)
	}
	if !a.testMode() {
		a.switchRoot()
	}
	err := a.run()
	a.log.WithError(err).Error("fatal")
	a.end(1, "fatal error")
}

// agent is one run of the agent.
type agent struct {
	version, commit string
	// testSocket, when set, is where the agent serves in test mode.
	testSocket string
	// start is the guest uptime when the agent started.
	start time.Duration
	log   *logrus.Logger

	// reaper reaps every child; the container engine tells it which it
	// waits for itself.
	reaper *initsys.Reaper
	// switched is the guest uptime when the agent left the initial rootfs,
	// and switchTook how long that took, for the boot log.
	switched, switchTook time.Duration

	// flush tells when the next answer has been written.
	flush   writeBarrier
	endOnce sync.Once

	// Boot timeline, as guest uptimes, for the log.
	mounted, modStart, modDone time.Duration

	modulesMu sync.Mutex
	modules   []string // loaded at boot, in order; guarded by modulesMu

	// errc gets the error of each server that stops; serving counts them.
	errc    chan error
	serving int
}

func (a *agent) testMode() bool { return a.testSocket != "" }

// run boots and serves; it returns only on a fatal error.
func (a *agent) run() error {
	params := a.boot()

	if a.testMode() {
		// Orphans of the containers come to the agent, as to PID 1.
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("subreaper: %w", err)
		}
	}
	a.reaper = initsys.StartReaper()
	go a.handleSignals()

	// The modules the channels need are loaded first and the agent serves
	// as soon as they are in; the rest load meanwhile. On one TCG vCPU that
	// takes a third of a second off the time to the first answer.
	a.modStart = uptime()
	mods := a.moduleList()
	channelParam, _ := cmdline.Lookup(params, "hull.channel")
	first, rest := splitChannelModules(mods, channelParam)
	loaded := a.loadModules(first, params)
	a.modDone = uptime()
	allLoaded := make(chan struct{})
	go func() {
		more := a.loadModules(rest, params)
		a.tuneMemory(params)
		a.releaseModuleFiles()
		a.modulesMu.Lock()
		a.modules = append(loaded, more...)
		a.modulesMu.Unlock()
		a.log.Debugf("all modules loaded at %s: %d of %d", seconds(uptime()), len(loaded)+len(more), len(mods))
		close(allLoaded)
	}()

	streams := iosession.NewServer(a.log.WithField("io", "session"), 0)
	stateRoot := container.DefaultStateRoot
	if a.testMode() && os.Getenv(TestStateEnv) != "" {
		stateRoot = os.Getenv(TestStateEnv)
	}
	initPath := container.DefaultInitPath
	if a.testMode() {
		initPath = os.Getenv(TestInitEnv)
	}
	if _, err := os.Stat(initPath); err != nil {
		a.log.WithError(err).Info("no hull-init: libcontainer sets up every container")
		initPath = ""
	}
	engine := container.NewEngine(container.Config{
		StateRoot: stateRoot,
		InitPath:  initPath,
		Reaper:    a.reaper,
		Streams:   streams,
		Log:       a.log.WithField("engine", "containers"),
	})
	prep := a.prepare(params, engine)
	svc := NewService(ServiceConfig{
		Version:       a.version,
		Commit:        a.commit,
		ModulesLoaded: allLoaded,
		ModuleList: func() []string {
			a.modulesMu.Lock()
			defer a.modulesMu.Unlock()
			return a.modules
		},
		OnDestroy: a.destroy,
		Sandbox:   &sandboxState{},
		Prepared:  prep,
		Engine:    engine,
	})
	a.errc = make(chan error, 2)
	if err := a.listenIO(streams); err != nil {
		return err
	}
	if err := a.listen(svc); err != nil {
		return err
	}
	for ; a.serving > 0; a.serving-- {
		a.log.WithError(<-a.errc).Error("server stopped")
	}
	return errors.New("no channel left to serve on")
}

// boot mounts the file systems, puts the console on the standard fds and
// sets up logging; it returns the kernel command line. What fails is
// logged, not fatal: the agent may still reach the host and say so.
func (a *agent) boot() []cmdline.Param {
	var setupErr error
	params := cmdline.Parse(os.Getenv(TestCmdlineEnv))
	if !a.testMode() {
		setupErr = initsys.Setup()
		if _, err := initsys.SetupConsole(); err != nil {
			setupErr = errors.Join(setupErr, err)
		}
		var err error
		if params, err = cmdline.Read(); err != nil {
			setupErr = errors.Join(setupErr, err)
		}
	}
	a.mounted = uptime()

	level, levelErr := logLevel(params)
	a.log.SetOutput(os.Stderr)
	a.log.SetFormatter(newConsoleFormatter())
	a.log.SetLevel(level)
	a.log.Infof("hull-agent %s (API %d) starting as pid %d", a.version, api.APIVersion, os.Getpid())
	if a.switched > 0 {
		a.log.Debugf("left the initial rootfs at %s in %s", seconds(a.switched), ms(a.switchTook))
	}
	for _, err := range []error{setupErr, levelErr} {
		if err != nil {
			a.log.WithError(err).Error("setup")
		}
	}
	return params
}

// listen starts a server on each channel there is and fails if there is
// none.
func (a *agent) listen(svc *Service) error {
	if a.testMode() {
		l, err := net.Listen("unix", a.testSocket)
		if err != nil {
			return err
		}
		return a.serve(svc, "unix", l)
	}

	// vsock first: it is there at once, while the serial port shows up only
	// once the driver has probed it and the host has named it.
	if channel.VsockAvailable() {
		if l, err := channel.ListenVsock(api.VsockPort); err != nil {
			a.log.WithError(err).Warn("vsock: not serving")
		} else if err := a.serve(svc, channel.KindVsock, l); err != nil {
			return err
		}
	}
	err := a.listenSerial(svc)
	if err != nil && a.serving > 0 {
		a.log.WithError(err).Warn("virtio-serial: not serving")
		return nil
	}
	return err
}

func (a *agent) listenSerial(svc *Service) error {
	ctx, cancel := context.WithTimeout(context.Background(), serialTimeout)
	defer cancel()
	path, err := channel.FindSerialPort(ctx, api.SerialPortName)
	if err != nil {
		return err
	}
	a.log.Debugf("found %s at %s after %s", api.SerialPortName, path, ms(uptime()-a.modDone))
	l, err := channel.ListenSerial(path)
	if err != nil {
		return err
	}
	return a.serve(svc, channel.KindSerial, l)
}

// serve serves the API on l in a ttRPC server of its own, so that the
// service knows which channel its requests come in on.
func (a *agent) serve(svc *Service, kind string, l net.Listener) error {
	srv, err := ttrpc.NewServer(ttrpc.WithUnaryServerInterceptor(a.logCall))
	if err != nil {
		l.Close()
		return err
	}
	api.RegisterAgentService(srv, svc.OnChannel(kind))
	go func() {
		err := srv.Serve(context.Background(), &sessionListener{Listener: l, kind: kind, a: a})
		a.errc <- fmt.Errorf("serving on %s: %w", kind, err)
	}()
	a.serving++
	now := uptime()
	a.log.WithFields(logrus.Fields{"channel": kind, "addr": l.Addr().String()}).Infof(
		"serving at %s: mounts %s, modules %s, agent start to serving %s",
		seconds(now), ms(a.mounted-a.start), ms(a.modDone-a.modStart), ms(now-a.start))
	return nil
}

// moduleList reads the image's list of modules, in load order.
func (a *agent) moduleList() []kmod.Module {
	if a.testMode() {
		return nil
	}
	mods, err := kmod.ReadList(kmod.ListPath)
	if errors.Is(err, os.ErrNotExist) {
		a.log.Infof("no %s: loading no modules", kmod.ListPath)
		return nil
	}
	if err != nil {
		a.log.WithError(err).Error("modules")
		return nil
	}
	return mods
}

// Modules the agent's channels need, each set closed under dependencies:
// the virtio transports, and the console (virtio-serial) or vsock.
var (
	transportModules = []string{"virtio_ring", "virtio", "virtio_mmio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci"}
	serialModules    = []string{"virtio_console"}
	vsockModules     = []string{"vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport"}
)

// splitChannelModules splits the load order into the modules of the channel
// the host uses (hull.channel=serial or vsock on the command line; both when
// it says nothing) and the rest, each in its original order.
func splitChannelModules(mods []kmod.Module, channel string) (first, rest []kmod.Module) {
	need := map[string]bool{}
	sets := [][]string{transportModules}
	if channel != "vsock" {
		sets = append(sets, serialModules)
	}
	if channel != "serial" {
		sets = append(sets, vsockModules)
	}
	for _, set := range sets {
		for _, name := range set {
			need[name] = true
		}
	}
	for _, m := range mods {
		if need[m.Name] {
			first = append(first, m)
		} else {
			rest = append(rest, m)
		}
	}
	return first, rest
}

// loadModules loads modules and returns the names of those loaded. A
// module that fails is logged, not fatal: the agent serves without it if it
// can, and the host sees what is missing in GetGuestDetails.
func (a *agent) loadModules(mods []kmod.Module, params []cmdline.Param) []string {
	if len(mods) == 0 {
		return nil
	}
	results := kmod.Load(mods, params)
	for _, r := range results {
		l := a.log.WithFields(logrus.Fields{"module": r.Name, "took": ms(r.Took)})
		if r.Params != "" {
			l = l.WithField("params", r.Params)
		}
		switch {
		case r.Err != nil:
			l.WithError(r.Err).Warn("module not loaded")
		case r.AlreadyLoaded:
			l.Debug("module already loaded")
		default:
			l.Debug("module loaded")
		}
	}
	return kmod.Loaded(results)
}

// modulesDir holds the image's kernel modules.
const modulesDir = "/lib/modules"

// releaseModuleFiles removes the module files once every module is loaded:
// they sit in the initramfs, in the guest's RAM, and nothing loads a module
// later (about 2.3 MiB with the Debian kernel).
func (a *agent) releaseModuleFiles() {
	if a.testMode() {
		return // the test agent runs on a real host's /lib/modules
	}
	if err := os.RemoveAll(modulesDir); err != nil {
		a.log.WithError(err).Warn("module files stay")
	}
}

// pageReportingOrder is where the kernel keeps the smallest free block it
// reports to the host through virtio-balloon.
const pageReportingOrder = "/sys/module/page_reporting/parameters/page_reporting_order"

// tuneMemory applies hull.page_reporting_order from the command line. The
// kernel reports only free 2 MiB blocks by default, which leaves a guest's
// fragmented free memory on the host; a smaller order gives it back. The
// kernel sets the order when the balloon driver registers, overwriting a
// command-line value, so the agent writes it afterwards.
func (a *agent) tuneMemory(params []cmdline.Param) {
	order, ok := cmdline.Lookup(params, "hull.page_reporting_order")
	if !ok || a.testMode() {
		return
	}
	if n, err := strconv.Atoi(order); err != nil || n < 0 || n > 10 {
		a.log.Warnf("hull.page_reporting_order=%q: not an order between 0 and 10", order)
		return
	}
	if err := os.WriteFile(pageReportingOrder, []byte(order), 0); err != nil {
		a.log.WithError(err).Warn("page reporting order not set")
		return
	}
	a.log.Debugf("page reporting order %s", order)
}

// destroy is the service's OnDestroy: it powers off once the answer is out.
func (a *agent) destroy() {
	flushed := a.flush.next()
	a.endOnce.Do(func() {
		go func() {
			select {
			case <-flushed:
			case <-time.After(flushTimeout):
				a.log.Warn("DestroySandbox: answer not written in time")
			}
			time.Sleep(flushGrace)
			a.end(0, "DestroySandbox")
		}()
	})
}

// end powers the VM off and does not return. In test mode it exits with
// code instead.
func (a *agent) end(code int, reason string) {
	a.log.Infof("powering off: %s", reason)
	if a.testMode() {
		os.Remove(a.testSocket)
		os.Exit(code)
	}
	err := initsys.PowerOff()
	a.log.WithError(err).Error("cannot power off")
	for {
		time.Sleep(time.Hour)
	}
}

// handleSignals keeps signals from killing PID 1 (the Go runtime would exit
// on them, and the kernel panic) and treats those an init gets asked to
// stop with as a power-off request.
func (a *agent) handleSignals() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGPWR, unix.SIGHUP, unix.SIGUSR1, unix.SIGUSR2)
	for sig := range sigs {
		switch sig {
		case unix.SIGTERM, unix.SIGINT, unix.SIGPWR:
			a.endOnce.Do(func() { go a.end(0, "signal "+sig.String()) })
		default:
			a.log.Infof("ignoring signal %s", sig)
		}
	}
}

func (a *agent) logCall(ctx context.Context, unmarshal ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, method ttrpc.Method) (any, error) {
	start := time.Now()
	resp, err := method(ctx, unmarshal)
	l := a.log.WithFields(logrus.Fields{"method": info.FullMethod, "took": ms(time.Since(start))})
	if err != nil {
		l.WithError(err).Warn("call failed")
	} else {
		l.Debug("call")
	}
	return resp, err
}

// sessionListener logs host sessions and lets the write barrier see what
// the server writes.
type sessionListener struct {
	net.Listener
	kind string
	a    *agent
}

func (l *sessionListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.a.log.WithFields(logrus.Fields{"channel": l.kind, "remote": c.RemoteAddr().String()}).Debug("host connected")
	return &sessionConn{Conn: c, kind: l.kind, a: l.a}, nil
}

type sessionConn struct {
	net.Conn
	kind string
	a    *agent
	once sync.Once
}

func (c *sessionConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.a.flush.wrote()
	return n, err
}

func (c *sessionConn) Close() error {
	c.once.Do(func() { c.a.log.WithField("channel", c.kind).Info("host session ended") })
	return c.Conn.Close()
}

// writeBarrier tells when a write has completed on any session. ttRPC
// writes a handler's answer after the handler returns and offers no hook
// for it; a handler that must act after its answer is out asks for the
// next write before returning. On a busy conn that may be another answer,
// hence the grace period after it.
type writeBarrier struct {
	mu      sync.Mutex
	waiters []chan struct{} // guarded by mu
}

func (b *writeBarrier) next() <-chan struct{} {
	ch := make(chan struct{})
	b.mu.Lock()
	b.waiters = append(b.waiters, ch)
	b.mu.Unlock()
	return ch
}

func (b *writeBarrier) wrote() {
	b.mu.Lock()
	waiters := b.waiters
	b.waiters = nil
	b.mu.Unlock()
	for _, ch := range waiters {
		close(ch)
	}
}

func ms(d time.Duration) string { return d.Round(100 * time.Microsecond).String() }

func seconds(d time.Duration) string { return fmt.Sprintf("%.3fs", d.Seconds()) }
