package procmem

import (
	"os"
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
