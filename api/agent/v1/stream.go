package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/proto"
)

// ErrStreamHeaderSize is returned for a stream header longer than
// MaxStreamHeader.
var ErrStreamHeaderSize = errors.New("stream header too long")

// WriteStreamHeader writes h the way every stream of the IO session
// starts: the length of the marshaled message as 4 bytes, big-endian, then
// the message. It writes both in one call.
func WriteStreamHeader(w io.Writer, h *StreamHeader) error {
	b, err := proto.Marshal(h)
	if err != nil {
		return err
	}
	if len(b) > MaxStreamHeader {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrStreamHeaderSize, len(b), MaxStreamHeader)
	}
	buf := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	_, err = w.Write(buf)
	return err
}

// ReadStreamHeader reads what WriteStreamHeader wrote, and nothing more.
// It refuses a length over MaxStreamHeader before reading the message.
func ReadStreamHeader(r io.Reader) (*StreamHeader, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, fmt.Errorf("stream header length: %w", err)
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > MaxStreamHeader {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrStreamHeaderSize, size, MaxStreamHeader)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("stream header: %w", err)
	}
	h := &StreamHeader{}
	if err := proto.Unmarshal(b, h); err != nil {
		return nil, fmt.Errorf("stream header: %w", err)
	}
	return h, nil
}
