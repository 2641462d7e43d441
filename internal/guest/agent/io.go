package agent

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	api "github.com/hull-runtime/hull/api/agent/v1"
	"github.com/hull-runtime/hull/internal/guest/channel"
	"github.com/hull-runtime/hull/internal/guest/initsys"
	"github.com/hull-runtime/hull/internal/guest/iosession"
)

// ioPortTimeout bounds the search for the IO port. It is searched for in
// the background: the API serves meanwhile, and a container with streams
// waits for them.
const ioPortTimeout = 30 * time.Second

// switchRoot moves the agent off the initial rootfs, which pivot_root
// (the container engine's) needs. Failure is written to the console, not
// fatal: the agent serves, but containers cannot be created.
func (a *agent) switchRoot() {
	began := uptime()
	if err := initsys.SwitchRoot(); err != nil {
		fmt.Fprintf(os.Stderr, "hull-agent: %v\n", err)
		return
	}
	a.switched = began
	a.switchTook = uptime() - began
}

// listenIO serves the IO session: on the IO virtio-serial port, once it
// shows up, and on vsock when the VM has it; in test mode on a unix
// socket.
func (a *agent) listenIO(srv *iosession.Server) error {
	if a.testMode() {
		path := os.Getenv(TestIOSocketEnv)
		if path == "" {
			return nil
		}
		l, err := net.Listen("unix", path)
		if err != nil {
			return err
		}
		go a.serveIO(srv, "unix", l)
		return nil
	}
	if channel.VsockAvailable() {
		if l, err := channel.ListenVsock(api.IOVsockPort); err != nil {
			a.log.WithError(err).Warn("vsock: no IO session")
		} else {
			go a.serveIO(srv, channel.KindVsock, l)
		}
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), ioPortTimeout)
		defer cancel()
		path, err := channel.FindSerialPort(ctx, api.IOPortName)
		if err != nil {
			a.log.WithError(err).Warn("virtio-serial: no IO session")
			return
		}
		l, err := channel.ListenSerial(path)
		if err != nil {
			a.log.WithError(err).Warn("virtio-serial: no IO session")
			return
		}
		a.serveIO(srv, channel.KindSerial, l)
	}()
	return nil
}

func (a *agent) serveIO(srv *iosession.Server, kind string, l net.Listener) {
	a.log.WithField("channel", kind).Debugf("IO session served at %s on %s", seconds(uptime()), l.Addr())
	err := srv.Serve(l)
	a.log.WithError(err).WithField("channel", kind).Error("IO session: not serving any more")
}
