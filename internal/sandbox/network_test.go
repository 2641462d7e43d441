package sandbox

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestGuestNetworkNamespace(t *testing.T) {
	host := &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace, Path: "/var/run/netns/x"}}}
	g := guestNetworkNamespace(host)
	if len(g.Namespaces) != 1 || g.Namespaces[0].Type != specs.PIDNamespace {
		t.Fatalf("guest namespaces %+v", g.Namespaces)
	}
	if len(host.Namespaces) != 2 || host.Namespaces[1].Path == "" {
		t.Fatalf("host spec modified: %+v", host.Namespaces)
	}
	if NetworkNamespacePath(&specs.Spec{Linux: host}) != "/var/run/netns/x" {
		t.Fatal("path not found")
	}
	fresh := &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.NetworkNamespace}}}
	if g := guestNetworkNamespace(fresh); g != fresh {
		t.Fatal("a new network namespace must stay")
	}
}
