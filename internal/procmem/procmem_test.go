package procmem

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"
)

func TestReadSelf(t *testing.T) {
	u, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if u.PSS == 0 || u.RSS < u.PSS || u.PSSAnon == 0 {
		t.Fatalf("implausible figures for this test process: %+v", u)
	}
	if sum := u.Add(u); sum.PSS != 2*u.PSS {
		t.Fatalf("Add: %+v", sum)
	}
}

// holdEnv makes the test binary a child that holds holdMiB of touched
// memory until killed.
const (
	holdEnv = "HULL_TEST_HOLD_MEMORY"
	holdMiB = 32
)

func TestMain(m *testing.M) {
	if os.Getenv(holdEnv) != "" {
		b := make([]byte, holdMiB<<20)
		for i := range b {
			b[i] = 1
		}
		fmt.Println("ready")
		time.Sleep(time.Minute)
		runtime.KeepAlive(b)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestReadTreeCountsChildren(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), holdEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
		t.Fatal(err)
	}

	self, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	tree, n, err := ReadTree(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if n < 2 {
		t.Fatalf("ReadTree counted %d processes, want the test and its child at least", n)
	}
	// The child's anonymous memory is its own: it must be in the sum.
	if got := tree.PSSAnon - self.PSSAnon; got < (holdMiB-4)<<20 {
		t.Fatalf("tree %v, self %v: %d MiB of the child's %d MiB counted", tree, self, got>>20, holdMiB)
	}
}

func TestReadMissingProcess(t *testing.T) {
	if _, _, err := ReadTree(1 << 30); !os.IsNotExist(err) {
		t.Fatalf("ReadTree of a pid that does not exist: %v, want a not-exist error", err)
	}
}
