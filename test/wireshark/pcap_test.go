package wireshark_test

import (
	"encoding/binary"
	"net/netip"
	"os"
	"time"
)

// pcapWriter writes a classic libpcap file with raw IP link type, which is
// all tshark needs to dissect hand-made IKE datagrams: no Ethernet header,
// no capture of a live interface.
type pcapWriter struct {
	f   *os.File
	t   time.Time
	err error
}

const linkTypeRaw = 101 // LINKTYPE_RAW: packets begin with an IPv4 or IPv6 header

func newPcap(path string) (*pcapWriter, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	var h [24]byte
	binary.LittleEndian.PutUint32(h[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(h[4:], 2)
	binary.LittleEndian.PutUint16(h[6:], 4)
	binary.LittleEndian.PutUint32(h[16:], 65535)
	binary.LittleEndian.PutUint32(h[20:], linkTypeRaw)
	_, err = f.Write(h[:])
	return &pcapWriter{f: f, t: time.Unix(1700000000, 0), err: err}, err
}

// udp writes one IPv4/UDP datagram carrying payload. Checksums are left
// zero: UDP over IPv4 allows it and tshark does not validate by default.
func (w *pcapWriter) udp(src, dst netip.AddrPort, payload []byte) {
	if w.err != nil {
		return
	}
	pkt := make([]byte, 28, 28+len(payload))
	pkt[0] = 0x45
	binary.BigEndian.PutUint16(pkt[2:], uint16(28+len(payload)))
	pkt[8] = 64
	pkt[9] = 17
	s, d := src.Addr().As4(), dst.Addr().As4()
	copy(pkt[12:], s[:])
	copy(pkt[16:], d[:])
	binary.BigEndian.PutUint16(pkt[10:], ipChecksum(pkt[:20]))
	binary.BigEndian.PutUint16(pkt[20:], src.Port())
	binary.BigEndian.PutUint16(pkt[22:], dst.Port())
	binary.BigEndian.PutUint16(pkt[24:], uint16(8+len(payload)))
	pkt = append(pkt, payload...)

	w.t = w.t.Add(time.Millisecond)
	var rec [16]byte
	binary.LittleEndian.PutUint32(rec[0:], uint32(w.t.Unix()))
	binary.LittleEndian.PutUint32(rec[4:], uint32(w.t.Nanosecond()/1000))
	binary.LittleEndian.PutUint32(rec[8:], uint32(len(pkt)))
	binary.LittleEndian.PutUint32(rec[12:], uint32(len(pkt)))
	if _, err := w.f.Write(rec[:]); err != nil {
		w.err = err
		return
	}
	_, w.err = w.f.Write(pkt)
}

func (w *pcapWriter) close() error {
	if err := w.f.Close(); w.err == nil {
		w.err = err
	}
	return w.err
}

func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
