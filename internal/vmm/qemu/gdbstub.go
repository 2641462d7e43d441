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

// stepStop waits for the VM to stop for the attached stub, then
// single-steps it, which empties the translation cache, and returns once
// the VM is stopped again. A vCPU halted in the guest's idle loop does not
// step until an interrupt comes; after wait the stub is interrupted
// instead, which stops the VM all the same.
func (g *gdbStub) stepStop(wait, limit time.Duration) error {
	end := time.Now().Add(limit)
	// The VM stops when a debugger attaches, and the stub says so with a
	// stop reply (SIGINT, 02). A step asked before that reply is lost.
	for {
		data, _, err := g.next(end)
		if err != nil {
			return fmt.Errorf("gdbstub: waiting for the attach: %w", err)
		}
		if isStopReply(data) {
			break
		}
	}
	if err := g.send("s"); err != nil {
		return fmt.Errorf("gdbstub: %w", err)
	}
	// The step's stop reply says SIGTRAP (05), an interruption's SIGINT.
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
