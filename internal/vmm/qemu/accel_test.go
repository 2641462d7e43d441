package qemu

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckKVMModule(t *testing.T) {
	for _, tc := range []struct {
		name    string
		modules []string
		refused bool
	}{
		{"intel", []string{"kvm", "kvm_intel"}, false},
		{"amd", []string{"kvm", "kvm_amd"}, false},
		{"pvm only", []string{"kvm", "kvm_pvm"}, true},
		{"pvm beside hardware kvm", []string{"kvm", "kvm_pvm", "kvm_intel"}, false},
		{"built in, nothing listed", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, m := range tc.modules {
				if err := os.Mkdir(filepath.Join(dir, m), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			err := checkKVMModule(dir)
			if tc.refused != (err != nil) {
				t.Fatalf("refused = %v, want %v (err %v)", err != nil, tc.refused, err)
			}
			if err != nil && !strings.Contains(err.Error(), "kvm_pvm") {
				t.Errorf("error does not name the module: %v", err)
			}
		})
	}
}
