package containerd

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
)

// cniBinDir holds Debian's containernetworking-plugins.
const cniBinDir = "/usr/lib/cni"

// configTOML is containerd's configuration (version 2) for one private
// daemon: every path under the daemon's directory, nothing shared with a
// system containerd (/var/lib/containerd, /run/containerd/containerd.sock,
// /etc/cni, /opt) except the shim socket directory, whose socket names
// hash our address.
func (d *Daemon) configTOML(opts Options) string {
	q := strconv.Quote
	var b strings.Builder
	fmt.Fprintf(&b, `version = 2
root = %s
state = %s
# Snapshotters that cannot work here only add noise to the log.
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = %s

[ttrpc]
  address = %s

[debug]
  address = %s
  level = %s

[plugins."io.containerd.internal.v1.opt"]
  path = %s

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %s
  # This host's capability bounding set lacks CAP_SYS_RESOURCE: without
  # this, setting a container's oom_score_adj below containerd's fails.
  restrict_oom_score_adj = true
  # Pod network namespaces under our state directory, not /run/netns,
  # so that cleanup finds exactly ours.
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %s
    conf_dir = %s
    max_conf_num = 1

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = %s

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # runc's state beside ours rather than in /run/containerd/runc.
        Root = %s

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.hull]
      # containerd finds containerd-shim-hull-v2 on its PATH.
      runtime_type = "io.containerd.hull.v2"
`,
		q(d.Root), q(d.State),
		q(d.Address), q(d.Address+".ttrpc"), q(filepath.Join(d.Dir, "debug.sock")), q(opts.LogLevel),
		q(filepath.Join(d.Dir, "opt")),
		q(opts.SandboxImage),
		q(cniBinDir), q(d.cniConfDir),
		q(opts.DefaultRuntime),
		q(filepath.Join(d.State, "runc")),
	)
	if len(opts.HullRuntimeOptions) > 0 {
		b.WriteString("      [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.hull.options]\n")
		for _, k := range slices.Sorted(maps.Keys(opts.HullRuntimeOptions)) {
			fmt.Fprintf(&b, "        %s = %s\n", k, q(opts.HullRuntimeOptions[k]))
		}
	}
	if opts.ExtraConfig != "" {
		b.WriteString("\n" + opts.ExtraConfig + "\n")
	}
	return b.String()
}

// cniConflist is the pod network: a private bridge, host-local addresses,
// and portmap for host ports. The bridge is not the pods' gateway as far
// as the bridge plugin knows (isGateway false), because with isGateway the
// plugin turns on net.ipv4.ip_forward in the root namespace. The harness
// gives the bridge the gateway address itself; pods reach the host there,
// and the host reaches pods directly on the bridge, so nothing needs
// forwarding. No masquerade: pods have no way out, and need none.
func (d *Daemon) cniConflist() ([]byte, error) {
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       d.Network,
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      d.Bridge,
				"isGateway":   false,
				"ipMasq":      false,
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": d.Subnet.String(), "gateway": d.Gateway.String()}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": filepath.Join(d.Dir, "ipam"),
				},
			},
			// portmap sets route_localnet on our bridge (not host-wide)
			// so that 127.0.0.1:hostPort reaches a pod.
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("cni config: %w", err)
	}
	return b, nil
}

// setupBridge creates the pod bridge, named and addressed uniquely, with
// the gateway address on it. The bridge plugin finds it there and only
// attaches pods' veths to it.
func (d *Daemon) setupBridge() error {
	var suffix [4]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return fmt.Errorf("random bridge name: %w", err)
	}
	d.Bridge = "hullcri" + hex.EncodeToString(suffix[:])[:7] // 14 of IFNAMSIZ's 15
	d.Network = "hull-test-" + strings.TrimPrefix(d.Bridge, "hullcri")

	subnet, err := freeSubnet()
	if err != nil {
		return err
	}
	d.Subnet = subnet
	d.Gateway = make(net.IP, 4)
	copy(d.Gateway, subnet.IP.To4())
	d.Gateway[3] = 1

	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: d.Bridge}}
	if err := netlink.LinkAdd(br); err != nil {
		return fmt.Errorf("create bridge %s: %w", d.Bridge, err)
	}
	d.bridgeMade = true
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: d.Gateway, Mask: subnet.Mask}}
	if err := netlink.AddrAdd(br, addr); err != nil {
		return fmt.Errorf("address bridge %s: %w", d.Bridge, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("bring up bridge %s: %w", d.Bridge, err)
	}
	return nil
}

// removeBridge deletes the bridge, if we made it and it is still there.
func (d *Daemon) removeBridge() error {
	if !d.bridgeMade {
		return nil
	}
	link, err := netlink.LinkByName(d.Bridge)
	if err != nil {
		var notFound netlink.LinkNotFoundError
		if errors.As(err, &notFound) {
			d.bridgeMade = false
			return nil
		}
		return fmt.Errorf("find bridge %s: %w", d.Bridge, err)
	}
	if err := netlink.LinkDel(link); err != nil {
		return fmt.Errorf("delete bridge %s: %w", d.Bridge, err)
	}
	d.bridgeMade = false
	return nil
}

// freeSubnet picks a /24 in 10.240.0.0/12's first /16s that no address or
// route of the host overlaps, at random so that daemons started at the
// same time rarely pick the same.
func freeSubnet() (*net.IPNet, error) {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	overlaps := func(n *net.IPNet) bool {
		for _, r := range routes {
			// The default route (no Dst, or 0.0.0.0/0) overlaps all.
			if r.Dst == nil {
				continue
			}
			if ones, _ := r.Dst.Mask.Size(); ones == 0 {
				continue
			}
			if r.Dst.Contains(n.IP) || n.Contains(r.Dst.IP) {
				return true
			}
		}
		for _, a := range addrs {
			if a.IPNet != nil && (a.Contains(n.IP) || n.Contains(a.IP)) {
				return true
			}
		}
		return false
	}
	for range 64 {
		i, err := rand.Int(rand.Reader, big.NewInt(16*256))
		if err != nil {
			return nil, fmt.Errorf("random subnet: %w", err)
		}
		v := int(i.Int64())
		n := &net.IPNet{IP: net.IPv4(10, byte(240+v/256), byte(v%256), 0).To4(), Mask: net.CIDRMask(24, 32)}
		if !overlaps(n) {
			return n, nil
		}
	}
	return nil, fmt.Errorf("no free /24 in 10.240.0.0/12")
}

// writeFile writes data to path, creating its directory.
func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}
