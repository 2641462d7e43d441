package agentclient

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
)

// The parts of yamux's frame header (its spec.md) that guestFrames reads.
const (
	frameHeaderSize = 12 // version, type, flags (2), stream id (4), length (4)
	frameTypeData   = 0  // the only type whose length counts payload bytes
	frameFlagSYN    = 1  // opens a stream, or asks for a ping's answer
)

// errGuestProtocol marks a guest that broke the IO session's protocol.
var errGuestProtocol = errors.New("the guest broke the IO session's protocol")

// guestFrames follows the yamux frames that come from the guest and ends
// the session at the first that opens something. In hull's IO session
// only the host opens streams and it never pings, so a SYN from the guest
// is an attack on the host's yamux: each ping makes it start a goroutine
// that waits up to the write timeout to answer (a flood of them took a
// GiB a second), and each stream the guest opens waits, with its receive
// buffer, for an Accept that never comes.
type guestFrames struct {
	net.Conn
	hdr  [frameHeaderSize]byte
	have int    // bytes of hdr read so far
	skip uint32 // payload bytes of the current data frame still to come
	err  error
}

func (g *guestFrames) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.Conn.Read(p)
	if serr := g.scan(p[:n]); serr != nil {
		// Nothing of this read reaches yamux, which ends the session.
		g.err = serr
		return 0, serr
	}
	return n, err
}

// scan follows the frame headers in b, the next bytes from the guest.
func (g *guestFrames) scan(b []byte) error {
	for len(b) > 0 {
		if g.skip > 0 {
			k := uint32(len(b))
			if k > g.skip {
				k = g.skip
			}
			g.skip -= k
			b = b[k:]
			continue
		}
		k := copy(g.hdr[g.have:], b)
		g.have += k
		b = b[k:]
		if g.have < frameHeaderSize {
			return nil
		}
		g.have = 0
		typ, flags := g.hdr[1], binary.BigEndian.Uint16(g.hdr[2:4])
		if flags&frameFlagSYN != 0 {
			return fmt.Errorf("frame of type %d with SYN (a stream opened or a ping sent by the guest): %w", typ, errGuestProtocol)
		}
		if typ == frameTypeData {
			g.skip = binary.BigEndian.Uint32(g.hdr[8:12])
		}
	}
	return nil
}
