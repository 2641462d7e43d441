package supervisor

import (
	"context"
	"os"
	"sync"
	"time"

	"github.com/containerd/log"
	"golang.org/x/sys/unix"

	"github.com/hull-runtime/hull/internal/console"
	"github.com/hull-runtime/hull/internal/sandbox"
)

// terminal is the host end of a process's terminal. The real terminal is a
// pty in the guest, which does the line discipline; on the host a pty pair
// only lets a console-socket receiver (conmon, `hull run` in the
// foreground) hold a master as runc gives it one. Its slave is raw (no echo,
// no CR/LF rewriting, which the guest already does) and carries the
// process's input and output; its window size is passed to the guest.
type terminal struct {
	slave *os.File // immutable; closed by close

	mu   sync.Mutex
	sent unix.Winsize // guarded by mu: the size the guest has
}

// sizePoll is how often an exec's terminal size is read: only a session's
// one controlling terminal signals changes, and the init's has that role.
const sizePoll = 250 * time.Millisecond

// openTerminal makes a host pty pair, sends its master to the console
// socket at path and keeps the raw slave.
func openTerminal(path string) (*terminal, error) {
	master, slave, err := console.NewPty()
	if err != nil {
		return nil, err
	}
	defer master.Close()
	if _, err := console.MakeRaw(slave); err != nil {
		slave.Close()
		return nil, err
	}
	if err := console.SendMaster(path, master); err != nil {
		slave.Close()
		return nil, err
	}
	return &terminal{slave: slave}, nil
}

// stdio returns the process's stdio on the slave.
func (t *terminal) stdio() sandbox.Stdio {
	return sandbox.Stdio{Stdin: t.slave, Stdout: t.slave, Terminal: true}
}

// sync passes the slave's window size to the guest's terminal of the
// process if it changed. No size (nobody set one) is not passed.
func (t *terminal) sync(ctx context.Context, ctr *sandbox.Container, execID string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ws, err := console.Size(t.slave)
	if err != nil || ws.Row == 0 || ws.Col == 0 || (ws.Row == t.sent.Row && ws.Col == t.sent.Col) {
		return
	}
	if err := ctr.ResizePty(ctx, execID, uint32(ws.Col), uint32(ws.Row)); err != nil {
		log.G(ctx).WithError(err).WithField("exec", execID).Debug("resizing the terminal")
		return
	}
	t.sent = ws
}

// poll syncs the size every sizePoll until stop is closed.
func (t *terminal) poll(ctx context.Context, ctr *sandbox.Container, execID string, stop <-chan struct{}) {
	tick := time.NewTicker(sizePoll)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			t.sync(ctx, ctr, execID)
		}
	}
}

func (t *terminal) close() { t.slave.Close() }
