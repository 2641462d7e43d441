package agent

import (
	"slices"
	"testing"

	"github.com/hull-runtime/hull/internal/guest/kmod"
)

func TestSplitChannelModulesKeepsOrder(t *testing.T) {
	var mods []kmod.Module
	for _, n := range []string{"virtio_ring", "virtio", "virtio_mmio", "virtio_console", "vsock", "fuse", "virtiofs", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport", "virtio_net"} {
		mods = append(mods, kmod.Module{Name: n, Path: "/lib/modules/x/" + n + ".ko"})
	}
	first, rest := splitChannelModules(mods, "")
	names := func(ms []kmod.Module) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.Name)
		}
		return out
	}
	if got, want := names(first), []string{"virtio_ring", "virtio", "virtio_mmio", "virtio_console", "vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport"}; !slices.Equal(got, want) {
		t.Fatalf("channel modules %v, want %v", got, want)
	}
	if got, want := names(rest), []string{"fuse", "virtiofs", "virtio_net"}; !slices.Equal(got, want) {
		t.Fatalf("other modules %v, want %v", got, want)
	}
}

func TestSplitChannelModulesForOneChannel(t *testing.T) {
	var mods []kmod.Module
	for _, n := range []string{"virtio_ring", "virtio", "virtio_mmio", "virtio_console", "vsock", "vmw_vsock_virtio_transport", "fuse"} {
		mods = append(mods, kmod.Module{Name: n})
	}
	for channel, want := range map[string]int{"serial": 4, "vsock": 5, "": 6} {
		first, rest := splitChannelModules(mods, channel)
		if len(first) != want || len(first)+len(rest) != len(mods) {
			t.Errorf("channel %q: %d first, %d rest", channel, len(first), len(rest))
		}
		for _, m := range first {
			if channel == "serial" && m.Name == "vsock" || channel == "vsock" && m.Name == "virtio_console" {
				t.Errorf("channel %q loads %s first", channel, m.Name)
			}
		}
	}
}
