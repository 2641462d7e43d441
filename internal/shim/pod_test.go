package shim

import (
	"fmt"
	"testing"
	"time"
)

func TestOOMLimiter(t *testing.T) {
	l := newOOMLimiter(time.Second)
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	if !l.allow("a", t0) || !l.allow("b", t0) {
		t.Fatal("first events of two containers held back")
	}
	for i := 1; i < 1000; i++ {
		if l.allow("a", t0.Add(time.Duration(i)*time.Millisecond)) {
			t.Fatalf("event %d ms after the first let through", i)
		}
	}
	if !l.allow("a", t0.Add(time.Second)) {
		t.Error("event a second later held back")
	}
	// Many containers: the map keeps only those heard from lately.
	for i := 0; i < 1000; i++ {
		l.allow(fmt.Sprint("c", i), t0.Add(time.Duration(i)*time.Second))
	}
	if n := len(l.last); n > 65 {
		t.Errorf("%d containers remembered", n)
	}
}
