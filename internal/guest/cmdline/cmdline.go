// Package cmdline reads the kernel command line exactly as the kernel splits
// it, so that the agent hands modules the same `module.param=value` strings
// the kernel would have given a built-in driver, and so that the agent's own
// `hull.*` settings are read with the same quoting rules the user sees
// documented for the kernel.
package cmdline

import (
	"fmt"
	"os"
	"strings"
)

// Path is where the running kernel exposes its command line.
const Path = "/proc/cmdline"

// Param is one parameter of the command line.
type Param struct {
	// Key is the part before the first '=', such as "console" or
	// "virtio_mmio.device".
	Key string
	// Value is the part after the first '=', without the quotes the kernel
	// strips.
	Value string
	// HasValue tells "quiet" (false) from "quiet=" (true, empty Value).
	HasValue bool
}

// String renders p so that Parse gives p back.
func (p Param) String() string {
	if !p.HasValue {
		return p.Key
	}
	return p.Key + "=" + Quote(p.Value)
}

// Read parses the running kernel's command line.
func Read() ([]Param, error) {
	b, err := os.ReadFile(Path)
	if err != nil {
		return nil, fmt.Errorf("read kernel command line: %w", err)
	}
	return Parse(string(b)), nil
}

// Parse splits s the way the kernel's parse_args and next_arg do: words are
// separated by white space, double quotes group white space into a word and
// are removed at the ends of the word and of its value, and a bare "--"
// ends the kernel's parameters (what follows is init's argv, not for the
// kernel or its modules). Empty words are dropped.
func Parse(s string) []Param {
	var params []Param
	s = skipSpaces(s)
	for s != "" {
		var p Param
		p, s = next(s)
		if !p.HasValue && p.Key == "--" {
			break
		}
		if p.Key == "" && !p.HasValue {
			continue
		}
		params = append(params, p)
	}
	return params
}

// next is the kernel's next_arg (lib/cmdline.c, kernel/params.c) on a Go
// string: its odd corners (an '=' in first position does not count, a
// value's closing quote is removed only at the end of the word) are kept on
// purpose, since the point is to agree with the kernel.
func next(args string) (Param, string) {
	inQuote, quoted := false, false
	if args[0] == '"' {
		args = args[1:]
		inQuote, quoted = true, true
	}
	i, equals := 0, 0
	for ; i < len(args); i++ {
		if isSpace(args[i]) && !inQuote {
			break
		}
		if equals == 0 && args[i] == '=' {
			equals = i
		}
		if args[i] == '"' {
			inQuote = !inQuote
		}
	}
	// end is where the word stops once a closing quote is cut off.
	end := i
	closingQuote := i > 0 && args[i-1] == '"'

	var p Param
	if equals == 0 {
		if quoted && closingQuote {
			end = i - 1
		}
		p.Key = args[:end]
	} else {
		p.Key = args[:equals]
		p.HasValue = true
		start := equals + 1
		if start < i && args[start] == '"' {
			start++
			if closingQuote {
				end = i - 1
			}
		}
		if quoted && closingQuote {
			end = i - 1
		}
		end = max(end, start)
		p.Value = args[start:end]
	}

	rest := ""
	if i < len(args) {
		rest = args[i+1:]
	}
	return p, skipSpaces(rest)
}

// Lookup returns the value of the last parameter named key, the one the
// kernel's own setters end up with. Dashes and underscores are equal in
// names, as in the kernel's parameq.
func Lookup(params []Param, key string) (value string, ok bool) {
	for i := len(params) - 1; i >= 0; i-- {
		if KeyEqual(params[i].Key, key) {
			return params[i].Value, true
		}
	}
	return "", false
}

// KeyEqual compares parameter names as the kernel does: '-' and '_' match.
func KeyEqual(a, b string) bool {
	return Normalize(a) == Normalize(b)
}

// Normalize spells a parameter or module name with '_' for every '-'.
func Normalize(name string) string {
	return strings.ReplaceAll(name, "-", "_")
}

// Quote returns v as a word the kernel's parser reads back as v: quoted
// when it holds white space. A value that holds both white space and a
// quote was itself held together by its inner quotes, and so is returned
// as it is.
func Quote(v string) string {
	if !hasSpace(v) {
		return v
	}
	if strings.Contains(v, `"`) {
		return v
	}
	return `"` + v + `"`
}

func skipSpaces(s string) string {
	for s != "" && isSpace(s[0]) {
		s = s[1:]
	}
	return s
}

func hasSpace(s string) bool {
	for i := 0; i < len(s); i++ {
		if isSpace(s[i]) {
			return true
		}
	}
	return false
}

// isSpace is the kernel's isspace, byte by byte: its ctype table counts
// 0xa0 (Latin-1 no-break space) as space too, even inside UTF-8.
func isSpace(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\v', '\f', '\r', 0xa0:
		return true
	}
	return false
}
