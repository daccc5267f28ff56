package userspace

import (
	"bytes"
	"encoding/binary"
	"sync"
)

// coalescer merges consecutive decrypted TCP segments of a flow into one
// super-packet that the TUN device takes with a single write (the receive
// half of the offloads in offload.go, what GRO does for a NIC). The
// kernel's TCP then handles 64 KiB at a time instead of one segment.
//
// A segment joins a held one only if nothing but the sequence number,
// length and checksums differs (same addresses, ports, IP TTL and TOS,
// acknowledgement, window, options, flags ACK or ACK|PSH), it continues
// the held sequence exactly, and it is not larger than the first segment.
// Anything else of the same flow first flushes what is held, so a flow's
// packets never overtake each other.
type coalescer struct {
	mu    sync.Mutex
	flows [coalesceFlows]heldFlow
	write func(b []byte) error
	fail  func(segments int)
}

const coalesceFlows = 8

type heldFlow struct {
	buf     []byte // virtio-net header, then the packet being built
	n       int    // packet length
	v4      bool
	ipLen   int
	hdrLen  int
	mss     int
	nextSeq uint32
	segs    int
	closed  bool // a short or PSH segment ended it: no more appends
}

func newCoalescer(write func([]byte) error, fail func(int)) *coalescer {
	c := &coalescer{write: write, fail: fail}
	for i := range c.flows {
		c.flows[i].buf = make([]byte, vnetHdrLen+maxInner)
	}
	return c
}

// tcpSegment reports where the headers of a coalescable TCP segment end:
// plain IPv4 without options or fragmentation, or IPv6 with TCP directly
// after the fixed header, flags ACK or ACK|PSH, and some payload.
func tcpSegment(pkt []byte, f *flow) (ipLen, hdrLen int, ok bool) {
	if f.proto != protoTCP || !f.portsKnown {
		return 0, 0, false
	}
	if f.dst.Is4() {
		if pkt[0] != 0x45 || binary.BigEndian.Uint16(pkt[6:8])&0x3fff != 0 {
			return 0, 0, false
		}
		ipLen = 20
	} else {
		if pkt[6] != protoTCP {
			return 0, 0, false
		}
		ipLen = 40
	}
	if len(pkt) < ipLen+20 {
		return 0, 0, false
	}
	hdrLen = ipLen + int(pkt[ipLen+12]>>4)*4
	if hdrLen < ipLen+20 || hdrLen >= len(pkt) {
		return 0, 0, false
	}
	if fl := pkt[ipLen+13]; fl != 0x10 && fl != 0x10|tcpFlagPSH {
		return 0, 0, false
	}
	return ipLen, hdrLen, true
}

// sameFlow reports whether pkt belongs to the held flow's connection.
func (h *heldFlow) sameFlow(pkt []byte, v4 bool) bool {
	held := h.buf[vnetHdrLen:]
	if h.v4 != v4 {
		return false
	}
	if v4 {
		return bytes.Equal(held[12:20], pkt[12:20]) && bytes.Equal(held[20:24], pkt[20:24])
	}
	return bytes.Equal(held[8:40], pkt[8:40]) && bytes.Equal(held[40:44], pkt[40:44])
}

// canAppend reports whether pkt continues the held packet.
func (h *heldFlow) canAppend(pkt []byte, ipLen, hdrLen int) bool {
	held := h.buf[vnetHdrLen:]
	payload := len(pkt) - hdrLen
	if h.closed || ipLen != h.ipLen || hdrLen != h.hdrLen || payload > h.mss || h.n+payload > maxInner {
		return false
	}
	if binary.BigEndian.Uint32(pkt[ipLen+4:]) != h.nextSeq {
		return false
	}
	if h.v4 {
		// TOS, DF, TTL and protocol must match.
		if held[1] != pkt[1] || held[6]&0x40 != pkt[6]&0x40 || held[8] != pkt[8] {
			return false
		}
	} else if !bytes.Equal(held[0:4], pkt[0:4]) || held[7] != pkt[7] {
		return false // traffic class, flow label, hop limit
	}
	// Acknowledgement, data offset, window (bytes 8-15 but the flags) and
	// options must match; the flags were checked to be ACK or ACK|PSH.
	th, tp := held[ipLen:], pkt[ipLen:]
	return bytes.Equal(th[8:13], tp[8:13]) && bytes.Equal(th[14:16], tp[14:16]) &&
		bytes.Equal(th[20:hdrLen-ipLen], tp[20:hdrLen-ipLen])
}

// add takes a decrypted packet that passed the policy check. It returns
// false if the packet is not held, in which case the caller writes it
// itself (after add has flushed whatever of its flow was held).
func (c *coalescer) add(pkt []byte, f *flow) bool {
	ipLen, hdrLen, ok := tcpSegment(pkt, f)
	v4 := f.dst.Is4()
	c.mu.Lock()
	defer c.mu.Unlock()
	free := -1
	for i := range c.flows {
		h := &c.flows[i]
		if h.segs == 0 {
			if free < 0 {
				free = i
			}
			continue
		}
		if !h.sameFlow(pkt, v4) {
			continue
		}
		if ok && h.canAppend(pkt, ipLen, hdrLen) {
			payload := pkt[hdrLen:]
			copy(h.buf[vnetHdrLen+h.n:], payload)
			h.n += len(payload)
			h.nextSeq += uint32(len(payload))
			h.segs++
			if fl := pkt[ipLen+13]; fl&tcpFlagPSH != 0 || len(payload) < h.mss {
				h.buf[vnetHdrLen+ipLen+13] |= fl & tcpFlagPSH
				h.closed = true
			}
			return true
		}
		c.flush(h)
		free = i
		break
	}
	if !ok {
		return false
	}
	if free < 0 {
		c.flushAll()
		free = 0
	}
	h := &c.flows[free]
	copy(h.buf[vnetHdrLen:], pkt)
	*h = heldFlow{buf: h.buf, n: len(pkt), v4: v4, ipLen: ipLen, hdrLen: hdrLen, mss: len(pkt) - hdrLen,
		nextSeq: binary.BigEndian.Uint32(pkt[ipLen+4:]) + uint32(len(pkt)-hdrLen), segs: 1,
		closed: pkt[ipLen+13]&tcpFlagPSH != 0}
	return true
}

// endBatch writes everything held.
func (c *coalescer) endBatch() {
	c.mu.Lock()
	c.flushAll()
	c.mu.Unlock()
}

func (c *coalescer) flushAll() {
	for i := range c.flows {
		if c.flows[i].segs > 0 {
			c.flush(&c.flows[i])
		}
	}
}

func (c *coalescer) flush(h *heldFlow) {
	b := h.buf[:vnetHdrLen+h.n]
	pkt := b[vnetHdrLen:]
	clear(b[:vnetHdrLen])
	if h.segs == 1 {
		b[0] = vnetFlagDataValid // untouched, and authenticated by ESP
	} else {
		if h.v4 {
			binary.BigEndian.PutUint16(pkt[2:], uint16(h.n))
			pkt[10], pkt[11] = 0, 0
			binary.BigEndian.PutUint16(pkt[10:], ^fold(sum(0, pkt[:20])))
			b[1] = vnetGSOTCPv4
		} else {
			binary.BigEndian.PutUint16(pkt[4:], uint16(h.n-40))
			b[1] = vnetGSOTCPv6
		}
		// A GSO packet carries a partial checksum: the pseudo-header sum,
		// which the kernel's segmentation completes if it ever has to.
		tcpLen := h.n - h.ipLen
		binary.BigEndian.PutUint16(pkt[h.ipLen+16:], fold(pseudoSum(pkt, h.v4, protoTCP, tcpLen)))
		b[0] = vnetFlagNeedsCsum
		binary.NativeEndian.PutUint16(b[2:], uint16(h.hdrLen))
		binary.NativeEndian.PutUint16(b[4:], uint16(h.mss))
		binary.NativeEndian.PutUint16(b[6:], uint16(h.ipLen))
		binary.NativeEndian.PutUint16(b[8:], 16)
	}
	if err := c.write(b); err != nil {
		c.fail(h.segs)
	}
	h.segs = 0
}
