package initsys

import "testing"

func TestIsMountPoint(t *testing.T) {
	for path, want := range map[string]bool{"/proc": true, "/proc/self": false, "/": false} {
		if got, err := isMountPoint(path); err != nil || got != want {
			t.Errorf("isMountPoint(%q) = %v, %v; want %v", path, got, err, want)
		}
	}
	if _, err := isMountPoint("/no/such/path"); err == nil {
		t.Error("isMountPoint of a missing path did not fail")
	}
}
