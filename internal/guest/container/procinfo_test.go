package container

import (
	"os"
	"strings"
	"testing"
)

// ProcessInfo reads what ps -ef shows, here of the test itself.
func TestProcessInfoOfSelf(t *testing.T) {
	up, err := Uptime()
	if err != nil {
		t.Fatal(err)
	}
	info, err := ProcessInfo(os.Getpid(), up)
	if err != nil {
		t.Fatal(err)
	}
	if info.PPid != os.Getppid() || info.UID != os.Getuid() || !strings.Contains(info.Cmd, os.Args[0]) {
		t.Errorf("got %+v; want ppid %d, uid %d, a command line with %s", info, os.Getppid(), os.Getuid(), os.Args[0])
	}
	if _, err := ProcessInfo(1<<22+1, up); err == nil {
		t.Error("a pid past the kernel's limit was read")
	}
}
