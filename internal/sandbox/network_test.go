package sandbox

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestGuestNetworkNamespace(t *testing.T) {
	host := &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace, Path: "/var/run/netns/x"}}}
	for _, alone := range []bool{false, true} {
		g := guestNetworkNamespace(host, alone)
		if len(g.Namespaces) != 1 || g.Namespaces[0].Type != specs.PIDNamespace {
			t.Fatalf("alone=%v: guest namespaces %+v", alone, g.Namespaces)
		}
	}
	if len(host.Namespaces) != 2 || host.Namespaces[1].Path == "" {
		t.Fatalf("host spec modified: %+v", host.Namespaces)
	}
	if NetworkNamespacePath(&specs.Spec{Linux: host}) != "/var/run/netns/x" {
		t.Fatal("path not found")
	}
	fresh := &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.UTSNamespace}, {Type: specs.NetworkNamespace}}}
	if g := guestNetworkNamespace(fresh, false); g != fresh {
		t.Fatal("in a pod's VM a new network namespace must stay")
	}
	g := guestNetworkNamespace(fresh, true)
	if len(g.Namespaces) != 1 || g.Namespaces[0].Type != specs.UTSNamespace {
		t.Fatalf("a stand-alone container takes the VM's namespace: %+v", g.Namespaces)
	}
	if len(fresh.Namespaces) != 2 {
		t.Fatalf("spec modified: %+v", fresh.Namespaces)
	}
	none := &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}}}
	if g := guestNetworkNamespace(none, true); g != none {
		t.Fatal("no network namespace entry: nothing to change")
	}
}
