package image

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"strings"
	"testing"
)

// fakeBzImage lays out a boot-protocol 2.08 header around payload.
func fakeBzImage(payload []byte) []byte {
	const setupSects = 1
	pm := (setupSects + 1) * 512
	b := make([]byte, pm+16+len(payload))
	b[0x1f1] = setupSects
	copy(b[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(b[0x206:], 0x20f)
	binary.LittleEndian.PutUint32(b[0x248:], 16)
	binary.LittleEndian.PutUint32(b[0x24c:], uint32(len(payload)))
	copy(b[pm+16:], payload)
	return b
}

func TestExtractVmlinuxErrors(t *testing.T) {
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write([]byte("not an ELF file at all"))
	w.Close()
	for name, tc := range map[string]struct {
		in   []byte
		want string
	}{
		"not a bzImage":       {[]byte("MZ plain text"), "not a bzImage"},
		"unknown compression": {fakeBzImage([]byte{0xfd, '7', 'z', 'X', 'Z', 0}), "not supported"},
		"payload not ELF":     {fakeBzImage(gz.Bytes()), "not ELF"},
		"payload out of range": {func() []byte {
			b := fakeBzImage([]byte{1, 2, 3, 4})
			binary.LittleEndian.PutUint32(b[0x24c:], 1<<20)
			return b
		}(), "outside"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := extractVmlinux(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error with %q, got %v", tc.want, err)
			}
		})
	}
}
