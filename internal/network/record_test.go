package network

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

// die drops what a process that ran Setup holds, without undoing
// anything, as its death would: the taps go with their last fd (QEMU's).
func die(n *Network) {
	for _, it := range n.Ifaces {
		if it.Tap != nil {
			it.Tap.Close()
			it.Tap = nil
		}
	}
	n.h.Close()
	n.h = nil
	n.ns.Close()
}

// recordRoundTrip passes rec through JSON, as a persisted record does.
func recordRoundTrip(t *testing.T, rec Record) Record {
	t.Helper()
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	var back Record
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, rec) {
		t.Fatalf("record changed through JSON:\n%+v\n%+v", rec, back)
	}
	return back
}

func TestRecordDescribesSetup(t *testing.T) {
	path, _ := testNetns(t)
	var saved []Record
	n, err := SetupRecorded(path, func(r Record) error { saved = append(saved, r); return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if len(saved) != 1 || !reflect.DeepEqual(saved[0], n.Record()) {
		t.Fatalf("saved %+v, record %+v", saved, n.Record())
	}
	rec := recordRoundTrip(t, n.Record())
	if rec.Path != path || rec.NSIno == 0 || len(rec.Links) != 1 {
		t.Fatalf("record %+v", rec)
	}
	l := rec.Links[0]
	if l.Name != "eth0" || l.MTU != 1400 || !l.Up || l.Tap != "tap0_hull" || !l.Ingress || l.MAC != n.Ifaces[0].MAC.String() {
		t.Fatalf("link %+v", l)
	}
	var addrs, routes []string
	for _, a := range l.Addrs {
		addrs = append(addrs, a.Addr)
	}
	for _, r := range l.Routes {
		routes = append(routes, r.Dst+" via "+r.Gw)
	}
	if got := strings.Join(addrs, ","); got != "10.201.7.2/24,fd00:7::2/64" {
		t.Fatalf("addresses %s", got)
	}
	if got := strings.Join(routes, ","); !strings.Contains(got, " via 10.201.7.1") || !strings.Contains(got, "10.99.0.0/16 via 10.201.7.3") {
		t.Fatalf("routes %s", got)
	}
}

// The owner of a Setup dies: Restore, from the record alone, puts the
// namespace back, and again changes nothing.
func TestRestoreAfterDeath(t *testing.T) {
	path, ns := testNetns(t)
	before := snapshot(t, ns)
	var rec Record
	n, err := SetupRecorded(path, func(r Record) error { rec = r; return nil })
	if err != nil {
		t.Fatal(err)
	}
	die(n)
	if snapshot(t, ns) == before {
		t.Fatal("setup changed nothing")
	}
	rec = recordRoundTrip(t, rec)
	for i := range 2 {
		if err := Restore(rec); err != nil {
			t.Fatalf("restore %d: %v", i+1, err)
		}
		if after := snapshot(t, ns); after != before {
			t.Fatalf("namespace differs after restore %d:\nbefore:\n%s\nafter:\n%s", i+1, before, after)
		}
	}
	if f := tc(t, ns, "filter", "show", "dev", "eth0", "ingress"); strings.TrimSpace(f) != "" {
		t.Fatalf("filters left: %s", f)
	}
}

// Restore while the taps are still there (their fds open), and after a
// part of the namespace came back by other hands.
func TestRestoreWithTapsAndPartlyRestored(t *testing.T) {
	path, ns := testNetns(t)
	before := snapshot(t, ns)
	n, err := Setup(path)
	if err != nil {
		t.Fatal(err)
	}
	rec := n.Record()
	taps := n.Ifaces[0].Tap
	n.Ifaces[0].Tap = nil
	die(n)
	defer taps.Close()
	ip(t, "-n", ns, "addr", "add", "10.201.7.2/24", "dev", "eth0")
	if err := Restore(rec); err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, ns); after != before {
		t.Fatalf("namespace differs after restore:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// A crash after the record was saved and before Setup changed anything:
// Restore finds nothing to undo and changes nothing.
func TestRestoreBeforeAnyChange(t *testing.T) {
	path, ns := testNetns(t)
	before := snapshot(t, ns)
	var rec Record
	stop := errors.New("crash")
	if _, err := SetupRecorded(path, func(r Record) error { rec = r; return stop }); !errors.Is(err, stop) {
		t.Fatalf("setup: %v", err)
	}
	if after := snapshot(t, ns); after != before {
		t.Fatal("a failed save left changes")
	}
	if err := Restore(rec); err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, ns); after != before {
		t.Fatalf("namespace differs after restore:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func TestRestoreOtherOrGoneNamespace(t *testing.T) {
	path, ns := testNetns(t)
	n, err := Setup(path)
	if err != nil {
		t.Fatal(err)
	}
	rec := n.Record()
	die(n)
	during := snapshot(t, ns)
	other := rec
	other.NSIno++
	if err := Restore(other); err != nil {
		t.Fatal(err)
	}
	if snapshot(t, ns) != during {
		t.Fatal("restore touched a namespace that is not the recorded one")
	}
	gone := rec
	gone.Path = filepath.Join(t.TempDir(), "gone")
	if err := Restore(gone); err != nil {
		t.Fatalf("restore in a namespace that is gone: %v", err)
	}
	bad := rec
	bad.Links = append([]LinkRecord(nil), rec.Links...)
	bad.Links[0].Tap = "eth0"
	if err := Restore(bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("a record naming eth0 as a tap: %v", err)
	}
	if err := Restore(rec); err != nil {
		t.Fatal(err)
	}
}

func TestSetupRefusesForeignIngress(t *testing.T) {
	path, ns := testNetns(t)
	tc(t, ns, "qdisc", "add", "dev", "eth0", "ingress")
	before := snapshot(t, ns)
	if _, err := Setup(path); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("setup over a foreign ingress qdisc: %v", err)
	}
	if after := snapshot(t, ns); after != before {
		t.Fatalf("namespace differs:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
