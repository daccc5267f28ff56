package userspace

import (
	"cmp"
	"math/bits"
	"net/netip"
	"slices"

	"github.com/hike-vpn/hike/internal/dataplane"
)

// u128 is an address as a number, so that ranges can be compared and split
// into prefixes with plain arithmetic. IPv4 addresses use the low 32 bits.
type u128 struct{ hi, lo uint64 }

func u128From(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{lo: uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])}
	}
	b := a.As16()
	var u u128
	for i := range 8 {
		u.hi = u.hi<<8 | uint64(b[i])
		u.lo = u.lo<<8 | uint64(b[8+i])
	}
	return u
}

func (u u128) addr(v4 bool) netip.Addr {
	if v4 {
		l := uint32(u.lo)
		return netip.AddrFrom4([4]byte{byte(l >> 24), byte(l >> 16), byte(l >> 8), byte(l)})
	}
	var b [16]byte
	for i := range 8 {
		b[7-i] = byte(u.hi >> (8 * i))
		b[15-i] = byte(u.lo >> (8 * i))
	}
	return netip.AddrFrom16(b)
}

func (u u128) cmp(v u128) int {
	if c := cmp.Compare(u.hi, v.hi); c != 0 {
		return c
	}
	return cmp.Compare(u.lo, v.lo)
}

func (u u128) add(v u128) (u128, bool) {
	lo, c := bits.Add64(u.lo, v.lo, 0)
	hi, c := bits.Add64(u.hi, v.hi, c)
	return u128{hi, lo}, c != 0
}

func (u u128) sub(v u128) u128 {
	lo, b := bits.Sub64(u.lo, v.lo, 0)
	hi, _ := bits.Sub64(u.hi, v.hi, b)
	return u128{hi, lo}
}

// pow2 is 2^k for k < 128.
func pow2(k int) u128 {
	if k >= 64 {
		return u128{hi: 1 << (k - 64)}
	}
	return u128{lo: 1 << k}
}

func (u u128) trailingZeros() int {
	if u.lo != 0 {
		return bits.TrailingZeros64(u.lo)
	}
	if u.hi != 0 {
		return 64 + bits.TrailingZeros64(u.hi)
	}
	return 128
}

// rangePrefixes splits the inclusive range [start, end] of one family into
// the smallest set of prefixes that covers exactly that range.
func rangePrefixes(start, end netip.Addr) []netip.Prefix {
	v4 := start.Is4()
	width := 128
	if v4 {
		width = 32
	}
	s, e := u128From(start), u128From(end)
	var out []netip.Prefix
	for s.cmp(e) <= 0 {
		// The largest block that starts at s and does not pass e.
		k := min(s.trailingZeros(), width)
		for k > 0 {
			last, _ := s.add(pow2(k).sub(u128{lo: 1}))
			if last.cmp(e) <= 0 {
				break
			}
			k--
		}
		out = append(out, netip.PrefixFrom(s.addr(v4), width-k))
		next, overflow := s.add(pow2(k))
		if overflow || (v4 && next.lo > 0xffffffff) || (k == width) {
			break
		}
		s = next
	}
	return out
}

// sel is a compiled traffic selector.
type sel struct {
	v4         bool
	start, end u128
	proto      uint8
	sport      uint16 // port range start
	eport      uint16 // port range end
	size       u128   // end - start: narrower selectors are more specific
}

func compileSel(ts dataplane.TrafficSelector) sel {
	s := sel{v4: ts.Start.Is4(), start: u128From(ts.Start), end: u128From(ts.End),
		proto: ts.Proto, sport: ts.StartPort, eport: ts.EndPort}
	s.size = s.end.sub(s.start)
	return s
}

func (s *sel) anyPort() bool { return s.sport == 0 && s.eport == 0xffff }

// matchProtoPort checks protocol and port; the address is checked by the
// caller (the lookup table has already matched it for remote selectors).
func (s *sel) matchProtoPort(f *flow, port uint16) bool {
	if s.proto != 0 && s.proto != f.proto {
		return false
	}
	if s.anyPort() {
		return true
	}
	return f.portsKnown && port >= s.sport && port <= s.eport
}

func (s *sel) match(a netip.Addr, f *flow, port uint16) bool {
	if s.v4 != a.Is4() {
		return false
	}
	u := u128From(a)
	return u.cmp(s.start) >= 0 && u.cmp(s.end) <= 0 && s.matchProtoPort(f, port)
}

// compare orders selectors for the outbound lookup: narrower address
// range first, then a named protocol before any, then a narrower port range.
func (s *sel) compare(t *sel) int {
	if c := s.size.cmp(t.size); c != 0 {
		return c
	}
	if (s.proto != 0) != (t.proto != 0) {
		if s.proto != 0 {
			return -1
		}
		return 1
	}
	return cmp.Compare(s.eport-s.sport, t.eport-t.sport)
}

// policy is one installed dataplane.Policies, compiled.
type policy struct {
	reqID         uint32
	outerLocal    netip.Addr
	outerRemote   netip.Addr
	local, remote []sel
	// minLocal is the size of the narrowest local selector, a tie-breaker
	// between policies with equally specific remote selectors.
	minLocal u128
	// srcHint, per family, is the local inner address routes use as
	// preferred source when the local side of that family is a single host
	// (a virtual IP on lo, say), so that locally originated traffic leaves
	// from an address the selectors cover.
	srcHint [2]netip.Addr
}

func compilePolicy(p *dataplane.Policies) *policy {
	pol := &policy{reqID: p.ReqID, outerLocal: p.Local, outerRemote: p.Remote,
		minLocal: u128{^uint64(0), ^uint64(0)}}
	for _, ts := range p.LocalTS {
		s := compileSel(ts)
		pol.local = append(pol.local, s)
		if s.size.cmp(pol.minLocal) < 0 {
			pol.minLocal = s.size
		}
	}
	for _, ts := range p.RemoteTS {
		pol.remote = append(pol.remote, compileSel(ts))
	}
	var perFam [2]int
	for _, ts := range p.LocalTS {
		perFam[famIndex(ts.Start)]++
	}
	for _, ts := range p.LocalTS {
		if i := famIndex(ts.Start); perFam[i] == 1 && ts.Start == ts.End {
			pol.srcHint[i] = ts.Start
		}
	}
	return pol
}

// matchOut reports whether an outbound packet matches on the local side
// (the remote side was matched through the table).
func (p *policy) matchLocal(f *flow) bool {
	for i := range p.local {
		if p.local[i].match(f.src, f, f.sport) {
			return true
		}
	}
	return false
}

// matchIn is the RFC 4301 §5.2 check of a decrypted inbound packet: its
// source must lie in a remote selector and its destination in a local one.
func (p *policy) matchIn(f *flow) bool {
	ok := false
	for i := range p.remote {
		if p.remote[i].match(f.src, f, f.sport) {
			ok = true
			break
		}
	}
	if !ok {
		return false
	}
	for i := range p.local {
		if p.local[i].match(f.dst, f, f.dport) {
			return true
		}
	}
	return false
}

// candidate is one remote selector of one policy, filed under a prefix of
// the selector's range.
type candidate struct {
	pol    *policy
	remote *sel
}

func (c candidate) compare(d candidate) int {
	if x := c.remote.compare(d.remote); x != 0 {
		return x
	}
	if x := c.pol.minLocal.cmp(d.pol.minLocal); x != 0 {
		return x
	}
	return cmp.Compare(c.pol.reqID, d.pol.reqID) // deterministic among equals
}

// selectorTable finds the outbound policy of a packet. Every remote
// selector range is split into prefixes; each prefix is a key of one hash
// map, and the table remembers which prefix lengths are in use. A lookup
// masks the destination with each length in use and checks the candidates
// filed under that prefix, which are kept sorted by specificity, so the
// first full match of each probe is that prefix's best; the most specific
// of those wins. A lookup costs one map probe per distinct prefix length: a
// concentrator whose thousands of clients each have a /32 or /128 virtual
// IP and which routes a handful of site prefixes has two or three lengths.
// Updates touch only the prefixes of the policy that changes.
type selectorTable struct {
	fam [2]famTable // IPv4, IPv6
}

type famTable struct {
	byPrefix map[pkey][]candidate
	lens     []int       // prefix lengths in use, longest first
	lenRefs  map[int]int // prefixes per length
}

// pkey is a prefix as a map key: plain integers hash faster than
// netip.Prefix, and masking them needs no conversion per packet.
type pkey struct {
	addr u128
	bits int
}

func pkeyOf(p netip.Prefix) pkey { return pkey{u128From(p.Addr()), p.Bits()} }

// mask clears the host bits of u, an address of width 32 or 128 bits.
func (u u128) mask(bits int, v4 bool) u128 {
	switch {
	case bits == 0:
		return u128{}
	case v4:
		return u128{lo: u.lo &^ (1<<(32-bits) - 1)}
	case bits <= 64:
		return u128{hi: u.hi &^ (1<<(64-bits) - 1)}
	default:
		return u128{u.hi, u.lo &^ (1<<(128-bits) - 1)}
	}
}

func famIndex(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

// add files pol under the prefixes of its remote selectors and returns the
// prefixes that were not in the table before (they need a route).
func (t *selectorTable) add(pol *policy) (added []netip.Prefix) {
	for i := range pol.remote {
		r := &pol.remote[i]
		v4 := r.v4
		ft := &t.fam[1]
		if v4 {
			ft = &t.fam[0]
		}
		if ft.byPrefix == nil {
			ft.byPrefix = make(map[pkey][]candidate)
			ft.lenRefs = make(map[int]int)
		}
		for _, pfx := range rangePrefixes(r.start.addr(v4), r.end.addr(v4)) {
			key := pkeyOf(pfx)
			cs, ok := ft.byPrefix[key]
			if !ok {
				added = append(added, pfx)
				if ft.lenRefs[pfx.Bits()] == 0 {
					ft.lens = append(ft.lens, pfx.Bits())
					slices.SortFunc(ft.lens, func(a, b int) int { return b - a })
				}
				ft.lenRefs[pfx.Bits()]++
			}
			c := candidate{pol: pol, remote: r}
			i, _ := slices.BinarySearchFunc(cs, c, candidate.compare)
			ft.byPrefix[key] = slices.Insert(cs, i, c)
		}
	}
	return added
}

// remove takes pol out of the table and returns the prefixes that no
// policy uses any more.
func (t *selectorTable) remove(pol *policy) (removed []netip.Prefix) {
	for i := range pol.remote {
		r := &pol.remote[i]
		ft := &t.fam[1]
		if r.v4 {
			ft = &t.fam[0]
		}
		for _, pfx := range rangePrefixes(r.start.addr(r.v4), r.end.addr(r.v4)) {
			key := pkeyOf(pfx)
			cs, ok := ft.byPrefix[key]
			if !ok {
				continue
			}
			cs = slices.DeleteFunc(cs, func(c candidate) bool { return c.pol == pol })
			if len(cs) > 0 {
				ft.byPrefix[key] = cs
				continue
			}
			delete(ft.byPrefix, key)
			removed = append(removed, pfx)
			if ft.lenRefs[pfx.Bits()]--; ft.lenRefs[pfx.Bits()] == 0 {
				delete(ft.lenRefs, pfx.Bits())
				ft.lens = slices.DeleteFunc(ft.lens, func(l int) bool { return l == pfx.Bits() })
			}
		}
	}
	return removed
}

// lookup returns the policy protecting an outbound packet, or nil.
func (t *selectorTable) lookup(f *flow) *policy {
	v4 := f.dst.Is4()
	ft := &t.fam[famIndex(f.dst)]
	dst := u128From(f.dst)
	var best candidate
	for _, l := range ft.lens {
		for _, c := range ft.byPrefix[pkey{dst.mask(l, v4), l}] {
			if c.remote.matchProtoPort(f, f.dport) && c.pol.matchLocal(f) {
				if best.pol == nil || c.compare(best) < 0 {
					best = c
				}
				break
			}
		}
	}
	return best.pol
}
