package vip

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hike-vpn/hike/internal/netlab"
	"github.com/hike-vpn/hike/internal/netlab/labtest"
	"golang.org/x/sys/unix"
)

// bogusMAC stands for the dead node: the neighbour entry a router on the
// segment still holds when the VIP moves.
const bogusMAC = "02:00:00:00:00:99"

// pair builds namespaces A (the node taking the VIP, interface "va") and B
// (a router on the segment, "vb") joined by a veth pair. The lab, and so
// both namespaces, go away in Cleanup whether the test passes or not.
func pair(t *testing.T, prefix, aAddr, bAddr string) (a, b *netlab.NS) {
	t.Helper()
	labtest.Require(t, netlab.Check)
	l, err := netlab.New(prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("removing namespaces: %v", err)
		}
	})
	// The pid keeps concurrent runs (plain and -race) out of each other's way.
	if a, err = l.AddNS(fmt.Sprintf("a%d", os.Getpid())); err != nil {
		t.Fatal(err)
	}
	if b, err = l.AddNS(fmt.Sprintf("b%d", os.Getpid())); err != nil {
		t.Fatal(err)
	}
	if err := l.Veth(a, "va", netip.MustParsePrefix(aAddr), b, "vb", netip.MustParsePrefix(bAddr)); err != nil {
		t.Fatal(err)
	}
	return a, b
}

// inNS runs fn on a thread that has entered ns, so that the package's
// netlink and packet sockets are created there, as they would be in a daemon
// running in that namespace.
func inNS(t *testing.T, ns *netlab.NS, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + ns.Name)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("setns %s: %v", ns.Name, err)
	}
	defer func() {
		// A thread that cannot go back stays locked, and the runtime
		// retires it when the goroutine ends instead of reusing it.
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			t.Errorf("setns back: %v", err)
			return
		}
		runtime.UnlockOSThread()
	}()
	fn()
}

func run(t *testing.T, ns *netlab.NS, args ...string) []byte {
	t.Helper()
	out, err := ns.Run(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func linkMAC(t *testing.T, ns *netlab.NS, ifname string) string {
	t.Helper()
	var links []struct{ Address string }
	if err := json.Unmarshal(run(t, ns, "ip", "-j", "link", "show", "dev", ifname), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -j link show %s: %v %v", ifname, links, err)
	}
	return links[0].Address
}

type neigh struct {
	LLAddr string
	State  []string
	router bool
}

// neighbour returns ns's entry for a on ifname (zero if there is none).
func neighbour(t *testing.T, ns *netlab.NS, ifname string, a netip.Addr) neigh {
	t.Helper()
	out := run(t, ns, "ip", "-j", "neigh", "show", "to", a.String(), "dev", ifname)
	var raw []map[string]json.RawMessage
	if err := json.Unmarshal(out, &raw); err != nil {
		t.Fatalf("ip -j neigh: %v: %s", err, out)
	}
	var n neigh
	if len(raw) == 1 {
		json.Unmarshal(raw[0]["lladdr"], &n.LLAddr)
		json.Unmarshal(raw[0]["state"], &n.State)
		_, n.router = raw[0]["router"] // iproute2 prints the flag as a key
	}
	return n
}

// seed plants the stale belief the announcement has to correct.
func seed(t *testing.T, ns *netlab.NS, ifname string, a netip.Addr, nud string) {
	t.Helper()
	run(t, ns, "ip", "neigh", "replace", a.String(), "dev", ifname, "lladdr", bogusMAC, "nud", nud)
	if n := neighbour(t, ns, ifname, a); n.LLAddr != bogusMAC {
		t.Fatalf("seeded entry for %s: %+v", a, n)
	}
}

// waitNeigh waits for ns's entry for a to carry mac. The frames are
// processed asynchronously by the receiving namespace, so allow a moment.
func waitNeigh(t *testing.T, ns *netlab.NS, ifname string, a netip.Addr, mac string) neigh {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		n := neighbour(t, ns, ifname, a)
		if n.LLAddr == mac {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("entry for %s: %+v, want lladdr %s", a, n, mac)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func present(t *testing.T, ifname string, a netip.Addr) bool {
	t.Helper()
	ok, err := Present(ifname, a)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// moveAndBack runs the takeover and hand-back sequence a node goes through
// and checks it from the router's side. B has no arp_accept set on
// purpose: Linux updates an existing entry from a gratuitous ARP regardless
// (arp_accept only governs creating new ones), and an existing entry is the
// case that matters, since it is the one pointing at the dead node.
func moveAndBack(t *testing.T, a, b *netlab.NS, vip netip.Prefix, ping ...string) {
	macA := linkMAC(t, a, "va")
	// "reachable" is set just now, so it is within locktime: only an
	// announcement recognised as gratuitous (or an NA with Override) may
	// replace it. "stale" is the usual state of a dead node's entry.
	for _, nud := range []string{"stale", "reachable"} {
		seed(t, b, "vb", vip.Addr(), nud)
		// The second round also shows that adding a present VIP is fine
		// and still announces it.
		inNS(t, a, func() {
			if err := Add("va", vip); err != nil {
				t.Fatal(err)
			}
			if !present(t, "va", vip.Addr()) {
				t.Fatalf("%s not on va after Add", vip)
			}
		})
		waitNeigh(t, b, "vb", vip.Addr(), macA)
	}
	run(t, b, append(ping, "-c", "1", "-W", "2", vip.Addr().String())...)

	inNS(t, a, func() {
		if err := Remove("va", vip); err != nil {
			t.Fatal(err)
		}
		if present(t, "va", vip.Addr()) {
			t.Fatalf("%s still on va after Remove", vip)
		}
		if err := Remove("va", vip); err != nil {
			t.Fatalf("second Remove: %v", err)
		}
	})
	if out, err := b.Run(append(ping, "-c", "1", "-W", "1", vip.Addr().String())...); err == nil {
		t.Fatalf("VIP still answers after Remove:\n%s", out)
	}
}

func TestMoveIPv4(t *testing.T) {
	a, b := pair(t, "hkv4", "192.0.2.1/24", "192.0.2.2/24")
	moveAndBack(t, a, b, netip.MustParsePrefix("192.0.2.11/24"), "ping")
}

func TestMoveIPv6(t *testing.T) {
	a, b := pair(t, "hkv6", "2001:db8::1/64", "2001:db8::2/64")
	moveAndBack(t, a, b, netip.MustParsePrefix("2001:db8::11/64"), "ping", "-6")
}

// TestARPForms sends each form of gratuitous ARP alone: each must correct
// the entry by itself, since a router on the segment may honour only one.
func TestARPForms(t *testing.T) {
	a, b := pair(t, "hkva", "192.0.2.1/24", "192.0.2.2/24")
	vip := netip.MustParseAddr("192.0.2.11")
	macA := linkMAC(t, a, "va")
	for _, op := range []uint16{arpRequest, arpReply} {
		seed(t, b, "vb", vip, "reachable")
		inNS(t, a, func() {
			ifc, err := link("va")
			if err != nil {
				t.Fatal(err)
			}
			if err := sendARP(ifc.Index, op, [6]byte(ifc.HardwareAddr), vip.As4()); err != nil {
				t.Fatal(err)
			}
		})
		waitNeigh(t, b, "vb", vip, macA)
	}
}

// TestNARouterFlag: receivers copy the Router flag into their entry, so it
// must follow the node's forwarding setting.
func TestNARouterFlag(t *testing.T) {
	a, b := pair(t, "hkvr", "2001:db8::1/64", "2001:db8::2/64")
	vip := netip.MustParseAddr("2001:db8::11")
	macA := linkMAC(t, a, "va")
	for _, fwd := range []bool{true, false} {
		run(t, a, "sysctl", "-qw", fmt.Sprintf("net.ipv6.conf.va.forwarding=%d", map[bool]int{true: 1}[fwd]))
		seed(t, b, "vb", vip, "stale")
		inNS(t, a, func() {
			if err := Add("va", netip.PrefixFrom(vip, 64)); err != nil {
				t.Fatal(err)
			}
		})
		if n := waitNeigh(t, b, "vb", vip, macA); n.router != fwd {
			t.Errorf("forwarding %v: entry %+v", fwd, n)
		}
	}
}

// TestErrors needs no privileges: every case fails before anything changes.
func TestErrors(t *testing.T) {
	v4 := netip.MustParsePrefix("192.0.2.11/24")
	const none = "hkvipnone0"
	for _, c := range []struct {
		err  error
		want string
	}{
		{Add(none, v4), "vip: add 192.0.2.11/24 to hkvipnone0: no such interface"},
		{Remove(none, v4), "vip: remove 192.0.2.11/24 from hkvipnone0: no such interface"},
		{Announce(none, v4.Addr()), "vip: announce 192.0.2.11 on hkvipnone0: no such interface"},
		{Add("", v4), "vip: add 192.0.2.11/24 to : no such interface"},
		{Add("lo", netip.Prefix{}), "vip: add invalid Prefix to lo: invalid prefix"},
		{Add("lo", netip.MustParsePrefix("224.0.0.1/32")), "vip: add 224.0.0.1/32 to lo: not a unicast address"},
		{Remove("lo", netip.MustParsePrefix("::/0")), "vip: remove ::/0 from lo: not a unicast address"},
		{Add("lo", netip.MustParsePrefix("::ffff:192.0.2.11/120")), "vip: add ::ffff:192.0.2.11/120 to lo: IPv4-mapped IPv6 address; give the IPv4 address"},
		{Announce("lo", netip.MustParseAddr("fe80::1%lo")), "vip: announce fe80::1%lo on lo: address has a zone; the interface is given separately"},
	} {
		if c.err == nil || c.err.Error() != c.want {
			t.Errorf("got %v\nwant %s", c.err, c.want)
		}
	}
	if ok, err := Present(none, v4.Addr()); ok || err == nil || !strings.HasSuffix(err.Error(), "no such interface") {
		t.Errorf("Present on a missing interface: %v %v", ok, err)
	}
}

// TestDownInterface: the address goes on even when the announcement cannot
// go out, and the error says which half failed, so the daemon can retry.
func TestDownInterface(t *testing.T) {
	a, _ := pair(t, "hkvd", "192.0.2.1/24", "192.0.2.2/24")
	run(t, a, "ip", "link", "set", "va", "down")
	vip := netip.MustParsePrefix("192.0.2.11/24")
	inNS(t, a, func() {
		err := Add("va", vip)
		if err == nil || !strings.HasPrefix(err.Error(), "vip: add 192.0.2.11/24 to va: send ARP: ") ||
			!errors.Is(err, unix.ENETDOWN) {
			t.Errorf("Add on a down interface: %v", err)
		}
		if !present(t, "va", vip.Addr()) {
			t.Error("address not added")
		}
		if err := Remove("va", vip); err != nil {
			t.Error(err)
		}
	})
}
