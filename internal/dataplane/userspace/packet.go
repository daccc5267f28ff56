package userspace

import (
	"encoding/binary"
	"net/netip"
)

// IP protocol numbers the selector code looks into.
const (
	protoICMP     = 1
	protoTCP      = 6
	protoUDP      = 17
	protoDCCP     = 33
	protoIPv6Frag = 44
	protoAH       = 51
	protoICMPv6   = 58
	protoSCTP     = 132
	protoUDPLite  = 136

	nextHeaderIPv4 = 4  // IP-in-IP: ESP Next Header of a tunnelled IPv4 packet
	nextHeaderIPv6 = 41 // ESP Next Header of a tunnelled IPv6 packet
)

// flow is what the selectors look at in an inner packet (RFC 4301 §4.4.1.1).
type flow struct {
	src, dst netip.Addr
	proto    uint8
	// sport and dport are the transport ports, or for ICMP and ICMPv6 type
	// and code as one 16-bit number in both (RFC 7296 §3.13.1). When
	// portsKnown is false (non-initial fragments, protocols without ports,
	// truncated headers) the ports are OPAQUE and only selectors that allow
	// every port match.
	sport, dport uint16
	portsKnown   bool
}

// parseFlow reads the selector fields of an IPv4 or IPv6 packet and returns
// the packet's length according to its own header, which may be shorter
// than b (TFC padding after ESP decryption, RFC 4303 §2.7). ok is false for
// anything that is not a well-formed IP header.
func parseFlow(b []byte) (f flow, n int, ok bool) {
	if len(b) < 1 {
		return f, 0, false
	}
	var l4 []byte
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return f, 0, false
		}
		ihl := int(b[0]&0x0f) * 4
		n = int(binary.BigEndian.Uint16(b[2:4]))
		if ihl < 20 || n < ihl || n > len(b) {
			return f, 0, false
		}
		f.src = netip.AddrFrom4([4]byte(b[12:16]))
		f.dst = netip.AddrFrom4([4]byte(b[16:20]))
		f.proto = b[9]
		if binary.BigEndian.Uint16(b[6:8])&0x1fff == 0 {
			l4 = b[ihl:n]
		}
	case 6:
		if len(b) < 40 {
			return f, 0, false
		}
		n = 40 + int(binary.BigEndian.Uint16(b[4:6]))
		if n > len(b) {
			return f, 0, false
		}
		f.src = netip.AddrFrom16([16]byte(b[8:24]))
		f.dst = netip.AddrFrom16([16]byte(b[24:40]))
		nh, off := b[6], 40
		l4 = b[:0]
		// Walk the extension headers that may precede the transport header;
		// the bound keeps a crafted chain from costing more than a few steps.
	walk:
		for range 8 {
			switch nh {
			case 0, 43, 60: // hop-by-hop, routing, destination options
				if off+8 > n {
					l4 = nil
					break walk
				}
				nh, off = b[off], off+(int(b[off+1])+1)*8
			case protoIPv6Frag:
				if off+8 > n {
					l4 = nil
					break walk
				}
				if binary.BigEndian.Uint16(b[off+2:off+4])>>3 != 0 {
					nh, l4 = b[off], nil // not the first fragment: no ports
					break walk
				}
				nh, off = b[off], off+8
			case protoAH:
				if off+8 > n {
					l4 = nil
					break walk
				}
				nh, off = b[off], off+(int(b[off+1])+2)*4
			default:
				break walk
			}
		}
		f.proto = nh
		if l4 != nil && off <= n {
			l4 = b[off:n]
		} else {
			l4 = nil
		}
	default:
		return f, 0, false
	}
	switch f.proto {
	case protoTCP, protoUDP, protoSCTP, protoUDPLite, protoDCCP:
		if len(l4) >= 4 {
			f.sport = binary.BigEndian.Uint16(l4[0:2])
			f.dport = binary.BigEndian.Uint16(l4[2:4])
			f.portsKnown = true
		}
	case protoICMP, protoICMPv6:
		if len(l4) >= 2 {
			f.sport = binary.BigEndian.Uint16(l4[0:2])
			f.dport = f.sport
			f.portsKnown = true
		}
	}
	return f, n, true
}
