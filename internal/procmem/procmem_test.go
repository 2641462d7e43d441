package procmem

import (
	"os"
	"os/exec"
	"testing"
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

func TestReadTreeCountsChildren(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()

	self, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	child, err := Read(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	tree, n, err := ReadTree(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if n < 2 {
		t.Fatalf("ReadTree counted %d processes, want the test and its sleep at least", n)
	}
	// PSS moves a little between the reads; the child's share must be in.
	if tree.PSS < self.PSS/2+child.PSS || tree.RSS < child.RSS {
		t.Fatalf("tree %v, self %v, child %v: the child is not counted", tree, self, child)
	}
}

func TestReadMissingProcess(t *testing.T) {
	if _, _, err := ReadTree(1 << 30); !os.IsNotExist(err) {
		t.Fatalf("ReadTree of a pid that does not exist: %v, want a not-exist error", err)
	}
}
