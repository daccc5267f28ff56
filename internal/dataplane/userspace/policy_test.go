package userspace

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/hike-vpn/hike/internal/dataplane"
)

func TestRangePrefixes(t *testing.T) {
	tests := []struct {
		start, end string
		want       []string
	}{
		{"10.0.0.0", "10.0.0.255", []string{"10.0.0.0/24"}},
		{"10.0.0.7", "10.0.0.7", []string{"10.0.0.7/32"}},
		{"10.0.0.1", "10.0.0.6", []string{"10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"}},
		{"10.0.0.255", "10.0.1.0", []string{"10.0.0.255/32", "10.0.1.0/32"}},
		{"0.0.0.0", "255.255.255.255", []string{"0.0.0.0/0"}},
		{"255.255.255.254", "255.255.255.255", []string{"255.255.255.254/31"}},
		{"128.0.0.0", "255.255.255.255", []string{"128.0.0.0/1"}},
		{"::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", []string{"::/0"}},
		{"fd00::", "fd00::ffff:ffff:ffff:ffff", []string{"fd00::/64"}},
		{"fd00::ffff:ffff:ffff:ffff", "fd00:0:0:1::", []string{"fd00::ffff:ffff:ffff:ffff/128", "fd00:0:0:1::/128"}},
	}
	for _, tt := range tests {
		got := rangePrefixes(netip.MustParseAddr(tt.start), netip.MustParseAddr(tt.end))
		var gs []string
		for _, p := range got {
			gs = append(gs, p.String())
		}
		if !slices.Equal(gs, tt.want) {
			t.Errorf("%s-%s: got %v, want %v", tt.start, tt.end, gs, tt.want)
		}
	}
}

// TestRangePrefixesExact checks on random IPv4 ranges that the prefixes
// are disjoint, sorted and cover exactly the range.
func TestRangePrefixesExact(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		a, b := r.Uint32(), r.Uint32()
		if r.IntN(2) == 0 {
			b = a + r.Uint32N(5000)
			if b < a {
				b = ^uint32(0)
			}
		}
		if b < a {
			a, b = b, a
		}
		next := uint64(a)
		for _, p := range rangePrefixes(addr4(a), addr4(b)) {
			s := u128From(p.Addr()).lo
			if s != next || p.Masked() != p {
				t.Fatalf("range %d-%d: prefix %s does not continue at %d", a, b, p, next)
			}
			next = s + 1<<(32-p.Bits())
		}
		if next != uint64(b)+1 {
			t.Fatalf("range %d-%d: prefixes end at %d", a, b, next-1)
		}
	}
}

func addr4(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// TestSelectorTableMatchesLinearScan compares the table with a plain scan
// of every selector on random policies and packets: both must pick the
// same policy, and removing policies must leave the table consistent.
func TestSelectorTableMatchesLinearScan(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	randSel := func() dataplane.TrafficSelector {
		base := 0x0a000000 | r.Uint32N(1<<12)
		var s dataplane.TrafficSelector
		switch r.IntN(3) {
		case 0: // a prefix
			bits := 20 + r.IntN(13)
			p, _ := addr4(base).Prefix(bits)
			s = dataplane.PrefixSelector(p)
		default: // a range
			s = dataplane.TrafficSelector{Start: addr4(base), End: addr4(base + r.Uint32N(300)), EndPort: 0xffff}
		}
		if r.IntN(3) == 0 {
			s.Proto = []uint8{protoTCP, protoUDP}[r.IntN(2)]
			if r.IntN(2) == 0 {
				s.StartPort = uint16(r.IntN(4))
				s.EndPort = s.StartPort + uint16(r.IntN(3))
			}
		}
		return s
	}
	var table selectorTable
	var pols []*policy
	for i := range 300 {
		p := dataplane.Policies{ReqID: uint32(i + 1), LocalTS: []dataplane.TrafficSelector{randSel()},
			RemoteTS: []dataplane.TrafficSelector{randSel(), randSel()}}
		pol := compilePolicy(&p)
		pols = append(pols, pol)
		table.add(pol)
	}
	linear := func(f *flow) *policy {
		var best candidate
		for _, pol := range pols {
			if !pol.matchLocal(f) {
				continue
			}
			for i := range pol.remote {
				c := candidate{pol, &pol.remote[i]}
				if c.remote.match(f.dst, f, f.dport) && (best.pol == nil || c.compare(best) < 0) {
					best = c
				}
			}
		}
		return best.pol
	}
	check := func() {
		t.Helper()
		hits := 0
		for range 3000 {
			f := flow{src: addr4(0x0a000000 | r.Uint32N(1<<12)), dst: addr4(0x0a000000 | r.Uint32N(1<<12)),
				proto: []uint8{protoTCP, protoUDP, protoICMP}[r.IntN(3)], portsKnown: true,
				sport: uint16(r.IntN(5)), dport: uint16(r.IntN(5))}
			got, want := table.lookup(&f), linear(&f)
			if got != want {
				t.Fatalf("flow %+v: table picked %v, linear scan %v", f, reqID(got), reqID(want))
			}
			if got != nil {
				hits++
			}
		}
		if hits == 0 {
			t.Fatal("no flow matched any policy: the test proves nothing")
		}
	}
	check()
	for i := 0; i < len(pols); i += 2 {
		table.remove(pols[i])
	}
	pols = slices.DeleteFunc(pols, func(p *policy) bool { return p.reqID%2 == 1 })
	check()
	for _, p := range pols {
		table.remove(p)
	}
	if n := len(table.fam[0].byPrefix) + len(table.fam[0].lens); n != 0 {
		t.Errorf("empty table keeps %d entries", n)
	}
}

func reqID(p *policy) any {
	if p == nil {
		return nil
	}
	return p.reqID
}

func TestParseFlow(t *testing.T) {
	tcp := ipv4("10.0.0.1", "10.0.0.2", protoTCP, 1234, 80, []byte("data"))
	f, n, ok := parseFlow(append(tcp, 0, 0, 0, 0)) // TFC padding after the packet
	if !ok || n != len(tcp) || f.proto != protoTCP || f.sport != 1234 || f.dport != 80 || !f.portsKnown ||
		f.src != netip.MustParseAddr("10.0.0.1") || f.dst != netip.MustParseAddr("10.0.0.2") {
		t.Errorf("TCP: %+v n=%d ok=%v", f, n, ok)
	}
	frag := ipv4("10.0.0.1", "10.0.0.2", protoUDP, 1, 2, nil)
	frag[7] = 10 // fragment offset 80: no transport header here
	if f, _, ok := parseFlow(frag); !ok || f.portsKnown {
		t.Errorf("non-first fragment: ports known %v ok %v", f.portsKnown, ok)
	}
	icmp := ipv4("10.0.0.1", "10.0.0.2", protoICMP, 8<<8|0, 0, nil)
	if f, _, _ := parseFlow(icmp); f.sport != 0x0800 || f.dport != 0x0800 {
		t.Errorf("ICMP echo: type/code %x/%x, want 0800 (RFC 7296 §3.13.1)", f.sport, f.dport)
	}
	v6 := ipv6("fd00::1", "fd00::2", 53, 5353, []byte("q"))
	if f, n, ok := parseFlow(v6); !ok || n != len(v6) || f.sport != 53 || f.dport != 5353 || f.proto != protoUDP {
		t.Errorf("IPv6 UDP: %+v", f)
	}
	// A hop-by-hop options header before UDP.
	hbh := append([]byte(nil), v6[:40]...)
	hbh[6] = 0
	hbh = append(hbh, protoUDP, 0, 1, 4, 0, 0, 0, 0)
	hbh = append(hbh, v6[40:]...)
	hbh[5] += 8
	if f, _, ok := parseFlow(hbh); !ok || f.proto != protoUDP || f.dport != 5353 {
		t.Errorf("IPv6 with hop-by-hop: %+v ok=%v", f, ok)
	}
	for _, bad := range [][]byte{nil, {0x45}, tcp[:19], v6[:39], {0x55, 0, 0, 20}} {
		if _, _, ok := parseFlow(bad); ok {
			t.Errorf("accepted % x", bad)
		}
	}
	short := append([]byte(nil), tcp...)
	short[3] = 200 // total length beyond the buffer
	if _, _, ok := parseFlow(short); ok {
		t.Error("accepted a total length beyond the data")
	}
}

func FuzzParseFlow(f *testing.F) {
	f.Add(ipv4("10.0.0.1", "10.0.0.2", protoTCP, 1, 2, []byte("x")))
	f.Add(ipv4("10.0.0.1", "10.0.0.2", protoICMP, 0, 0, nil))
	f.Add(ipv6("fd00::1", "fd00::2", 1, 2, nil))
	f.Add([]byte{0x60, 0, 0, 0, 0, 8, 44, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		fl, n, ok := parseFlow(b)
		if !ok {
			return
		}
		if n > len(b) || n < 20 {
			t.Fatalf("length %d of %d-octet packet", n, len(b))
		}
		if fl.src.Is4() != (b[0]>>4 == 4) {
			t.Fatal("family does not match the version")
		}
	})
}
