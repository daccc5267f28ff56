package xfrm

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// TestBypassMsgs: per port and family one out policy matching the source
// port and one in policy matching the destination port, UDP, any address,
// ahead of every Child SA policy, and no template (no IPsec).
func TestBypassMsgs(t *testing.T) {
	littleEndian(t)
	ps := bypassMsgs([]uint16{500, 4500})
	if len(ps) != 8 {
		t.Fatalf("%d policies, want 8 (2 ports x 2 families x in/out)", len(ps))
	}
	got := updPolicyMsg(&ps[0])
	// xfrm_selector: daddr, saddr, dport/mask 0, sport 500/ffff (big
	// endian), family 2, prefix lengths 0, proto 17 (UDP).
	sel := unhex(t, `
		00000000 00000000 00000000 00000000
		00000000 00000000 00000000 00000000
		0000 0000 01f4 ffff  0200 00 00 11 000000  00000000 00000000`)
	lft := make([]byte, 64+32)
	for i := 0; i < 4; i++ {
		binary.LittleEndian.PutUint64(lft[8*i:], inf)
	}
	// priority 1000, index 0, dir 1 (out), action 0 (allow); no template
	tail := unhex(t, "e8030000 00000000 01 00 00 00 00000000")
	diffBytes(t, "bypass out 500", got, nlmsg(0x19, 0x5, sel, lft, tail))

	in := updPolicyMsg(&ps[1])
	sel = unhex(t, `
		00000000 00000000 00000000 00000000
		00000000 00000000 00000000 00000000
		01f4 ffff 0000 0000  0200 00 00 11 000000  00000000 00000000`)
	tail = unhex(t, "e8030000 00000000 00 00 00 00 00000000")
	diffBytes(t, "bypass in 500", in, nlmsg(0x19, 0x5, sel, lft, tail))

	for _, p := range ps {
		// the most specific Child SA selector of the family
		bits := p.sel.src.Addr().BitLen()
		most := selector{src: netip.PrefixFrom(p.sel.src.Addr(), bits), dst: netip.PrefixFrom(p.sel.dst.Addr(), bits),
			proto: 17, sportMask: 0xffff, dportMask: 0xffff}
		if p.priority >= priority(&most) {
			t.Errorf("bypass priority %d does not beat a Child SA policy's %d", p.priority, priority(&most))
		}
	}
	if p := ps[7]; p.sel.src.Addr().Is4() || p.sel.dport != 4500 || p.dir != policyIn {
		t.Errorf("last policy %+v, want IPv6 in to port 4500", p)
	}
}
