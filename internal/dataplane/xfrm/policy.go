package xfrm

import (
	"fmt"
	"net/netip"

	dp "github.com/hike-vpn/hike/internal/dataplane"
)

// maxPolicies bounds how many kernel policies one Child SA may expand to,
// so that a peer proposing odd ranges cannot fill the kernel's tables.
const maxPolicies = 4096

// rangeToPrefixes splits an inclusive address range into the fewest
// prefixes that cover exactly it.
func rangeToPrefixes(start, end netip.Addr) []netip.Prefix {
	var out []netip.Prefix
	for !end.Less(start) {
		var p netip.Prefix
		for bits := 0; bits <= start.BitLen(); bits++ {
			p = netip.PrefixFrom(start, bits)
			if p.Masked().Addr() == start && !end.Less(lastAddr(p)) {
				break
			}
		}
		out = append(out, p)
		next := lastAddr(p).Next()
		if !next.IsValid() {
			break // covered up to the top of the address space
		}
		start = next
	}
	return out
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// portBlock is a port and mask as an xfrm_selector matches them:
// (port ^ value) & mask == 0. Mask 0 matches any port.
type portBlock struct{ value, mask uint16 }

// rangeToPortBlocks splits an inclusive port range into aligned blocks.
func rangeToPortBlocks(start, end uint16) []portBlock {
	if start == 0 && end == 0xffff {
		return []portBlock{{0, 0}}
	}
	var out []portBlock
	s, e := uint32(start), uint32(end)
	for s <= e {
		size := uint32(1)
		for s%(size*2) == 0 && s+size*2-1 <= e && size < 1<<16 {
			size *= 2
		}
		out = append(out, portBlock{uint16(s), uint16(^(size - 1))})
		s += size
	}
	return out
}

type tsPart struct {
	prefix netip.Prefix
	ports  portBlock
	proto  uint8
}

func expand(ts dp.TrafficSelector) []tsPart {
	var out []tsPart
	// Ports only exist for TCP, UDP, SCTP and friends; a selector with
	// "any protocol" cannot constrain them in XFRM.
	for _, p := range rangeToPrefixes(ts.Start, ts.End) {
		for _, pb := range rangeToPortBlocks(ts.StartPort, ts.EndPort) {
			out = append(out, tsPart{prefix: p, ports: pb, proto: ts.Proto})
		}
	}
	return out
}

func popcount16(v uint16) int {
	n := 0
	for ; v != 0; v &= v - 1 {
		n++
	}
	return n
}

// priority orders policies so that the most specific selector wins:
// XFRM prefers the lowest value.
func priority(s *selector) uint32 {
	spec := (s.src.Bits()+s.dst.Bits())*256 + (popcount16(s.sportMask)+popcount16(s.dportMask))*4
	if s.proto != 0 {
		spec++
	}
	return uint32(200000 - spec)
}

// policyMsgs expands a Child SA's selectors into kernel policies: for each
// local/remote pair an out policy and the matching in and fwd policies.
func policyMsgs(p *dp.Policies) ([]policyParams, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	var out []policyParams
	for _, l := range p.LocalTS {
		for _, r := range p.RemoteTS {
			if l.Start.Is4() != r.Start.Is4() {
				continue // a v4/v6 pair selects nothing
			}
			if l.Proto != r.Proto && l.Proto != 0 && r.Proto != 0 {
				continue
			}
			proto := max(l.Proto, r.Proto)
			if proto == 0 && (!anyPort(l) || !anyPort(r)) {
				return nil, fmt.Errorf("policies reqid %d: port ranges need a protocol", p.ReqID)
			}
			for _, lp := range expand(l) {
				for _, rp := range expand(r) {
					outSel := selector{src: lp.prefix, dst: rp.prefix, proto: proto,
						sport: lp.ports.value, sportMask: lp.ports.mask, dport: rp.ports.value, dportMask: rp.ports.mask}
					inSel := selector{src: rp.prefix, dst: lp.prefix, proto: proto,
						sport: rp.ports.value, sportMask: rp.ports.mask, dport: lp.ports.value, dportMask: lp.ports.mask}
					prio := priority(&outSel)
					out = append(out,
						policyParams{sel: outSel, dir: policyOut, priority: prio, tmplSrc: p.Local, tmplDst: p.Remote, reqid: p.ReqID},
						policyParams{sel: inSel, dir: policyIn, priority: prio, tmplSrc: p.Remote, tmplDst: p.Local, reqid: p.ReqID},
						policyParams{sel: inSel, dir: policyFwd, priority: prio, tmplSrc: p.Remote, tmplDst: p.Local, reqid: p.ReqID},
					)
					if len(out) > maxPolicies {
						return nil, fmt.Errorf("policies reqid %d: selectors expand to more than %d kernel policies", p.ReqID, maxPolicies)
					}
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("policies reqid %d: no local/remote selector pair of the same family and protocol", p.ReqID)
	}
	return out, nil
}

func anyPort(ts dp.TrafficSelector) bool { return ts.StartPort == 0 && ts.EndPort == 0xffff }

// bypassPriority puts the IKE bypass policies ahead of every Child SA
// policy, whose priorities lie above 200000-256*256-8*4-1.
const bypassPriority = 1000

// bypassMsgs returns, for each UDP port and address family, an out policy
// for traffic from the port and an in policy for traffic to it, both
// without a template.
func bypassMsgs(ports []uint16) []policyParams {
	const udp = 17
	var out []policyParams
	for _, all := range []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")} {
		for _, port := range ports {
			out = append(out,
				policyParams{sel: selector{src: all, dst: all, proto: udp, sport: port, sportMask: 0xffff}, dir: policyOut, priority: bypassPriority, bypass: true},
				policyParams{sel: selector{src: all, dst: all, proto: udp, dport: port, dportMask: 0xffff}, dir: policyIn, priority: bypassPriority, bypass: true})
		}
	}
	return out
}
