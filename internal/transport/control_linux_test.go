package transport

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// cmsg lays out one control message the way the kernel does (cmsg(3)).
func cmsg(level, typ int32, data []byte) []byte {
	b := make([]byte, unix.CmsgSpace(len(data)))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(len(data)))
	copy(b[unix.CmsgLen(0):], data)
	return b
}

func TestParseControl(t *testing.T) {
	// struct in_pktinfo (ip(7)): ipi_ifindex, ipi_spec_dst, ipi_addr. The
	// header destination is ipi_addr; spec_dst is the local address the
	// kernel would pick and may differ.
	in4 := make([]byte, unix.SizeofInet4Pktinfo)
	binary.NativeEndian.PutUint32(in4[0:4], 3)
	copy(in4[4:8], []byte{10, 0, 0, 1})
	copy(in4[8:12], []byte{192, 0, 2, 7})
	// struct in6_pktinfo (ipv6(7)): ipi6_addr, ipi6_ifindex.
	in6 := make([]byte, unix.SizeofInet6Pktinfo)
	copy(in6[0:16], netip.MustParseAddr("2001:db8::7").AsSlice())
	binary.NativeEndian.PutUint32(in6[16:20], 4)
	drops := make([]byte, 4)
	binary.NativeEndian.PutUint32(drops, 42)

	got := parseControl(append(cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, in4), cmsg(unix.SOL_SOCKET, unix.SO_RXQ_OVFL, drops)...))
	if got != (control{local: netip.MustParseAddr("192.0.2.7"), ifindex: 3, drops: 42, haveDrops: true}) {
		t.Fatalf("IPv4: %+v", got)
	}
	got = parseControl(cmsg(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, in6))
	if got != (control{local: netip.MustParseAddr("2001:db8::7"), ifindex: 4}) {
		t.Fatalf("IPv6: %+v", got)
	}
	// Truncated or unknown messages yield nothing.
	for _, b := range [][]byte{
		nil,
		cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, in4[:8]),
		cmsg(unix.IPPROTO_IP, unix.IP_TOS, []byte{1}),
		cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, in4)[:unix.CmsgLen(0)+4],
	} {
		if got := parseControl(b); got != (control{}) {
			t.Fatalf("parseControl(%x) = %+v", b, got)
		}
	}
}

// TestPutPktinfo checks the source-selection control message byte by byte.
func TestPutPktinfo(t *testing.T) {
	oob := make([]byte, txOOBSize)
	n := putPktinfo(oob, netip.MustParseAddr("192.0.2.9"), false)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	data := oob[unix.CmsgLen(0):n]
	if h.Level != unix.IPPROTO_IP || h.Type != unix.IP_PKTINFO || int(h.Len) != unix.CmsgLen(unix.SizeofInet4Pktinfo) ||
		binary.NativeEndian.Uint32(data[0:4]) != 0 || netip.AddrFrom4([4]byte(data[4:8])) != netip.MustParseAddr("192.0.2.9") {
		t.Fatalf("IPv4 pktinfo %x", oob[:n])
	}
	n = putPktinfo(oob, netip.MustParseAddr("2001:db8::9"), true)
	data = oob[unix.CmsgLen(0):n]
	if h.Level != unix.IPPROTO_IPV6 || h.Type != unix.IPV6_PKTINFO || int(h.Len) != unix.CmsgLen(unix.SizeofInet6Pktinfo) ||
		netip.AddrFrom16([16]byte(data[0:16])) != netip.MustParseAddr("2001:db8::9") || binary.NativeEndian.Uint32(data[16:20]) != 0 {
		t.Fatalf("IPv6 pktinfo %x", oob[:n])
	}
}

func FuzzParseControl(f *testing.F) {
	in4 := make([]byte, unix.SizeofInet4Pktinfo)
	f.Add(cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, in4))
	f.Add(cmsg(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, make([]byte, unix.SizeofInet6Pktinfo)))
	f.Add(append(cmsg(unix.SOL_SOCKET, unix.SO_RXQ_OVFL, []byte{1, 0, 0, 0}), cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, in4)...))
	f.Add([]byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 8, 0, 0, 0})
	// The property is that no input, however its lengths lie, makes the
	// walk panic or read outside b.
	f.Fuzz(func(t *testing.T, b []byte) {
		// The kernel hands us aligned memory; so does make.
		oob := make([]byte, len(b))
		copy(oob, b)
		parseControl(oob)
	})
}
