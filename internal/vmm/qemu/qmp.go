package qemu

import (
	"bufio"
	"context"
	"encoding/json"
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
type qmp struct {
	mu   sync.Mutex // serialises commands: QMP answers in order
	conn net.Conn
	sc   *bufio.Scanner
}

type qmpReply struct {
	QMP    json.RawMessage `json:"QMP"`
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event string `json:"event"`
}

// newQMP reads the greeting and leaves capabilities negotiation mode.
func newQMP(ctx context.Context, conn net.Conn) (*qmp, error) {
	q := &qmp{conn: conn, sc: bufio.NewScanner(conn)}
	q.sc.Buffer(make([]byte, 4096), maxQMPLine)
	q.mu.Lock()
	defer q.mu.Unlock()
	stop := q.deadline(ctx)
	defer stop()
	r, err := q.read()
	if err != nil {
		return nil, fmt.Errorf("qmp greeting: %w", err)
	}
	if r.QMP == nil {
		return nil, fmt.Errorf("qmp greeting missing")
	}
	if _, err := q.exchange("qmp_capabilities"); err != nil {
		return nil, err
	}
	return q, nil
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
		return nil, fmt.Errorf("qmp: malformed message: %w", err)
	}
	return &r, nil
}

// exchange sends one command and returns its result, skipping events.
func (q *qmp) exchange(cmd string) (json.RawMessage, error) {
	b, _ := json.Marshal(map[string]string{"execute": cmd})
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("qmp %s: %w", cmd, err)
	}
	for {
		r, err := q.read()
		if err != nil {
			return nil, fmt.Errorf("qmp %s: %w", cmd, err)
		}
		if r.Event != "" {
			continue
		}
		if r.Error != nil {
			return nil, fmt.Errorf("qmp %s: %s: %s", cmd, r.Error.Class, r.Error.Desc)
		}
		return r.Return, nil
	}
}

// execute runs one command within ctx.
func (q *qmp) execute(ctx context.Context, cmd string) (json.RawMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	stop := q.deadline(ctx)
	defer stop()
	return q.exchange(cmd)
}
