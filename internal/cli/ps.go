package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"time"

	"github.com/containerd/errdefs"
	"github.com/urfave/cli"
	"golang.org/x/sys/unix"

	"github.com/hull-runtime/hull/internal/agentclient"
	"github.com/hull-runtime/hull/internal/state"
	"github.com/hull-runtime/hull/internal/supervisor"
)

var psCommand = cli.Command{
	Name:      "ps",
	Usage:     "list the processes of a container (pids in its VM)",
	ArgsUsage: "<container-id>",
	Flags:     []cli.Flag{cli.StringFlag{Name: "format, f", Value: "table", Usage: "table or json"}},
	Action: func(c *cli.Context) error {
		store, id, st, err := readContainer(c)
		if err != nil {
			return err
		}
		if c.NArg() > 1 {
			// runc hands them to the host's ps; the processes are in the
			// VM, where there is none.
			return fmt.Errorf("ps options %q: not supported, the container's processes are in its VM: %w", []string(c.Args()[1:]), errdefs.ErrNotImplemented)
		}
		format := c.String("format")
		if format != "json" && format != "table" {
			return fmt.Errorf("--format %q: must be table or json", format)
		}
		var (
			pids  []uint32
			procs []agentclient.Process
		)
		if st.Status != state.Stopped {
			ctx, cancel := controlContext()
			defer cancel()
			r, err := supervisor.CallFor(ctx, store.Dir(id), supervisor.Request{Op: "ps"})
			if err != nil {
				return err
			}
			pids, procs = r.Pids, r.Processes
		}
		// A stopped container has no processes: runc prints none (null in
		// JSON) and succeeds.
		switch format {
		case "json":
			return json.NewEncoder(os.Stdout).Encode(pids)
		case "table":
			if len(procs) == 0 && len(pids) > 0 {
				// Too many processes for their details to travel (or an
				// agent that sends none): their pids.
				fmt.Println("PID")
				for _, p := range pids {
					fmt.Println(p)
				}
				return nil
			}
			printPsTable(os.Stdout, procs, time.Now())
			return nil
		}
		return fmt.Errorf("--format %q: must be table or json", c.String("format"))
	},
}

// printPsTable prints procs as `ps -ef` does, which is what runc's ps
// shows (it runs the host's ps and keeps the container's lines). The pids
// are the guest's; user names are the host's for those uids, as with runc.
func printPsTable(w io.Writer, procs []agentclient.Process, now time.Time) {
	fmt.Fprintln(w, "UID        PID  PPID  C STIME TTY          TIME CMD")
	for _, p := range procs {
		name := strconv.Itoa(int(p.UID))
		if u, err := user.LookupId(name); err == nil && len(u.Username) <= 8 {
			name = u.Username
		}
		c := 0
		if p.Elapsed > 0 {
			c = int(min(float64(p.CPU)*100/float64(p.Elapsed), 99))
		}
		start := now.Add(-p.Elapsed)
		stime := start.Format("15:04")
		if y1, m1, d1 := start.Date(); y1 != now.Year() || m1 != now.Month() || d1 != now.Day() {
			stime = start.Format("Jan02")
		}
		secs := int(p.CPU / time.Second)
		cpu := fmt.Sprintf("%02d:%02d:%02d", secs/3600%24, secs/60%60, secs%60)
		if days := secs / 86400; days > 0 {
			cpu = fmt.Sprintf("%d-%s", days, cpu)
		}
		fmt.Fprintf(w, "%-8s %5d %5d %2d %-5s %-8s %8s %s\n", name, p.Pid, p.PPid, c, stime, ttyName(p.TTY), cpu, p.Cmd)
	}
}

// ttyName names a controlling terminal from its device number as ps does:
// pts/N for pseudo-terminals (majors 136 to 143), ttyN, and ? for none.
func ttyName(dev uint64) string {
	major, minor := unix.Major(dev), unix.Minor(dev)
	switch {
	case dev == 0:
		return "?"
	case major >= 136 && major <= 143:
		return "pts/" + strconv.Itoa(int((major-136)*256+minor))
	case major == 4 && minor < 64:
		return "tty" + strconv.Itoa(int(minor))
	case major == 5 && minor == 1:
		return "console"
	}
	return "?"
}
