// Package names checks the names the host sends the agent: container and
// exec IDs, virtio-fs tags, hostnames, interface names and sysctl keys.
// They are plain loops over byte classes rather than regular expressions:
// every package-level regexp is compiled when a process starts, and the
// agent starts twice per container (itself, and its re-executed copy that
// becomes the container's init). Under TCG, compiling a handful of them
// (bounded repetitions such as {0,62} expand to dozens of nodes) cost
// tens of milliseconds of each start.
package names

import "strings"

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// allOf says whether s is made only of alphanumerics and the bytes in extra.
func allOf(s, extra string) bool {
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) && strings.IndexByte(extra, s[i]) < 0 {
			return false
		}
	}
	return true
}

// IDPattern describes what ID accepts, for error messages.
const IDPattern = "^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$"

// ID accepts a container or exec ID: an alphanumeric, then up to 63
// alphanumerics, '_', '.' or '-'.
func ID(s string) bool {
	return len(s) >= 1 && len(s) <= 64 && isAlnum(s[0]) && allOf(s[1:], "_.-")
}

// Tag accepts a virtio-fs tag: 1 to 36 alphanumerics, '.', '_' or '-'.
func Tag(s string) bool {
	return len(s) >= 1 && len(s) <= 36 && allOf(s, "._-")
}

// Hostname accepts a hostname: an alphanumeric, then up to 62
// alphanumerics, '.' or '-'.
func Hostname(s string) bool {
	return len(s) >= 1 && len(s) <= 63 && isAlnum(s[0]) && allOf(s[1:], ".-")
}

// Interface accepts a network interface name: 1 to 15 alphanumerics, '_',
// '.' or '-'.
func Interface(s string) bool {
	return len(s) >= 1 && len(s) <= 15 && allOf(s, "_.-")
}

// SysctlKey accepts a dotted sysctl key: a first part of lowercase
// alphanumerics and '_', then one or more parts of alphanumerics, '_' and
// '-', none of them empty.
func SysctlKey(s string) bool {
	first, rest, ok := strings.Cut(s, ".")
	if !ok || first == "" || rest == "" {
		return false
	}
	for i := 0; i < len(first); i++ {
		c := first[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	for _, part := range strings.Split(rest, ".") {
		if part == "" || !allOf(part, "_-") {
			return false
		}
	}
	return true
}
