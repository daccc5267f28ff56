package wire

import (
	"encoding/binary"
	"net/netip"
)

// TrafficSelector is one selector of a TSi or TSr payload (RFC 7296
// §3.13.1). For the address-range types hike knows, Start and End are the
// range's bounds. A selector of another type (for example TS_SECLABEL, RFC
// 9478) keeps its type and, in Data, the octets after the type and length;
// RFC 7296 leaves such a selector to narrowing, not to the parser.
type TrafficSelector struct {
	Type               TSType
	Protocol           uint8 // IP protocol, 0 for any
	StartPort, EndPort uint16
	Start, End         netip.Addr
	Data               []byte // only for unknown types; aliases the parsed buffer
}

const (
	tsHeaderLen    = 4 // Number of TSs and three reserved octets
	selectorHdrLen = 4 // TS Type, IP Protocol ID, Selector Length
	tsIPv4Len      = 16
	tsIPv6Len      = 40
)

// ParseTS decodes a TSi or TSr payload body (p names which) and appends its
// selectors to dst. There must be at least one selector, as many as the
// Number of TSs field says, filling the payload exactly.
func ParseTS(dst []TrafficSelector, p PayloadType, body []byte) ([]TrafficSelector, error) {
	if len(body) < tsHeaderLen {
		return dst, errSyntax(p, "truncated traffic selectors")
	}
	count := int(body[0])
	if count == 0 {
		return dst, errSyntax(p, "no traffic selectors")
	}
	b := body[tsHeaderLen:]
	for i := 0; i < count; i++ {
		if len(b) < selectorHdrLen {
			return dst, errSyntax(p, "truncated traffic selector")
		}
		ts := TrafficSelector{Type: TSType(b[0]), Protocol: b[1]}
		n := int(binary.BigEndian.Uint16(b[2:4]))
		if n < selectorHdrLen || n > len(b) {
			return dst, errSyntax(p, "selector length out of bounds")
		}
		switch ts.Type {
		case TS_IPV4_ADDR_RANGE:
			if n != tsIPv4Len {
				return dst, errSyntax(p, "IPv4 selector length not 16")
			}
			ts.Start = netip.AddrFrom4([4]byte(b[8:12]))
			ts.End = netip.AddrFrom4([4]byte(b[12:16]))
		case TS_IPV6_ADDR_RANGE:
			if n != tsIPv6Len {
				return dst, errSyntax(p, "IPv6 selector length not 40")
			}
			ts.Start = netip.AddrFrom16([16]byte(b[8:24]))
			ts.End = netip.AddrFrom16([16]byte(b[24:40]))
		default:
			ts.Data = b[selectorHdrLen:n:n]
		}
		if ts.Data == nil {
			ts.StartPort = binary.BigEndian.Uint16(b[4:6])
			ts.EndPort = binary.BigEndian.Uint16(b[6:8])
		}
		dst = append(dst, ts)
		b = b[n:]
	}
	if len(b) != 0 {
		return dst, errSyntax(p, "selector count disagrees with length")
	}
	return dst, nil
}

// AppendTS appends a TSi or TSr payload body holding ts to b. At most 255
// selectors fit the count octet. Addresses of the wrong family for the
// selector type are encoded as the unspecified address of the right one.
func AppendTS(b []byte, ts []TrafficSelector) []byte {
	b = append(b, byte(len(ts)), 0, 0, 0)
	for i := range ts {
		s := &ts[i]
		switch s.Type {
		case TS_IPV4_ADDR_RANGE:
			b = append(b, byte(s.Type), s.Protocol, 0, tsIPv4Len,
				byte(s.StartPort>>8), byte(s.StartPort), byte(s.EndPort>>8), byte(s.EndPort))
			st, en := as4(s.Start), as4(s.End)
			b = append(append(b, st[:]...), en[:]...)
		case TS_IPV6_ADDR_RANGE:
			b = append(b, byte(s.Type), s.Protocol, 0, tsIPv6Len,
				byte(s.StartPort>>8), byte(s.StartPort), byte(s.EndPort>>8), byte(s.EndPort))
			st, en := as16(s.Start), as16(s.End)
			b = append(append(b, st[:]...), en[:]...)
		default:
			n := selectorHdrLen + len(s.Data)
			b = append(b, byte(s.Type), s.Protocol, byte(n>>8), byte(n))
			b = append(b, s.Data...)
		}
	}
	return b
}

// AddTS appends a TSi or TSr payload (t names which).
func (w *Builder) AddTS(t PayloadType, ts []TrafficSelector) {
	w.End(AppendTS(w.Start(t, false), ts))
}

// as4 and as16 are netip's As4 and As16 without the panic on the wrong
// family: an encoder must not crash on a caller's mistake either.
func as4(a netip.Addr) [4]byte {
	a = a.Unmap()
	if !a.Is4() {
		return [4]byte{}
	}
	return a.As4()
}

func as16(a netip.Addr) [16]byte {
	if !a.Is6() {
		return [16]byte{}
	}
	return a.As16()
}
