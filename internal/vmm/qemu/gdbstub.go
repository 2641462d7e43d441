package qemu

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// gdbStub speaks just enough of GDB's remote serial protocol to QEMU's
// gdbstub to stop the VM with its translation cache emptied: QEMU 7.2
// offers no monitor command that empties the cache, but it empties it
// whenever the gdbstub turns single-stepping on or off. Everything else of
// the protocol is left out.
type gdbStub struct {
	conn net.Conn
	r    *bufio.Reader
}

// maxGDBPacket bounds one packet from the stub; stop replies are tens of
// bytes.
const maxGDBPacket = 4096

func newGDBStub(conn net.Conn) *gdbStub {
	return &gdbStub{conn: conn, r: bufio.NewReaderSize(conn, maxGDBPacket)}
}

// gdbPacket frames data as $data#checksum.
func gdbPacket(data string) []byte {
	var sum byte
	for i := 0; i < len(data); i++ {
		sum += data[i]
	}
	return fmt.Appendf(nil, "$%s#%02x", data, sum)
}

func (g *gdbStub) send(data string) error {
	_, err := g.conn.Write(gdbPacket(data))
	return err
}

// next returns the next packet's data, acknowledging it, and skips the
// stub's acknowledgements of ours. ack reports whether an
// acknowledgement came before the packet.
func (g *gdbStub) next(deadline time.Time) (data string, ack bool, err error) {
	_ = g.conn.SetReadDeadline(deadline)
	for {
		c, err := g.r.ReadByte()
		if err != nil {
			return "", ack, err
		}
		switch c {
		case '+':
			ack = true
			continue
		case '-':
			return "", ack, errors.New("gdbstub: packet refused")
		case '$':
		default:
			continue
		}
		var body bytes.Buffer
		for {
			c, err := g.r.ReadByte()
			if err != nil {
				return "", ack, err
			}
			if c == '#' {
				break
			}
			if body.Len() >= maxGDBPacket {
				return "", ack, errors.New("gdbstub: packet too long")
			}
			body.WriteByte(c)
		}
		if _, err := io.ReadFull(g.r, make([]byte, 2)); err != nil {
			return "", ack, err
		}
		if _, err := g.conn.Write([]byte{'+'}); err != nil {
			return "", ack, err
		}
		return body.String(), ack, nil
	}
}

// isStopReply tells a stop reply (T or S packet) from other packets.
func isStopReply(data string) bool {
	return len(data) >= 3 && (data[0] == 'T' || data[0] == 'S')
}

// command sends a packet and returns the stub's next reply that is not a
// stop reply (those it may send at any time while it stops the VM).
func (g *gdbStub) command(data string, end time.Time) (string, error) {
	if err := g.send(data); err != nil {
		return "", err
	}
	for {
		reply, _, err := g.next(end)
		if err != nil {
			return "", err
		}
		if !isStopReply(reply) {
			return reply, nil
		}
	}
}

// stepStop single-steps the stopped VM and returns once it is stopped
// again. QEMU 7 empties its translation cache when the VM stops at the end
// of a step (a debug stop), not when the stub's interrupt stops it: so
// the step is let take interrupts and timers, which wakes a vCPU halted in
// the guest's idle loop, and wait bounds the wait for it. A step that did
// not end in time is interrupted, which stops the VM without emptying the
// cache; the caller sees that in QEMU's flush count.
func (g *gdbStub) stepStop(wait, limit time.Duration) error {
	end := time.Now().Add(limit)
	// The VM stops when a debugger attaches; "?" asks for the stop reply,
	// which QEMU 7 also sends unasked.
	if err := g.send("?"); err != nil {
		return fmt.Errorf("gdbstub: %w", err)
	}
	for {
		data, _, err := g.next(end)
		if err != nil {
			return fmt.Errorf("gdbstub: waiting for the attach: %w", err)
		}
		if isStopReply(data) {
			break
		}
	}
	// Step flags: enabled, with interrupts and timers (not the default,
	// which masks both and never wakes a halted vCPU).
	if reply, err := g.command("Qqemu.sstep=0x1", end); err != nil {
		return fmt.Errorf("gdbstub: step flags: %w", err)
	} else if reply != "OK" {
		return fmt.Errorf("gdbstub: step flags: %q", reply)
	}
	if err := g.send("s"); err != nil {
		return fmt.Errorf("gdbstub: %w", err)
	}
	// The step's stop reply says SIGTRAP (05); other stop replies still
	// queued (the attach's, the answer to "?") say SIGINT (02), as does an
	// interruption's.
	interrupted := false
	deadline := time.Now().Add(wait)
	for {
		data, _, err := g.next(deadline)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && !interrupted {
			interrupted = true
			deadline = end
			if _, err := g.conn.Write([]byte{0x03}); err != nil {
				return fmt.Errorf("gdbstub: interrupt: %w", err)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("gdbstub: waiting for the step: %w", err)
		}
		if isStopReply(data) && (data[1:3] == "05" || interrupted) {
			return nil
		}
	}
}

// detach lets the VM run on and leaves the stub idle.
func (g *gdbStub) detach(limit time.Duration) error {
	if err := g.send("D"); err != nil {
		return fmt.Errorf("gdbstub: detach: %w", err)
	}
	end := time.Now().Add(limit)
	for {
		data, _, err := g.next(end)
		if err != nil {
			return fmt.Errorf("gdbstub: detach: %w", err)
		}
		if data == "OK" {
			return nil
		}
	}
}
