package containerd

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Proc is one host process, as /proc shows it.
type Proc struct {
	Pid, PPid int
	Argv      []string
	Zombie    bool
}

// Name is the base name of the process's program.
func (p Proc) Name() string {
	if len(p.Argv) == 0 {
		return ""
	}
	return filepath.Base(p.Argv[0])
}

// Arg returns the argument after flag.
func (p Proc) Arg(flag string) (string, bool) {
	for i := 0; i+1 < len(p.Argv); i++ {
		if p.Argv[i] == flag {
			return p.Argv[i+1], true
		}
	}
	return "", false
}

// Cmdline is the arguments joined by spaces.
func (p Proc) Cmdline() string { return strings.Join(p.Argv, " ") }

// Processes lists the host's processes; one that goes away while it reads
// is left out.
func Processes() []Proc {
	var out []Proc
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parens.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		var argv []string
		if s := strings.TrimRight(string(raw), "\x00"); s != "" {
			argv = strings.Split(s, "\x00")
		}
		out = append(out, Proc{Pid: pid, PPid: ppid, Argv: argv, Zombie: f[0] == "Z"})
	}
	return out
}
