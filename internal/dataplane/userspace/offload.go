package userspace

import (
	"encoding/binary"
	"math/bits"
)

// TUN offloads. With IFF_VNET_HDR every packet on the device is preceded
// by a struct virtio_net_hdr, and with TUNSETOFFLOAD the kernel may hand
// over TCP packets of up to 64 KiB (TSO) whose checksum it left for us to
// finish. One read then carries what would otherwise be forty, and the
// sending TCP stack runs once per 64 KiB instead of once per segment. The
// backend cuts such a packet into MSS-sized segments before sealing each.
//
// Constants from linux/if_tun.h and linux/virtio_net.h.
const (
	tunFCSUM = 0x01
	tunFTSO4 = 0x02
	tunFTSO6 = 0x04

	vnetHdrLen        = 10
	vnetFlagNeedsCsum = 1
	vnetFlagDataValid = 2
	vnetGSONone       = 0
	vnetGSOTCPv4      = 1
	vnetGSOTCPv6      = 4
	vnetGSOECN        = 0x80
	tcpFlagFIN        = 0x01
	tcpFlagPSH        = 0x08
	tcpFlagCWR        = 0x80
)

// vnetHdr is struct virtio_net_hdr. The TUN driver uses the host's byte
// order for it unless told otherwise (TUNSETVNETLE/BE), as legacy virtio
// does.
type vnetHdr struct {
	flags      uint8
	gsoType    uint8
	hdrLen     uint16
	gsoSize    uint16
	csumStart  uint16
	csumOffset uint16
}

func decodeVnetHdr(b []byte) vnetHdr {
	return vnetHdr{
		flags:      b[0],
		gsoType:    b[1],
		hdrLen:     binary.NativeEndian.Uint16(b[2:4]),
		gsoSize:    binary.NativeEndian.Uint16(b[4:6]),
		csumStart:  binary.NativeEndian.Uint16(b[6:8]),
		csumOffset: binary.NativeEndian.Uint16(b[8:10]),
	}
}

// sum adds b to a ones'-complement accumulator, 8 octets at a time; fold
// reduces the result to 16 bits (RFC 1071 §2: the sum may be computed in
// wider words and folded at the end).
func sum(acc uint64, b []byte) uint64 {
	var carry uint64
	for len(b) >= 8 {
		acc, carry = bits.Add64(acc, binary.BigEndian.Uint64(b), carry)
		b = b[8:]
	}
	if len(b) >= 4 {
		acc, carry = bits.Add64(acc, uint64(binary.BigEndian.Uint32(b)), carry)
		b = b[4:]
	}
	if len(b) >= 2 {
		acc, carry = bits.Add64(acc, uint64(binary.BigEndian.Uint16(b)), carry)
		b = b[2:]
	}
	if len(b) == 1 {
		acc, carry = bits.Add64(acc, uint64(b[0])<<8, carry)
	}
	return addCarry(acc, carry)
}

// addCarry adds an end-around carry; when the carry wrapped acc to a small
// value, adding it cannot carry again.
func addCarry(acc, carry uint64) uint64 {
	acc, carry = bits.Add64(acc, carry, 0)
	return acc + carry
}

func add(acc, v uint64) uint64 {
	acc, carry := bits.Add64(acc, v, 0)
	return addCarry(acc, carry)
}

func fold(acc uint64) uint16 {
	acc = acc>>32 + acc&0xffffffff
	acc = acc>>32 + acc&0xffffffff
	acc = acc>>16 + acc&0xffff
	acc = acc>>16 + acc&0xffff
	return uint16(acc)
}

// pseudoSum is the sum of the TCP/UDP pseudo-header (RFC 9293 §3.1,
// RFC 8200 §8.1) of an IPv4 or IPv6 packet.
func pseudoSum(ip []byte, v4 bool, proto uint8, length int) uint64 {
	var acc uint64
	if v4 {
		acc = sum(0, ip[12:20])
	} else {
		acc = sum(0, ip[8:40])
	}
	return add(acc, uint64(proto)+uint64(length))
}

// finishChecksum completes a checksum the kernel left partial
// (VIRTIO_NET_HDR_F_NEEDS_CSUM): the field already holds the pseudo-header
// sum, and the rest is the sum from csumStart to the end.
func finishChecksum(pkt []byte, h vnetHdr) bool {
	start, field := int(h.csumStart), int(h.csumStart)+int(h.csumOffset)
	if start >= len(pkt) || field+2 > len(pkt) {
		return false
	}
	binary.BigEndian.PutUint16(pkt[field:], ^fold(sum(0, pkt[start:])))
	return true
}

// segmenter cuts a TSO packet into segments.
type segmenter struct {
	pkt     []byte // the whole super-packet: IP header, TCP header, payload
	v4      bool
	ipLen   int // IP header length (with IPv6 extension headers)
	hdrLen  int // IP and TCP headers
	mss     int
	next    int // payload offset of the next segment
	ipID    uint16
	seq     uint32
	flags   byte
	segment int
}

// start prepares to cut pkt; it reports false for anything it cannot cut.
func (s *segmenter) start(pkt []byte, h vnetHdr) bool {
	if len(pkt) < 1 {
		return false
	}
	*s = segmenter{pkt: pkt, mss: int(h.gsoSize), ipLen: int(h.csumStart)}
	switch h.gsoType &^ vnetGSOECN {
	case vnetGSOTCPv4:
		if pkt[0]>>4 != 4 || s.ipLen < 20 {
			return false
		}
		s.v4 = true
	case vnetGSOTCPv6:
		if pkt[0]>>4 != 6 || s.ipLen < 40 {
			return false
		}
	default:
		return false
	}
	if s.mss == 0 || s.ipLen+20 > len(pkt) {
		return false
	}
	s.hdrLen = s.ipLen + int(pkt[s.ipLen+12]>>4)*4
	if s.hdrLen < s.ipLen+20 || s.hdrLen > len(pkt) {
		return false
	}
	if s.v4 {
		s.ipID = binary.BigEndian.Uint16(pkt[4:6])
	}
	s.seq = binary.BigEndian.Uint32(pkt[s.ipLen+4:])
	s.flags = pkt[s.ipLen+13]
	return true
}

func (s *segmenter) done() bool { return s.next >= len(s.pkt)-s.hdrLen && s.segment > 0 }

// cut writes the next segment into dst and returns its length, or 0 if
// dst is too small.
func (s *segmenter) cut(dst []byte) int {
	payload := s.pkt[s.hdrLen:]
	n := min(s.mss, len(payload)-s.next)
	total := s.hdrLen + n
	if total > len(dst) {
		return 0
	}
	copy(dst, s.pkt[:s.hdrLen])
	copy(dst[s.hdrLen:], payload[s.next:s.next+n])
	last := s.next+n >= len(payload)
	seg := dst[:total]
	if s.v4 {
		binary.BigEndian.PutUint16(seg[2:], uint16(total))
		binary.BigEndian.PutUint16(seg[4:], s.ipID+uint16(s.segment))
		seg[10], seg[11] = 0, 0
		binary.BigEndian.PutUint16(seg[10:], ^fold(sum(0, seg[:s.ipLen])))
	} else {
		binary.BigEndian.PutUint16(seg[4:], uint16(total-40))
	}
	tcp := seg[s.ipLen:]
	binary.BigEndian.PutUint32(tcp[4:], s.seq+uint32(s.next))
	f := s.flags
	if !last {
		f &^= tcpFlagFIN | tcpFlagPSH
	}
	if s.segment > 0 {
		f &^= tcpFlagCWR
	}
	tcp[13] = f
	tcp[16], tcp[17] = 0, 0
	binary.BigEndian.PutUint16(tcp[16:], ^fold(sum(pseudoSum(seg, s.v4, protoTCP, len(tcp)), tcp)))
	s.next += n
	s.segment++
	return total
}
