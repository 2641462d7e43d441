package netconf

import (
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestParse(t *testing.T) {
	eth := RawInterface{Name: "eth0", MAC: "02:42:0a:c8:01:02", MTU: 1500, Addresses: []string{"10.200.1.2/24", "fd00::2/64"}}
	c, err := Parse([]RawInterface{eth}, []RawRoute{
		{Gateway: "10.200.1.1", InterfaceMAC: eth.MAC},
		{Destination: "::/0", Gateway: "fd00::1", InterfaceMAC: eth.MAC},
		{Destination: "10.9.0.0/16", InterfaceMAC: eth.MAC, Metric: 5},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Interfaces[0].Addrs[0].IPNet.String(); got != "10.200.1.2/24" {
		t.Fatalf("address %s", got)
	}
	if got := c.Routes[0].Dst.String(); got != "0.0.0.0/0" {
		t.Fatalf("default route %s", got)
	}
	many := make([]RawInterface, MaxInterfaces+1)
	for _, tc := range []struct {
		name   string
		ifaces []RawInterface
		routes []RawRoute
		want   string
	}{
		{"too many", many, nil, "interfaces"},
		{"bad mac", []RawInterface{{MAC: "zz", MTU: 1500}}, nil, "MAC"},
		{"multicast mac", []RawInterface{{MAC: "01:00:5e:00:00:01", MTU: 1500}}, nil, "MAC"},
		{"bad name", []RawInterface{{Name: "a/b", MAC: eth.MAC, MTU: 1500}}, nil, "name"},
		{"mtu", []RawInterface{{MAC: eth.MAC, MTU: 10}}, nil, "MTU"},
		{"bad cidr", []RawInterface{{MAC: eth.MAC, MTU: 1500, Addresses: []string{"10.0.0.1"}}}, nil, "address"},
		{"unknown link", []RawInterface{eth}, []RawRoute{{Gateway: "10.200.1.1", InterfaceMAC: "02:00:00:00:00:09"}}, "unknown interface"},
		{"default without gateway", []RawInterface{eth}, []RawRoute{{InterfaceMAC: eth.MAC}}, "gateway"},
		{"families", []RawInterface{eth}, []RawRoute{{Destination: "10.1.0.0/16", Gateway: "fd00::1", InterfaceMAC: eth.MAC}}, "families"},
	} {
		_, err := Parse(tc.ifaces, tc.routes)
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: want invalid argument naming %q, got %v", tc.name, tc.want, err)
		}
	}
}
