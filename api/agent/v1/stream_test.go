package agent

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestStreamHeaderRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	in := &StreamHeader{ContainerId: "c1", ExecId: "e1", Fd: StreamHeader_STDERR}
	if err := WriteStreamHeader(&buf, in); err != nil {
		t.Fatal(err)
	}
	buf.WriteString("data")
	out, err := ReadStreamHeader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if out.ContainerId != "c1" || out.ExecId != "e1" || out.Fd != StreamHeader_STDERR {
		t.Errorf("read %v, wrote %v", out, in)
	}
	if rest := buf.String(); rest != "data" {
		t.Errorf("header read took data: %q left", rest)
	}
}

func TestStreamHeaderBad(t *testing.T) {
	frame := func(n uint32, body string) io.Reader {
		b := binary.BigEndian.AppendUint32(nil, n)
		return strings.NewReader(string(b) + body)
	}
	for name, tc := range map[string]struct {
		r    io.Reader
		size bool
	}{
		"empty":         {r: strings.NewReader("")},
		"short length":  {r: strings.NewReader("\x00\x00")},
		"too long":      {r: frame(MaxStreamHeader+1, ""), size: true},
		"huge":          {r: frame(0xffffffff, ""), size: true},
		"short message": {r: frame(10, "abc")},
		"not protobuf":  {r: frame(3, "\xff\xff\xff")},
	} {
		_, err := ReadStreamHeader(tc.r)
		if err == nil {
			t.Errorf("%s: no error", name)
		} else if errors.Is(err, ErrStreamHeaderSize) != tc.size {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := WriteStreamHeader(io.Discard, &StreamHeader{ContainerId: strings.Repeat("x", MaxStreamHeader)}); !errors.Is(err, ErrStreamHeaderSize) {
		t.Errorf("oversized write: %v", err)
	}
}
