package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// maxQMPLine bounds one QMP message; QEMU's replies to the few commands the
// driver sends are far smaller.
const maxQMPLine = 1 << 20

// qmp speaks the QEMU Machine Protocol over an already connected socket.
// Existing Go QMP clients dial socket paths; the driver hands QEMU an
// inherited socket instead, and needs only a handful of commands.
//
// Once negotiated, a reader drains the socket for the VM's life: QEMU
// sends events (RTC_CHANGE, VSERPORT_CHANGE, ...) that the guest can
// cause, and unread they would pile up in QEMU's monitor buffer without
// bound. Events are dropped; replies go to the command waiting for them.
type qmp struct {
	mu      sync.Mutex // serialises commands: QMP answers in order
	seq     uint64     // the last command's id; guarded by mu
	conn    net.Conn
	sc      *bufio.Scanner
	replies chan qmpResult // from the reader, once it runs
}

// errMalformed marks a QMP line that is not a JSON message.
var errMalformed = errors.New("qmp: malformed message")

type qmpResult struct {
	r   *qmpReply
	err error
}

type qmpReply struct {
	QMP    json.RawMessage `json:"QMP"`
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event string `json:"event"`
	// ID echoes the command's id, which tells a late answer to a command
	// that gave up waiting from the answer to the one now waiting.
	ID *uint64 `json:"id"`
}

// newQMP reads the greeting, leaves capabilities negotiation mode and
// starts the reader.
func newQMP(ctx context.Context, conn net.Conn) (*qmp, error) {
	q := &qmp{conn: conn, sc: bufio.NewScanner(conn), replies: make(chan qmpResult, 1)}
	q.sc.Buffer(make([]byte, 4096), maxQMPLine)
	q.mu.Lock()
	defer q.mu.Unlock()
	stop := q.deadline(ctx)
	r, err := q.read()
	if err != nil {
		stop()
		return nil, fmt.Errorf("qmp greeting: %w", err)
	}
	if r.QMP == nil {
		stop()
		return nil, fmt.Errorf("qmp greeting missing")
	}
	if err := q.write("qmp_capabilities", nil); err != nil {
		stop()
		return nil, err
	}
	for {
		r, err := q.read()
		if err != nil {
			stop()
			return nil, fmt.Errorf("qmp qmp_capabilities: %w", err)
		}
		if r.Event != "" {
			continue
		}
		stop()
		if r.Error != nil {
			return nil, fmt.Errorf("qmp qmp_capabilities: %s: %s", r.Error.Class, r.Error.Desc)
		}
		break
	}
	go q.drain()
	return q, nil
}

// drain reads until the connection ends, dropping events and handing
// replies on; a reply nobody waits for any more is dropped too.
func (q *qmp) drain() {
	for {
		r, err := q.read()
		if errors.Is(err, errMalformed) {
			continue // one bad line does not end the draining
		}
		if err == nil && r.Event != "" {
			continue
		}
		// Commands run one at a time, so a reply still unread is one its
		// command gave up waiting for: the newest replaces it.
		for sent := false; !sent; {
			select {
			case q.replies <- qmpResult{r, err}:
				sent = true
			default:
				select {
				case <-q.replies:
				default:
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// deadline applies ctx's deadline and cancellation to the connection.
func (q *qmp) deadline(ctx context.Context) (stop func()) {
	if d, ok := ctx.Deadline(); ok {
		_ = q.conn.SetDeadline(d)
	}
	unwatch := context.AfterFunc(ctx, func() { _ = q.conn.SetDeadline(time.Unix(1, 0)) })
	return func() {
		unwatch()
		_ = q.conn.SetDeadline(time.Time{})
	}
}

func (q *qmp) read() (*qmpReply, error) {
	if !q.sc.Scan() {
		if err := q.sc.Err(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("qmp connection closed")
	}
	var r qmpReply
	if err := json.Unmarshal(q.sc.Bytes(), &r); err != nil {
		return nil, fmt.Errorf("%w: %w", errMalformed, err)
	}
	return &r, nil
}

func (q *qmp) write(cmd string, args any) error {
	q.seq++
	msg := map[string]any{"execute": cmd, "id": q.seq}
	if args != nil {
		msg["arguments"] = args
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("qmp %s: %w", cmd, err)
	}
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("qmp %s: %w", cmd, err)
	}
	return nil
}

// execute runs one command within ctx and returns its result.
func (q *qmp) execute(ctx context.Context, cmd string) (json.RawMessage, error) {
	return q.executeArgs(ctx, cmd, nil)
}

// executeArgs runs one command with arguments (nil for none).
func (q *qmp) executeArgs(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	// A reply left by a command that gave up waiting is not this one's.
	select {
	case res := <-q.replies:
		if res.err != nil {
			return nil, fmt.Errorf("qmp %s: %w", cmd, res.err)
		}
	default:
	}
	if d, ok := ctx.Deadline(); ok {
		_ = q.conn.SetWriteDeadline(d)
		defer q.conn.SetWriteDeadline(time.Time{})
	}
	if err := q.write(cmd, args); err != nil {
		return nil, err
	}
	for {
		select {
		case res := <-q.replies:
			if res.err != nil {
				return nil, fmt.Errorf("qmp %s: %w", cmd, res.err)
			}
			if res.r.ID == nil || *res.r.ID != q.seq {
				continue // the answer to a command that gave up waiting
			}
			if res.r.Error != nil {
				return nil, fmt.Errorf("qmp %s: %s: %s", cmd, res.r.Error.Class, res.r.Error.Desc)
			}
			return res.r.Return, nil
		case <-ctx.Done():
			return nil, fmt.Errorf("qmp %s: %w", cmd, ctx.Err())
		}
	}
}
