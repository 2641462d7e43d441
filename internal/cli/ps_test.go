package cli

import (
	"bytes"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hull-runtime/hull/internal/agentclient"
)

// hull ps prints runc's (ps -ef's) columns.
func TestPsTable(t *testing.T) {
	now := time.Date(2026, 11, 28, 10, 30, 0, 0, time.Local)
	var b bytes.Buffer
	printPsTable(&b, []agentclient.Process{
		{Pid: 42, PPid: 7, UID: 0, Elapsed: 5 * time.Minute, CPU: 30 * time.Second, Cmd: "sleep 1000"},
		{Pid: 43, PPid: 42, UID: 0, Elapsed: 50 * time.Hour, CPU: 26*time.Hour + 61*time.Second, TTY: uint64(unix.Mkdev(136, 3)), Cmd: "sh"},
	}, now)
	want := "UID        PID  PPID  C STIME TTY          TIME CMD\n" +
		"root        42     7 10 10:25 ?        00:00:30 sleep 1000\n" +
		"root        43    42 52 Nov26 pts/3    1-02:01:01 sh\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}
