package agentclient

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
)

// The parts of ttRPC's message header (its channel.go) that agentFrames
// reads.
const (
	ttrpcHeaderSize   = 10      // length (4), stream id (4), type, flags
	ttrpcRequest      = 1       // what the host sends
	ttrpcResponse     = 2       // the only thing the agent may send back
	ttrpcMaxMessage   = 4 << 20 // ttRPC's own limit
	maxPendingStreams = 1 << 16 // far above the calls the host makes at once
)

// errAgentProtocol marks an agent that broke the ttRPC protocol.
var errAgentProtocol = errors.New("the agent broke the ttRPC protocol")

// agentFrames follows ttRPC's frames both ways and ends the connection at
// the first frame from the agent that answers no request the host has
// pending: a second answer, one to a stream never opened, a streaming
// frame (hull's API has no streams), an oversized one. ttRPC's client
// logs an error for each frame on an unknown stream and reads on, so a
// guest could fill the host's logs at ten bytes a line.
type agentFrames struct {
	net.Conn

	mu      sync.Mutex
	pending map[uint32]bool // requests written and not yet answered

	out outScan // host to agent, under mu

	in   [ttrpcHeaderSize]byte
	have int    // bytes of in read so far
	skip uint32 // payload bytes of the current frame still to come
	err  error
}

// outScan follows the frames the host writes.
type outScan struct {
	hdr  [ttrpcHeaderSize]byte
	have int
	skip uint32
}

func newAgentFrames(c net.Conn) *agentFrames {
	return &agentFrames{Conn: c, pending: map[uint32]bool{}}
}

func (a *agentFrames) Write(p []byte) (int, error) {
	a.mu.Lock()
	a.scanOut(p)
	a.mu.Unlock()
	return a.Conn.Write(p)
}

// scanOut records the requests in b, the next bytes to the agent.
func (a *agentFrames) scanOut(b []byte) {
	o := &a.out
	for len(b) > 0 {
		if o.skip > 0 {
			k := min(uint32(len(b)), o.skip)
			o.skip -= k
			b = b[k:]
			continue
		}
		k := copy(o.hdr[o.have:], b)
		o.have += k
		b = b[k:]
		if o.have < ttrpcHeaderSize {
			return
		}
		o.have = 0
		o.skip = binary.BigEndian.Uint32(o.hdr[0:4])
		if o.hdr[8] == ttrpcRequest {
			if len(a.pending) >= maxPendingStreams {
				// Calls abandoned before their answer leave their ids
				// here; the oldest go (ids only grow), so that a new
				// request's answer is never taken for a stray one.
				oldest := ^uint32(0)
				for id := range a.pending {
					oldest = min(oldest, id)
				}
				delete(a.pending, oldest)
			}
			a.pending[binary.BigEndian.Uint32(o.hdr[4:8])] = true
		}
	}
}

func (a *agentFrames) Read(p []byte) (int, error) {
	if a.err != nil {
		return 0, a.err
	}
	n, err := a.Conn.Read(p)
	if serr := a.scanIn(p[:n]); serr != nil {
		// Nothing of this read reaches ttRPC, whose client then fails
		// every call.
		a.err = serr
		return 0, serr
	}
	return n, err
}

// scanIn checks the frame headers in b, the next bytes from the agent.
func (a *agentFrames) scanIn(b []byte) error {
	for len(b) > 0 {
		if a.skip > 0 {
			k := min(uint32(len(b)), a.skip)
			a.skip -= k
			b = b[k:]
			continue
		}
		k := copy(a.in[a.have:], b)
		a.have += k
		b = b[k:]
		if a.have < ttrpcHeaderSize {
			return nil
		}
		a.have = 0
		length, id, typ := binary.BigEndian.Uint32(a.in[0:4]), binary.BigEndian.Uint32(a.in[4:8]), a.in[8]
		if typ != ttrpcResponse {
			return fmt.Errorf("frame of type %d on stream %d: %w", typ, id, errAgentProtocol)
		}
		if length > ttrpcMaxMessage {
			return fmt.Errorf("frame of %d bytes on stream %d: %w", length, id, errAgentProtocol)
		}
		a.mu.Lock()
		ok := a.pending[id]
		delete(a.pending, id)
		a.mu.Unlock()
		if !ok {
			return fmt.Errorf("answer on stream %d, which has no request pending: %w", id, errAgentProtocol)
		}
		a.skip = length
	}
	return nil
}
