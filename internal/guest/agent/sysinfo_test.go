package agent

import (
	"errors"
	"strings"
	"testing"
)

func TestParseMeminfo(t *testing.T) {
	const in = `MemTotal:         233364 kB
MemFree:          180000 kB
MemAvailable:     190512 kB
Buffers:               0 kB
HugePages_Total:       0
`
	total, avail, err := parseMeminfo(strings.NewReader(in))
	if err != nil || total != 233364*1024 || avail != 190512*1024 {
		t.Errorf("parseMeminfo = %d, %d, %v", total, avail, err)
	}
	for _, bad := range []string{
		"MemTotal: 1 kB\n",
		"MemAvailable: 1 kB\n",
		"MemTotal: x kB\nMemAvailable: 1 kB\n",
		"MemTotal: 1 MB\nMemAvailable: 1 kB\n",
		"MemTotal: 1\nMemAvailable: 1 kB\n",
	} {
		if _, _, err := parseMeminfo(strings.NewReader(bad)); err == nil {
			t.Errorf("parseMeminfo(%q) did not fail", bad)
		}
	}
}

func TestParseCPUList(t *testing.T) {
	for in, want := range map[string]int{
		"0\n": 1, "0-3": 4, "0-3,5": 5, "0,2,4-7\n": 6, "1-1": 1, "0-127": 128,
	} {
		if got, err := parseCPUList(in); err != nil || got != want {
			t.Errorf("parseCPUList(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "\n", "a", "3-1", "0-", "-1", "0,,1", "1-2-3"} {
		if got, err := parseCPUList(bad); err == nil {
			t.Errorf("parseCPUList(%q) = %d, want error", bad, got)
		}
	}
}

func TestParseUptime(t *testing.T) {
	for in, want := range map[string]uint64{
		"1.52 2.88\n": 1520, "0.07 0.00": 70, "12345.6 1.0": 12345600, "3 4": 3000, "2.1234 0": 2123,
	} {
		if got, err := parseUptime(in); err != nil || got != want {
			t.Errorf("parseUptime(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x 1", "1.x 2", "-1.0 2"} {
		if got, err := parseUptime(bad); err == nil {
			t.Errorf("parseUptime(%q) = %d, want error", bad, got)
		}
	}
}

func TestParseUnwritten(t *testing.T) {
	in := "MemTotal: 1000 kB\nDirty:  12 kB\nWriteback:   3 kB\nWritebackTmp: 7 kB\n"
	if n, err := parseUnwritten(strings.NewReader(in)); err != nil || n != 15*1024 {
		t.Errorf("parseUnwritten = %d, %v; want %d", n, err, 15*1024)
	}
	for _, bad := range []string{"Dirty: 0 kB\n", "Writeback: 0 kB\n", "Dirty: x kB\nWriteback: 0 kB\n", "Dirty: 1 MB\nWriteback: 0 kB\n"} {
		if _, err := parseUnwritten(strings.NewReader(bad)); err == nil {
			t.Errorf("parseUnwritten(%q) did not fail", bad)
		}
	}
}

func TestSyncUnwritten(t *testing.T) {
	cases := []struct {
		n    uint64
		err  error
		want bool
	}{{0, nil, false}, {4096, nil, true}, {0, errors.New("no meminfo"), true}}
	for _, c := range cases {
		synced := false
		syncUnwritten(func() (uint64, error) { return c.n, c.err }, func() { synced = true })
		if synced != c.want {
			t.Errorf("unwritten %d, %v: synced %v, want %v", c.n, c.err, synced, c.want)
		}
	}
}
