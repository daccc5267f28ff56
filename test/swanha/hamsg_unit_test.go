package swanha

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"
)

// midFrame builds, byte by byte from strongSwan 5.9.8's ha_message.c
// layout (not from the decoder), an Ethernet frame carrying an
// IKE_MID_RESPONDER update from 10.98.0.2 to 10.98.0.1.
func midFrame(spii, spir uint64, mid uint32) []byte {
	pl := []byte{3, 4, // version 3, IKE_MID_RESPONDER
		1, 2} // HA_IKE_ID, IKE version 2
	pl = binary.BigEndian.AppendUint64(pl, spii)
	pl = binary.BigEndian.AppendUint64(pl, spir)
	pl = append(pl, 0, 33) // responder; HA_MID
	pl = binary.BigEndian.AppendUint32(pl, mid)
	f := make([]byte, 14, 14+20+8+len(pl))
	f[12], f[13] = 0x08, 0x00
	ip := []byte{0x45, 0, 0, byte(20 + 8 + len(pl)), 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 98, 0, 2, 10, 98, 0, 1}
	udp := []byte{0x11, 0x9e, 0x11, 0x9e, 0, byte(8 + len(pl)), 0, 0} // 4510 -> 4510
	return append(append(append(f, ip...), udp...), pl...)
}

func pcapFile(frames ...[]byte) []byte {
	var b bytes.Buffer
	h := make([]byte, 24)
	binary.LittleEndian.PutUint32(h[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(h[4:], 2)
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], 68)
	binary.LittleEndian.PutUint32(h[20:], 1)
	b.Write(h)
	for i, f := range frames {
		r := make([]byte, 16)
		binary.LittleEndian.PutUint32(r[0:], uint32(1700000000+i))
		binary.LittleEndian.PutUint32(r[4:], 250000)
		binary.LittleEndian.PutUint32(r[8:], uint32(len(f)))
		binary.LittleEndian.PutUint32(r[12:], uint32(len(f)))
		b.Write(r)
		b.Write(f)
	}
	return b.Bytes()
}

// The capture decoder must find the message-ID update the derivation in
// hamsg_test.go describes: 26 bytes of payload in a 54-byte IP packet
// and a 68-byte frame, and tell its direction from the source address.
func TestReadPcapMIDUpdate(t *testing.T) {
	f := midFrame(0x0102030405060708, 0x1112131415161718, 7)
	if len(f) != 68 {
		t.Fatalf("frame of %d bytes, the derivation says 68", len(f))
	}
	pkts, err := readPcap(bytes.NewReader(pcapFile(f, f[:60])), [4]byte{10, 98, 0, 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(pkts) != 2 {
		t.Fatalf("%d packets, want 2", len(pkts))
	}
	p := pkts[0]
	if !p.Out || p.Type != haIKEMIDResponder || p.IPLen != 54 || p.PayloadLen != 26 || p.SPIi != 0x0102030405060708 || p.MID != 7 {
		t.Fatalf("decoded %+v", p)
	}
	if !p.At.Equal(time.Unix(1700000000, 250000000)) {
		t.Fatalf("time %v", p.At)
	}
	// Cut at the snap length: the size comes from the headers, the ID is
	// not guessed.
	if q := pkts[1]; q.IPLen != 54 || q.PayloadLen != 26 || q.Type != haIKEMIDResponder || q.MID != 0 {
		t.Fatalf("cut frame decoded %+v", q)
	}
	in, err := readPcap(bytes.NewReader(pcapFile(f)), [4]byte{10, 98, 0, 1})
	if err != nil || len(in) != 1 || in[0].Out {
		t.Fatalf("seen from the receiver: %+v, %v", in, err)
	}
}

func TestParseMIDRejects(t *testing.T) {
	f := midFrame(1, 2, 3)
	pl := f[42:]
	if _, _, err := parseMID(pl[:25]); err == nil {
		t.Error("short update accepted")
	}
	bad := append([]byte(nil), pl...)
	bad[0] = 2
	if _, _, err := parseMID(bad); err == nil {
		t.Error("version 2 accepted")
	}
	bad = append([]byte(nil), pl...)
	bad[21] = 32
	if _, _, err := parseMID(bad); err == nil {
		t.Error("wrong attribute accepted")
	}
	if _, err := readPcap(bytes.NewReader([]byte("not a capture at all, not at all")), [4]byte{}); err == nil {
		t.Error("garbage accepted as pcap")
	}
}

// The decoder reads captures of a link anything may write to: no panic
// on any input.
func FuzzReadPcap(f *testing.F) {
	m := midFrame(1, 2, 3)
	f.Add(pcapFile(m))
	f.Add(pcapFile(m[:30], m[:50]))
	f.Add([]byte{0xd4, 0xc3, 0xb2, 0xa1})
	f.Fuzz(func(t *testing.T, b []byte) {
		readPcap(bytes.NewReader(b), [4]byte{10, 98, 0, 2})
	})
}
