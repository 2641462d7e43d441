package cli

import (
	"slices"
	"testing"

	"github.com/opencontainers/runc/libcontainer/capabilities"
	"github.com/opencontainers/runc/libcontainer/seccomp"
	"github.com/opencontainers/runc/libcontainer/specconv"
)

// features lists what the guest's libcontainer knows, less what cannot
// cross the VM's boundary.
func TestFeaturesMatchTheGuestsLibcontainer(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want []string
	}{
		{"mount options", featureMountOptions, specconv.KnownMountOptions()},
		{"seccomp actions", featureSeccompActions, slices.DeleteFunc(seccomp.KnownActions(), func(a string) bool { return a == "SCMP_ACT_NOTIFY" })},
		{"seccomp operators", featureSeccompOperators, seccomp.KnownOperators()},
		{"seccomp archs", featureSeccompArchs, seccomp.KnownArchs()},
		{"seccomp flags", featureSeccompFlags, seccomp.KnownFlags()},
		{"capabilities", featureCapabilities, capabilities.KnownCapabilities()},
	} {
		if !slices.Equal(slices.Sorted(slices.Values(c.got)), slices.Sorted(slices.Values(c.want))) {
			t.Errorf("%s: hull lists %q, libcontainer knows %q", c.name, c.got, c.want)
		}
	}
}
