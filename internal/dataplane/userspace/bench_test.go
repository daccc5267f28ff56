package userspace

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/hike-vpn/hike/internal/dataplane"
)

// BenchmarkPacketPath measures the per-packet work of both directions
// without system calls: A's outbound path (parse, policy lookup, Seal)
// hands the ESP packet to B's HandleESP (SPI lookup, Open, inbound policy
// check), which writes to a device that discards. allocs/op must be 0.
func BenchmarkPacketPath(b *testing.B) {
	for _, size := range []int{64, 1400} {
		for _, policies := range []int{1, 10000} {
			b.Run(fmt.Sprintf("size=%d/policies=%d", size, policies), func(b *testing.B) {
				p := newPair(b)
				p.devB.discard = true
				c := newChildSA(b, algGCM256, 1, 0x1001, 0x2001, ts("10.0.0.0/16"), ts("10.99.0.1/32"))
				p.install(b, c)
				// Other clients: one /32 each, as on a concentrator.
				for i := 1; i < policies; i++ {
					remote := netip.AddrFrom4([4]byte{10, 100 + byte(i>>16), byte(i >> 8), byte(i)})
					err := p.a.InstallPolicies(dataplane.Policies{ReqID: uint32(1000 + i), Local: c.outerA, Remote: c.outerB,
						LocalTS: ts("10.0.0.0/16"), RemoteTS: ts(netip.PrefixFrom(remote, 32).String())})
					if err != nil {
						b.Fatal(err)
					}
				}
				inner := ipv4("10.0.1.1", "10.99.0.1", protoUDP, 1000, 2000, make([]byte, size-28))
				buf := make([]byte, headroom+maxInner+tailroom)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					copy(buf[headroom:], inner)
					p.a.sendPacket(buf, len(inner))
				}
				b.StopTimer()
				if s := p.b.Stats(); s.RxPackets != uint64(b.N) {
					b.Fatalf("B received %d of %d packets: %+v", s.RxPackets, b.N, s)
				}
			})
		}
	}
}

// BenchmarkLookup is the outbound policy lookup alone among 10,000
// single-host policies plus a few site prefixes.
func BenchmarkLookup(b *testing.B) {
	var t selectorTable
	for i := range 10000 {
		remote := netip.AddrFrom4([4]byte{10, 100 + byte(i>>16), byte(i >> 8), byte(i)})
		p := dataplane.Policies{ReqID: uint32(i + 1), LocalTS: ts("0.0.0.0/0"), RemoteTS: ts(netip.PrefixFrom(remote, 32).String())}
		t.add(compilePolicy(&p))
	}
	for i, site := range []string{"172.16.0.0/12", "192.168.0.0/16", "10.0.0.0/8"} {
		p := dataplane.Policies{ReqID: uint32(20000 + i), LocalTS: ts("0.0.0.0/0"), RemoteTS: ts(site)}
		t.add(compilePolicy(&p))
	}
	f, _, _ := parseFlow(ipv4("192.0.2.1", "10.100.20.30", protoTCP, 1, 2, nil))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if t.lookup(&f) == nil {
			b.Fatal("no match")
		}
	}
}
