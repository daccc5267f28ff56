package userspace

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// naiveSum is RFC 1071 §4.1's reference loop over 16-bit words, kept
// deliberately different from the 64-bit sum under test.
func naiveSum(parts ...[]byte) uint16 {
	var all []byte
	for _, p := range parts {
		all = append(all, p...)
	}
	if len(all)%2 == 1 {
		all = append(all, 0)
	}
	var s uint32
	for i := 0; i < len(all); i += 2 {
		s += uint32(all[i])<<8 | uint32(all[i+1])
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// pseudo builds the pseudo-header bytes for naiveSum.
func pseudo(ip []byte, v4 bool, proto uint8, length int) []byte {
	var b []byte
	if v4 {
		b = append(b, ip[12:20]...)
		b = append(b, 0, proto)
		return binary.BigEndian.AppendUint16(b, uint16(length))
	}
	b = append(b, ip[8:40]...)
	b = binary.BigEndian.AppendUint32(b, uint32(length))
	return append(b, 0, 0, 0, proto)
}

func TestChecksumKnownAnswer(t *testing.T) {
	// RFC 1071 §3 example: the words 0001 f203 f4f5 f6f7 sum to ddf2.
	if got := fold(sum(0, []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7})); got != 0xddf2 {
		t.Errorf("RFC 1071 example: %04x, want ddf2", got)
	}
	r := rand.New(rand.NewPCG(5, 6))
	for n := range 200 {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		if n%7 == 0 {
			for i := range b {
				b[i] = 0xff // carries everywhere
			}
		}
		if got, want := fold(sum(0, b)), naiveSum(b); got != want && !(got == 0xffff && want == 0) && !(got == 0 && want == 0xffff) {
			t.Fatalf("%d octets: %04x, want %04x", n, got, want)
		}
	}
}

// superPacket builds a TCP packet with hdrLen octets of headers (20 of
// them TCP with 12 of options for IPv4) and the given payload, as the
// kernel hands it over with TSO.
func superPacket(v4 bool, payload []byte, flags byte) []byte {
	tcp := make([]byte, 32)
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 5201)
	binary.BigEndian.PutUint32(tcp[4:], 0xfffff000) // the sequence number wraps
	binary.BigEndian.PutUint32(tcp[8:], 77)
	tcp[12] = 8 << 4
	tcp[13] = flags
	copy(tcp[20:], []byte{1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8}) // NOP NOP timestamps
	var ip []byte
	if v4 {
		ip = make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[4:], 0xfffe) // the IP ID wraps
		ip[6] = 0x40                               // DF
		ip[8], ip[9] = 64, protoTCP
		copy(ip[12:], []byte{10, 0, 1, 1, 10, 0, 2, 1})
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(tcp)+len(payload)))
	} else {
		ip = make([]byte, 40)
		ip[0] = 0x60
		ip[6], ip[7] = protoTCP, 64
		ip[8], ip[23] = 0xfd, 1
		ip[24], ip[39] = 0xfd, 2
		binary.BigEndian.PutUint16(ip[4:], uint16(len(tcp)+len(payload)))
	}
	return append(append(ip, tcp...), payload...)
}

func TestSegmenter(t *testing.T) {
	for _, v4 := range []bool{true, false} {
		payload := make([]byte, 5000)
		for i := range payload {
			payload[i] = byte(i * 7)
		}
		flags := byte(tcpFlagPSH | tcpFlagFIN | tcpFlagCWR | 0x10) // ACK too
		pkt := superPacket(v4, payload, flags)
		ipLen := 40
		h := vnetHdr{gsoType: vnetGSOTCPv6, gsoSize: 1400, csumStart: 40, csumOffset: 16, flags: vnetFlagNeedsCsum}
		if v4 {
			ipLen = 20
			h.gsoType, h.csumStart = vnetGSOTCPv4, 20
		}
		var s segmenter
		if !s.start(pkt, h) {
			t.Fatal("start refused a valid TSO packet")
		}
		var got []byte
		var segs [][]byte
		for !s.done() {
			buf := make([]byte, 2000)
			n := s.cut(buf)
			if n == 0 {
				t.Fatal("cut produced nothing")
			}
			segs = append(segs, buf[:n])
		}
		// 5000 octets at 1400 per segment: 1400, 1400, 1400, 800.
		if len(segs) != 4 {
			t.Fatalf("v4=%v: %d segments, want 4", v4, len(segs))
		}
		for i, seg := range segs {
			f, n, ok := parseFlow(seg)
			if !ok || n != len(seg) || f.sport != 40000 || f.dport != 5201 {
				t.Fatalf("segment %d does not parse as the flow: %+v ok=%v", i, f, ok)
			}
			tcp := seg[ipLen:]
			if v4 {
				if naiveSum(seg[:20]) != 0xffff {
					t.Errorf("segment %d: IPv4 header checksum wrong", i)
				}
				if id := binary.BigEndian.Uint16(seg[4:]); id != 0xfffe+uint16(i) {
					t.Errorf("segment %d: IP ID %x", i, id)
				}
			}
			if naiveSum(pseudo(seg, v4, protoTCP, len(tcp)), tcp) != 0xffff {
				t.Errorf("v4=%v segment %d: TCP checksum wrong", v4, i)
			}
			if seq := binary.BigEndian.Uint32(tcp[4:]); seq != 0xfffff000+uint32(1400*i) {
				t.Errorf("segment %d: seq %x", i, seq)
			}
			wantFlags := byte(0x10)
			if i == 0 {
				wantFlags |= tcpFlagCWR
			}
			if i == len(segs)-1 {
				wantFlags |= tcpFlagPSH | tcpFlagFIN
			}
			if tcp[13] != wantFlags {
				t.Errorf("segment %d: flags %02x, want %02x", i, tcp[13], wantFlags)
			}
			if !bytes.Equal(tcp[20:32], pkt[ipLen+20:ipLen+32]) {
				t.Errorf("segment %d: TCP options changed", i)
			}
			got = append(got, tcp[32:]...)
		}
		if !bytes.Equal(got, payload) {
			t.Errorf("v4=%v: segments do not reassemble to the payload", v4)
		}
	}
}

func TestSegmenterRejects(t *testing.T) {
	good := superPacket(true, make([]byte, 3000), 0x10)
	h := vnetHdr{gsoType: vnetGSOTCPv4, gsoSize: 1000, csumStart: 20, csumOffset: 16}
	var s segmenter
	for name, c := range map[string]struct {
		pkt []byte
		h   vnetHdr
	}{
		"zero mss":      {good, vnetHdr{gsoType: vnetGSOTCPv4, csumStart: 20}},
		"udp gso":       {good, vnetHdr{gsoType: 3, gsoSize: 1000, csumStart: 20}},
		"v6 type on v4": {good, vnetHdr{gsoType: vnetGSOTCPv6, gsoSize: 1000, csumStart: 20}},
		"short":         {good[:30], h},
		"empty":         {nil, h},
		"bad offset":    {good, vnetHdr{gsoType: vnetGSOTCPv4, gsoSize: 1000, csumStart: 10}},
	} {
		if s.start(c.pkt, c.h) {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestFinishChecksum(t *testing.T) {
	pkt := ipv4("10.0.0.1", "10.0.0.2", protoUDP, 1000, 53, []byte("query data"))
	udp := pkt[20:]
	// The kernel leaves the pseudo-header sum in the field (CHECKSUM_PARTIAL).
	binary.BigEndian.PutUint16(udp[6:], fold(pseudoSum(pkt, true, protoUDP, len(udp))))
	if !finishChecksum(pkt, vnetHdr{csumStart: 20, csumOffset: 6}) {
		t.Fatal("refused")
	}
	if naiveSum(pseudo(pkt, true, protoUDP, len(udp)), udp) != 0xffff {
		t.Error("UDP checksum does not verify")
	}
	if finishChecksum(pkt, vnetHdr{csumStart: 20, csumOffset: 100}) {
		t.Error("field beyond the packet accepted")
	}
}

func FuzzSegmenter(f *testing.F) {
	f.Add(superPacket(true, make([]byte, 3000), 0x18), uint16(1000), uint16(20), uint8(vnetGSOTCPv4))
	f.Add(superPacket(false, make([]byte, 100), 0x18), uint16(10), uint16(40), uint8(vnetGSOTCPv6))
	f.Fuzz(func(t *testing.T, pkt []byte, mss, csumStart uint16, typ uint8) {
		var s segmenter
		if !s.start(pkt, vnetHdr{gsoType: typ, gsoSize: mss, csumStart: csumStart}) {
			return
		}
		buf := make([]byte, maxInner+tailroom)
		for i := 0; !s.done(); i++ {
			if i > len(pkt)+1 {
				t.Fatal("segmenter does not terminate")
			}
			if s.cut(buf) == 0 {
				t.Fatal("a segment did not fit a maximum-size buffer")
			}
		}
	})
}
