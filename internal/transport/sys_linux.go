package transport

import (
	"encoding/binary"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The system calls go through variables so that tests can make the batch
// calls fail the way a seccomp filter or an old kernel would.
var (
	sysRecvmmsg = recvmmsg
	sysSendmmsg = sendmmsg
)

// MSG_TRUNC makes the receive calls report a truncated datagram's full
// length, so that the byte counters are right even for dropped ones.

func recvmmsg(fd uintptr, msgs []unix.Mmsghdr) (int, syscall.Errno) {
	n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), unix.MSG_TRUNC, 0, 0)
	return int(n), e
}

func sendmmsg(fd uintptr, msgs []unix.Mmsghdr) (int, syscall.Errno) {
	n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), 0, 0, 0)
	return int(n), e
}

// recvmsg and sendmsg fill in Len like their batch counterparts do.
func recvmsg(fd uintptr, m *unix.Mmsghdr) syscall.Errno {
	n, _, e := unix.Syscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&m.Hdr)), unix.MSG_TRUNC)
	if e == 0 {
		m.Len = uint32(n)
	}
	return e
}

func sendmsg(fd uintptr, m *unix.Mmsghdr) syscall.Errno {
	n, _, e := unix.Syscall(unix.SYS_SENDMSG, fd, uintptr(unsafe.Pointer(&m.Hdr)), 0)
	if e == 0 {
		m.Len = uint32(n)
	}
	return e
}

// batchUnavailable tells whether a batch system call failed because the
// call itself is missing or filtered rather than because of the datagram.
func batchUnavailable(e syscall.Errno) bool {
	return e == unix.ENOSYS || e == unix.EPERM
}

// Control message space per datagram: a pktinfo (the larger IPv6 one serves
// both families) and, on receive, the SO_RXQ_OVFL drop counter.
var (
	txOOBSize = unix.CmsgSpace(unix.SizeofInet6Pktinfo)
	rxOOBSize = unix.CmsgSpace(unix.SizeofInet6Pktinfo) + unix.CmsgSpace(4)
	cmsgHdr   = unix.CmsgLen(0)
)

// control is what the receive control messages say about one datagram.
type control struct {
	local   netip.Addr // destination address
	ifindex int
	// drops is the socket's count of datagrams the kernel dropped, as of
	// this one's arrival; the kernel sends it only once it is non-zero.
	drops     uint32
	haveDrops bool
}

// parseControl walks received control messages without allocating.
func parseControl(oob []byte) (c control) {
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < cmsgHdr || l > len(oob) {
			break
		}
		data := oob[cmsgHdr:l]
		switch {
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			// struct in_pktinfo: ifindex, spec_dst, addr (the header's
			// destination, which is the address the peer used).
			c.local = netip.AddrFrom4([4]byte(data[8:12]))
			c.ifindex = int(int32(binary.NativeEndian.Uint32(data[0:4])))
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			c.local = netip.AddrFrom16([16]byte(data[0:16]))
			c.ifindex = int(binary.NativeEndian.Uint32(data[16:20]))
		case h.Level == unix.SOL_SOCKET && h.Type == unix.SO_RXQ_OVFL && len(data) >= 4:
			c.drops, c.haveDrops = binary.NativeEndian.Uint32(data[0:4]), true
		}
		next := unix.CmsgSpace(l - cmsgHdr)
		if next > len(oob) {
			break
		}
		oob = oob[next:]
	}
	return c
}

// putPktinfo writes a pktinfo control message selecting src as the source
// address into oob and returns its length.
func putPktinfo(oob []byte, src netip.Addr, v6 bool) int {
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	data := oob[cmsgHdr:]
	if v6 {
		h.Level, h.Type = unix.IPPROTO_IPV6, unix.IPV6_PKTINFO
		h.SetLen(unix.CmsgLen(unix.SizeofInet6Pktinfo))
		a := src.As16()
		copy(data[0:16], a[:])
		binary.NativeEndian.PutUint32(data[16:20], 0)
		return unix.CmsgSpace(unix.SizeofInet6Pktinfo)
	}
	h.Level, h.Type = unix.IPPROTO_IP, unix.IP_PKTINFO
	h.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
	// ipi_spec_dst is the source address for sendmsg; ifindex 0 leaves the
	// egress interface to routing.
	a := src.As4()
	binary.NativeEndian.PutUint32(data[0:4], 0)
	copy(data[4:8], a[:])
	clear(data[8:12])
	return unix.CmsgSpace(unix.SizeofInet4Pktinfo)
}

// sockaddr is big enough for either family; IPv4 uses its prefix.
type sockaddr = unix.RawSockaddrInet6

func parseSockaddr(sa *sockaddr) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), ntohs(sa4.Port))
	case unix.AF_INET6:
		// Zones are left out: IKE runs on global addresses, and naming a
		// zone would cost an interface lookup per datagram.
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), ntohs(sa.Port))
	}
	return netip.AddrPort{}
}

// putSockaddr fills sa for remote and returns its length.
func putSockaddr(sa *sockaddr, remote netip.AddrPort, v6 bool) uint32 {
	if v6 {
		*sa = sockaddr{Family: unix.AF_INET6, Port: htons(remote.Port()), Addr: remote.Addr().As16()}
		return unix.SizeofSockaddrInet6
	}
	sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
	*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Port: htons(remote.Port()), Addr: remote.Addr().As4()}
	return unix.SizeofSockaddrInet4
}

// The port field holds network byte order in host memory.
func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return binary.BigEndian.Uint16(b[:])
}

func htons(p uint16) uint16 {
	var v uint16
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&v))[:], p)
	return v
}
