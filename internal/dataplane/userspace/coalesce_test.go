package userspace

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// tcpSeg builds an IPv4 TCP segment with a timestamp option, the given
// sequence number, flags and payload.
func tcpSeg(src string, sport uint16, seq uint32, flags byte, payload []byte) []byte {
	p := ipv4(src, "10.0.2.1", protoTCP, sport, 80, nil)[:20]
	tcp := make([]byte, 32)
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], 80)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	binary.BigEndian.PutUint32(tcp[8:], 1234)
	tcp[12], tcp[13] = 8<<4, flags
	binary.BigEndian.PutUint16(tcp[14:], 500)
	copy(tcp[20:], []byte{1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 7})
	p = append(append(p, tcp...), payload...)
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	binary.BigEndian.PutUint16(p[10:], ^fold(sum(0, p[:20])))
	return p
}

func TestCoalescer(t *testing.T) {
	var writes [][]byte
	c := newCoalescer(func(b []byte) error {
		writes = append(writes, append([]byte(nil), b...))
		return nil
	}, func(int) { t.Error("write failure reported") })
	add := func(p []byte) bool {
		f, n, ok := parseFlow(p)
		if !ok || n != len(p) {
			t.Fatalf("test packet does not parse")
		}
		return c.add(p, &f)
	}
	payload := func(i, n int) []byte { return bytes.Repeat([]byte{byte(i)}, n) }

	// Three full segments and a short one with PSH coalesce into one.
	seq := uint32(0xfffffe00) // wraps inside the flow
	var want []byte
	for i, n := range []int{1000, 1000, 1000, 300} {
		fl := byte(0x10)
		if i == 3 {
			fl |= tcpFlagPSH
		}
		if !add(tcpSeg("10.0.1.1", 5000, seq, fl, payload(i, n))) {
			t.Fatalf("segment %d not held", i)
		}
		want = append(want, payload(i, n)...)
		seq += uint32(n)
	}
	// The flow is closed by PSH: the next segment flushes it and is held
	// on its own.
	if !add(tcpSeg("10.0.1.1", 5000, seq, 0x10, payload(9, 1000))) {
		t.Fatal("segment after PSH not held")
	}
	if len(writes) != 1 {
		t.Fatalf("%d writes after PSH, want 1", len(writes))
	}
	// A pure ACK of the same connection is not held and flushes first.
	if add(tcpSeg("10.0.1.1", 5000, seq+1000, 0x10, nil)) {
		t.Fatal("pure ACK held")
	}
	if len(writes) != 2 {
		t.Fatalf("%d writes after the ACK, want 2", len(writes))
	}
	// Another connection is held independently until EndBatch.
	if !add(tcpSeg("10.0.1.9", 6000, 1, 0x10, payload(1, 500))) {
		t.Fatal("second connection not held")
	}
	c.endBatch()
	if len(writes) != 3 {
		t.Fatalf("%d writes after endBatch, want 3", len(writes))
	}

	super := writes[0]
	h := decodeVnetHdr(super)
	pkt := super[vnetHdrLen:]
	if h.gsoType != vnetGSOTCPv4 || h.gsoSize != 1000 || h.csumStart != 20 || h.csumOffset != 16 ||
		h.hdrLen != 52 || h.flags != vnetFlagNeedsCsum {
		t.Errorf("virtio-net header %+v", h)
	}
	if int(binary.BigEndian.Uint16(pkt[2:])) != len(pkt) || len(pkt) != 52+3300 || naiveSum(pkt[:20]) != 0xffff {
		t.Errorf("IPv4 header: length %d of %d, checksum ok %v", binary.BigEndian.Uint16(pkt[2:]), len(pkt), naiveSum(pkt[:20]) == 0xffff)
	}
	if !bytes.Equal(pkt[52:], want) {
		t.Error("payload not the concatenation of the segments")
	}
	if binary.BigEndian.Uint32(pkt[24:]) != 0xfffffe00 || pkt[33] != 0x10|tcpFlagPSH {
		t.Errorf("TCP seq %x flags %x", binary.BigEndian.Uint32(pkt[24:]), pkt[33])
	}
	// CHECKSUM_PARTIAL: the field holds the pseudo-header sum.
	if got, want := binary.BigEndian.Uint16(pkt[36:]), naiveSum(pseudo(pkt, true, protoTCP, len(pkt)-20)); got != want {
		t.Errorf("partial checksum %04x, want %04x", got, want)
	}
	// Single segments go out untouched, flagged as verified.
	singles := [][]byte{tcpSeg("10.0.1.1", 5000, seq, 0x10, payload(9, 1000)), tcpSeg("10.0.1.9", 6000, 1, 0x10, payload(1, 500))}
	for i, w := range writes[1:] {
		if h := decodeVnetHdr(w); h.gsoType != vnetGSONone || h.flags != vnetFlagDataValid {
			t.Errorf("single segment %d: header %+v", i, h)
		}
		if !bytes.Equal(w[vnetHdrLen:], singles[i]) {
			t.Errorf("single segment %d modified", i)
		}
	}
}

func TestCoalescerRefusesMismatches(t *testing.T) {
	n := 0
	c := newCoalescer(func([]byte) error { n++; return nil }, func(int) {})
	add := func(p []byte) bool {
		f, _, _ := parseFlow(p)
		return c.add(p, &f)
	}
	base := tcpSeg("10.0.1.1", 5000, 100, 0x10, make([]byte, 1000))
	for name, next := range map[string][]byte{
		"gap":           tcpSeg("10.0.1.1", 5000, 1200, 0x10, make([]byte, 1000)),
		"larger":        tcpSeg("10.0.1.1", 5000, 1100, 0x10, make([]byte, 1001)),
		"other options": func() []byte { p := tcpSeg("10.0.1.1", 5000, 1100, 0x10, make([]byte, 1000)); p[20+31] = 1; return p }(),
		"other ack":     func() []byte { p := tcpSeg("10.0.1.1", 5000, 1100, 0x10, make([]byte, 1000)); p[20+11] = 1; return p }(),
		"other ttl":     func() []byte { p := tcpSeg("10.0.1.1", 5000, 1100, 0x10, make([]byte, 1000)); p[8] = 1; return p }(),
	} {
		n = 0
		add(base)
		add(next)
		c.endBatch()
		if n != 2 {
			t.Errorf("%s: %d writes, want 2 (no coalescing)", name, n)
		}
	}
	if add(ipv4("10.0.1.1", "10.0.2.1", protoUDP, 1, 2, []byte("x"))) {
		t.Error("UDP held")
	}
}

// FuzzCoalescer feeds mutated segments of one connection: nothing may
// panic, and every packet the coalescer writes must parse as IP.
func FuzzCoalescer(f *testing.F) {
	f.Add(tcpSeg("10.0.1.1", 5000, 1, 0x10, make([]byte, 100)), uint16(100), byte(0x10))
	f.Add(tcpSeg("10.0.1.1", 5000, 1, 0x18, nil), uint16(0), byte(0x11))
	f.Fuzz(func(t *testing.T, first []byte, step uint16, flags byte) {
		c := newCoalescer(func(b []byte) error {
			if _, _, ok := parseFlow(b[vnetHdrLen:]); !ok {
				t.Fatalf("wrote a packet that does not parse: % x", b)
			}
			return nil
		}, func(int) {})
		f0, n, ok := parseFlow(first)
		if !ok {
			return
		}
		first = first[:n]
		c.add(first, &f0)
		next := append([]byte(nil), first...)
		if len(next) >= 40 {
			binary.BigEndian.PutUint32(next[24:], binary.BigEndian.Uint32(next[24:])+uint32(step))
			next[33] = flags
		}
		if f1, _, ok := parseFlow(next); ok {
			c.add(next, &f1)
		}
		c.endBatch()
	})
}
