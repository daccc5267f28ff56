// Package swanha measures what strongSwan's HA plugin sends between the
// two nodes of an HA pair while `hike load` clients set up IKE SAs and
// then probe them with DPD: the reference figure for hike's own cluster
// replication traffic (issue 6). The benchmark is TestBenchSwanHA; this
// file holds what it needs to read the capture of the sync link.
//
// The HA plugin's sync messages, as strongSwan 5.9.8 encodes them
// (src/libcharon/plugins/ha/ha_message.[ch], read for facts): one UDP
// datagram per message, port 4510 on both ends, in the clear unless
// charon.plugins.ha.secret is set (then inside an ESP transport SA). The
// payload is a version byte (3), a type byte and attributes, each a type
// byte followed by a fixed or self-delimiting value. A message-ID update
// (IKE_MID_RESPONDER when the node received a request, IKE_MID_INITIATOR
// when it sent one) carries the IKE SA's ID (version 1 byte, the two SPIs
// 8 bytes each, an initiator flag 1 byte: 18) and the next message ID
// (4 bytes):
//
//	2 + (1+18) + (1+4) = 26 bytes of UDP payload,
//	26 + 8 (UDP) + 20 (IPv4) = 54 bytes of IP packet,
//	54 + 14 = 68 bytes of Ethernet frame.
package swanha

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// HA message types, ha_message_type_t in strongSwan 5.9.8.
const (
	haIKEAdd          = 1
	haIKEUpdate       = 2
	haIKEMIDInitiator = 3
	haIKEMIDResponder = 4
	haIKEDelete       = 5
	haChildAdd        = 6
	haChildDelete     = 7
	haSegmentDrop     = 8
	haSegmentTake     = 9
	haStatus          = 10
	haResync          = 11
	haIKEIV           = 12
)

// haTypeName names a message type as strongSwan's logs do.
func haTypeName(t byte) string {
	names := [...]string{"", "IKE_ADD", "IKE_UPDATE", "IKE_MID_INITIATOR", "IKE_MID_RESPONDER", "IKE_DELETE",
		"CHILD_ADD", "CHILD_DELETE", "SEGMENT_DROP", "SEGMENT_TAKE", "STATUS", "RESYNC", "IKE_IV"}
	if int(t) < len(names) && t != 0 {
		return names[t]
	}
	return fmt.Sprintf("type %d", t)
}

const (
	haVersion   = 3
	haAttrIKEID = 1  // HA_IKE_ID: ike_sa_id_t, 18 bytes
	haAttrMID   = 33 // HA_MID: uint32
	haMIDLen    = 2 + 1 + 18 + 1 + 4
)

// haPacket is one HA datagram seen on the sync link.
type haPacket struct {
	At time.Time
	// Out: sent by the node the capture ran on.
	Out bool
	// IPLen is the IP packet's length, PayloadLen the HA message's.
	IPLen, PayloadLen int
	Type              byte
	// SPIi and MID are set for message-ID updates only.
	SPIi uint64
	MID  uint32
}

// parseMID decodes a message-ID update, which must be exactly the 26
// bytes the derivation above gives.
func parseMID(p []byte) (spii uint64, mid uint32, err error) {
	if len(p) != haMIDLen {
		return 0, 0, fmt.Errorf("message-ID update of %d bytes, want %d", len(p), haMIDLen)
	}
	if p[0] != haVersion || (p[1] != haIKEMIDInitiator && p[1] != haIKEMIDResponder) {
		return 0, 0, fmt.Errorf("version %d type %d is no message-ID update", p[0], p[1])
	}
	if p[2] != haAttrIKEID || p[21] != haAttrMID {
		return 0, 0, fmt.Errorf("attributes %d, %d; want IKE_ID, MID", p[2], p[21])
	}
	// strongSwan copies the SPIs in as it holds them, in network order.
	return binary.BigEndian.Uint64(p[4:12]), binary.BigEndian.Uint32(p[22:26]), nil
}

// readPcap reads a classic pcap file of Ethernet frames (tcpdump -w) and
// returns the UDP datagrams to or from port 4510 in it; local is the
// capturing node's IPv4 address on the link, to tell directions apart.
// Frames may be cut at the snap length: the IP header's length field
// gives the real size.
func readPcap(r io.Reader, local [4]byte) ([]haPacket, error) {
	var hdr [24]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("pcap header: %w", err)
	}
	var bo binary.ByteOrder
	nano := false
	switch binary.LittleEndian.Uint32(hdr[:4]) {
	case 0xa1b2c3d4:
		bo = binary.LittleEndian
	case 0xa1b23c4d:
		bo, nano = binary.LittleEndian, true
	case 0xd4c3b2a1:
		bo = binary.BigEndian
	case 0x4d3cb2a1:
		bo, nano = binary.BigEndian, true
	default:
		return nil, errors.New("not a pcap file")
	}
	if lt := bo.Uint32(hdr[20:24]) & 0xffff; lt != 1 {
		return nil, fmt.Errorf("pcap link type %d, want Ethernet", lt)
	}
	var out []haPacket
	var rec [16]byte
	buf := make([]byte, 0, 256)
	for {
		if _, err := io.ReadFull(r, rec[:]); err != nil {
			if err == io.EOF {
				return out, nil
			}
			// tcpdump killed mid-write leaves a cut record: keep what is whole.
			if err == io.ErrUnexpectedEOF {
				return out, nil
			}
			return out, err
		}
		sec, frac, incl := bo.Uint32(rec[0:4]), bo.Uint32(rec[4:8]), bo.Uint32(rec[8:12])
		if incl > 1<<16 {
			return out, fmt.Errorf("pcap record of %d bytes", incl)
		}
		if int(incl) > cap(buf) {
			buf = make([]byte, incl)
		}
		buf = buf[:incl]
		if _, err := io.ReadFull(r, buf); err != nil {
			return out, nil
		}
		ns := int64(frac) * 1000
		if nano {
			ns = int64(frac)
		}
		if p, ok := decodeFrame(buf, local); ok {
			p.At = time.Unix(int64(sec), ns)
			out = append(out, p)
		}
	}
}

// decodeFrame picks an HA datagram out of an Ethernet frame.
func decodeFrame(f []byte, local [4]byte) (haPacket, bool) {
	const eth = 14
	if len(f) < eth+20+8 || binary.BigEndian.Uint16(f[12:14]) != 0x0800 {
		return haPacket{}, false
	}
	ip := f[eth:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[0]>>4 != 4 || ihl < 20 || ip[9] != 17 || len(ip) < ihl+8 {
		return haPacket{}, false
	}
	udp := ip[ihl:]
	sport, dport := binary.BigEndian.Uint16(udp[0:2]), binary.BigEndian.Uint16(udp[2:4])
	if sport != 4510 && dport != 4510 {
		return haPacket{}, false
	}
	ipLen := int(binary.BigEndian.Uint16(ip[2:4]))
	p := haPacket{IPLen: ipLen, PayloadLen: int(binary.BigEndian.Uint16(udp[4:6])) - 8, Out: [4]byte(ip[12:16]) == local}
	pl := udp[8:]
	if len(pl) >= 2 {
		p.Type = pl[1]
	}
	if (p.Type == haIKEMIDInitiator || p.Type == haIKEMIDResponder) && p.PayloadLen == haMIDLen && len(pl) >= haMIDLen {
		p.SPIi, p.MID, _ = parseMID(pl[:haMIDLen])
	}
	return p, true
}
