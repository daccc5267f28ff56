//go:build linux

package vip

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

var testMAC = [6]byte{0x02, 0x00, 0x00, 0x00, 0x00, 0x0a}

// The expected frames are typed from the field layouts of RFC 826 ("Packet
// format") and RFC 5227 section 2.3 (ARP Announcement: sender and target
// protocol address both the announced address, target hardware address
// zero in a request).
func TestAppendARP(t *testing.T) {
	ip := [4]byte{192, 0, 2, 11}
	req := []byte{
		0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01,
		0x02, 0x00, 0x00, 0x00, 0x00, 0x0a, 0xc0, 0x00, 0x02, 0x0b,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0x00, 0x02, 0x0b,
	}
	rep := []byte{
		0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02,
		0x02, 0x00, 0x00, 0x00, 0x00, 0x0a, 0xc0, 0x00, 0x02, 0x0b,
		0x02, 0x00, 0x00, 0x00, 0x00, 0x0a, 0xc0, 0x00, 0x02, 0x0b,
	}
	if got := appendARP(nil, arpRequest, testMAC, ip); !bytes.Equal(got, req) {
		t.Errorf("request\n got %x\nwant %x", got, req)
	}
	if got := appendARP(nil, arpReply, testMAC, ip); !bytes.Equal(got, rep) {
		t.Errorf("reply\n got %x\nwant %x", got, rep)
	}
}

// Layout from RFC 4861 section 4.4 (Neighbor Advertisement: type 136, code
// 0, flags R|S|O in the top bits of the first reserved word) and section
// 4.6.1 (Target Link-Layer Address option: type 2, length in 8-octet units).
func TestAppendNA(t *testing.T) {
	target := netip.MustParseAddr("2001:db8::11").As16()
	want := []byte{
		0x88, 0x00, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00,
		0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11,
		0x02, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x0a,
	}
	if got := appendNA(nil, target, testMAC, false); !bytes.Equal(got, want) {
		t.Errorf("host\n got %x\nwant %x", got, want)
	}
	want[4] = 0xa0 // Router and Override
	if got := appendNA(nil, target, testMAC, true); !bytes.Equal(got, want) {
		t.Errorf("router\n got %x\nwant %x", got, want)
	}
}

// The request layout is struct nlmsghdr, struct ifaddrmsg and rtattrs as in
// <linux/netlink.h> and <linux/if_addr.h>, in host byte order.
func TestAddrMsg(t *testing.T) {
	ne := binary.NativeEndian
	m := addrMsg(unix.RTM_NEWADDR, 0x605, 9, 7, netip.MustParsePrefix("2001:db8::11/64"), unix.IFA_F_NODAD)
	if len(m) != 16+8+20+20+8 || int(ne.Uint32(m)) != len(m) {
		t.Fatalf("length %d, header says %d", len(m), ne.Uint32(m))
	}
	if ne.Uint16(m[4:]) != unix.RTM_NEWADDR || ne.Uint16(m[6:]) != 0x605 || ne.Uint32(m[8:]) != 9 {
		t.Errorf("header %x", m[:16])
	}
	if !bytes.Equal(m[16:20], []byte{unix.AF_INET6, 64, unix.IFA_F_NODAD, 0}) || ne.Uint32(m[20:]) != 7 {
		t.Errorf("ifaddrmsg %x", m[16:24])
	}
	addr := []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11}
	for i, typ := range []uint16{unix.IFA_LOCAL, unix.IFA_ADDRESS} {
		a := m[24+20*i:]
		if ne.Uint16(a) != 20 || ne.Uint16(a[2:]) != typ || !bytes.Equal(a[4:20], addr) {
			t.Errorf("attribute %d: %x", typ, a[:20])
		}
	}
	f := m[64:]
	if ne.Uint16(f) != 8 || ne.Uint16(f[2:]) != unix.IFA_FLAGS || ne.Uint32(f[4:]) != unix.IFA_F_NODAD {
		t.Errorf("IFA_FLAGS %x", f)
	}

	m = addrMsg(unix.RTM_DELADDR, 5, 1, 3, netip.MustParsePrefix("192.0.2.11/24"), 0)
	if len(m) != 16+8+8+8 || !bytes.Equal(m[16:20], []byte{unix.AF_INET, 24, 0, 0}) ||
		!bytes.Equal(m[28:32], []byte{192, 0, 2, 11}) || !bytes.Equal(m[36:40], []byte{192, 0, 2, 11}) {
		t.Errorf("IPv4 delete %x", m)
	}
}

// ack builds what the kernel sends for request seq: NLMSG_ERROR with the
// errno, the echoed request header and, if msg is set, an extended-ack
// NLMSGERR_ATTR_MSG (<linux/netlink.h>).
func ack(seq uint32, errno int32, msg string) []byte {
	ne := binary.NativeEndian
	var flags uint16 = unix.NLM_F_CAPPED
	if msg != "" {
		flags |= unix.NLM_F_ACK_TLVS
	}
	b := make([]byte, 16, 64)
	ne.PutUint16(b[4:], unix.NLMSG_ERROR)
	ne.PutUint16(b[6:], flags)
	ne.PutUint32(b[8:], seq)
	b = ne.AppendUint32(b, uint32(errno))
	b = append(b, make([]byte, 16)...) // echoed request header
	if msg != "" {
		b = appendAttr(b, unix.NLMSGERR_ATTR_MSG, append([]byte(msg), 0))
	}
	ne.PutUint32(b, uint32(len(b)))
	return b
}

func TestParseAck(t *testing.T) {
	if done, err := parseAck(ack(3, 0, ""), 3); !done || err != nil {
		t.Errorf("success: done=%v err=%v", done, err)
	}
	if done, _ := parseAck(ack(4, 0, ""), 3); done {
		t.Error("took another request's acknowledgement")
	}
	done, err := parseAck(append(ack(2, 0, ""), ack(3, -int32(unix.EEXIST), "Address already assigned")...), 3)
	if !done || !errors.Is(err, unix.EEXIST) || !strings.Contains(err.Error(), "(Address already assigned)") {
		t.Errorf("second message: done=%v err=%v", done, err)
	}
	if done, err := parseAck(ack(3, -int32(unix.EADDRNOTAVAIL), ""), 3); !done || !errors.Is(err, unix.EADDRNOTAVAIL) {
		t.Errorf("plain errno: done=%v err=%v", done, err)
	}
	full := ack(3, -1, "x")
	for n := 1; n < len(full); n++ {
		cut := append([]byte(nil), full[:n]...)
		if done, err := parseAck(cut, 3); done && err == nil {
			t.Errorf("truncated to %d bytes: success", n)
		}
	}
}

func FuzzParseAck(f *testing.F) {
	f.Add(ack(1, 0, ""), uint32(1))
	f.Add(ack(1, -17, "Address already assigned"), uint32(1))
	f.Add(append(ack(2, 0, ""), ack(1, -99, "m")...), uint32(1))
	f.Fuzz(func(t *testing.T, b []byte, seq uint32) {
		done, err := parseAck(b, seq)
		if !done && err != nil {
			t.Fatalf("error %v without an acknowledgement", err)
		}
	})
}
