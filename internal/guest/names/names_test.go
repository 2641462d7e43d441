package names

import (
	"regexp"
	"strings"
	"testing"
)

// Each check must accept exactly what the regular expression it replaced
// accepted.
func TestSameAsRegexp(t *testing.T) {
	cases := []struct {
		name string
		fn   func(string) bool
		re   string
	}{
		{"ID", ID, IDPattern},
		{"Tag", Tag, `^[a-zA-Z0-9._-]{1,36}$`},
		{"Hostname", Hostname, `^[a-zA-Z0-9]([a-zA-Z0-9.-]{0,62})$`},
		{"Interface", Interface, `^[a-zA-Z0-9_.-]{1,15}$`},
		{"SysctlKey", SysctlKey, `^[a-z0-9_]+(\.[a-zA-Z0-9_-]+)+$`},
	}
	inputs := []string{
		"", "a", "A", "0", "-", ".", "_", "a-b", "a.b", "a_b", "-ab", ".ab", "_ab", "ab-",
		"net.ipv4.ip_forward", "kernel.shm_rmid_forced", "net..x", "net.", ".net", "Net.x", "net.x-y",
		"net.x/y", "a b", "a\x00b", "é", "eth0", "veth1234567890ab", "hull.agent.0",
		strings.Repeat("a", 15), strings.Repeat("a", 16), strings.Repeat("a", 36), strings.Repeat("a", 37),
		strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a", 65),
		"a" + strings.Repeat("-", 62), "a" + strings.Repeat("_", 63), "0" + strings.Repeat(".", 63),
	}
	for _, c := range cases {
		re := regexp.MustCompile(c.re)
		for _, in := range inputs {
			if got, want := c.fn(in), re.MatchString(in); got != want {
				t.Errorf("%s(%q) = %v, regexp %s says %v", c.name, in, got, c.re, want)
			}
		}
	}
}
