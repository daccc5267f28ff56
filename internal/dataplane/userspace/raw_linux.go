package userspace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

const rawRcvBuf = 4 << 20

// rawESP is a pair of raw IP sockets for protocol 50, one per family. A
// kernel without ESP support still hands every ESP packet to raw sockets,
// and sends what they write, so plain ESP needs no kernel IPsec at all.
type rawESP struct {
	v4, v6 *rawConn // either may be nil: a host without IPv6, say
}

type rawConn struct {
	f  *os.File
	rc syscall.RawConn
	v6 bool

	// Send scratch, guarded by txMu: one sendmsg at a time per socket, and
	// no allocation per packet.
	txMu  sync.Mutex
	to4   unix.SockaddrInet4
	to6   unix.SockaddrInet6
	oob   []byte
	txErr error
	txDst unix.Sockaddr
	txPkt []byte
	txFn  func(fd uintptr) bool
}

func openRawESP() (*rawESP, error) {
	r := &rawESP{}
	var err4, err6 error
	r.v4, err4 = openRawConn(false)
	r.v6, err6 = openRawConn(true)
	if r.v4 == nil && r.v6 == nil {
		return nil, fmt.Errorf("userspace: raw ESP sockets: %w", errors.Join(err4, err6))
	}
	return r, nil
}

func openRawConn(v6 bool) (*rawConn, error) {
	family := unix.AF_INET
	if v6 {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_ESP)
	if err != nil {
		return nil, err
	}
	// A raw socket gets every ESP packet of the host on one queue; the
	// default buffer overflows within a burst of a single TCP stream.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rawRcvBuf) != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rawRcvBuf)
	}
	c := &rawConn{v6: v6}
	if v6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1); err != nil {
			unix.Close(fd)
			return nil, err
		}
		c.oob = make([]byte, unix.CmsgSpace(unix.SizeofInet6Pktinfo))
	} else {
		c.oob = make([]byte, unix.CmsgSpace(unix.SizeofInet4Pktinfo))
	}
	c.f = os.NewFile(uintptr(fd), "esp-raw")
	c.rc, err = c.f.SyscallConn()
	if err != nil {
		c.f.Close()
		return nil, err
	}
	c.txFn = c.sendmsg
	return c, nil
}

func (r *rawESP) conns() []*rawConn {
	var cs []*rawConn
	for _, c := range []*rawConn{r.v4, r.v6} {
		if c != nil {
			cs = append(cs, c)
		}
	}
	return cs
}

func (r *rawESP) close() {
	for _, c := range r.conns() {
		c.f.Close()
	}
}

// send writes an ESP packet from local to remote; the kernel adds the IP
// header, and the packet-info control message picks the source address.
func (r *rawESP) send(local, remote netip.Addr, pkt []byte) error {
	c := r.v4
	if remote.Is6() {
		c = r.v6
	}
	if c == nil {
		return errNoRaw
	}
	c.txMu.Lock()
	defer c.txMu.Unlock()
	h := (*unix.Cmsghdr)(unsafe.Pointer(&c.oob[0]))
	if c.v6 {
		h.Level, h.Type = unix.IPPROTO_IPV6, unix.IPV6_PKTINFO
		h.SetLen(unix.CmsgLen(unix.SizeofInet6Pktinfo))
		pi := (*unix.Inet6Pktinfo)(unsafe.Pointer(&c.oob[unix.CmsgLen(0)]))
		*pi = unix.Inet6Pktinfo{Addr: local.As16()}
		c.to6.Addr = remote.As16()
		c.txDst = &c.to6
	} else {
		h.Level, h.Type = unix.IPPROTO_IP, unix.IP_PKTINFO
		h.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
		pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&c.oob[unix.CmsgLen(0)]))
		*pi = unix.Inet4Pktinfo{Spec_dst: local.As4()}
		c.to4.Addr = remote.As4()
		c.txDst = &c.to4
	}
	c.txPkt = pkt
	if err := c.rc.Write(c.txFn); err != nil {
		return err
	}
	return c.txErr
}

func (c *rawConn) sendmsg(fd uintptr) bool {
	_, c.txErr = unix.SendmsgN(int(fd), c.txPkt, c.oob, c.txDst, 0)
	return c.txErr != unix.EAGAIN
}

// readLoop hands every ESP packet the socket receives to b.HandleESP until
// the socket is closed.
func (c *rawConn) readLoop(b *Backend) {
	buf := make([]byte, maxInner+1)
	oob := make([]byte, 128)
	var name unix.RawSockaddrInet6
	iov := unix.Iovec{Base: &buf[0]}
	iov.SetLen(len(buf))
	var msg unix.Msghdr
	var n int
	var errno syscall.Errno
	recv := func(fd uintptr) bool {
		msg = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&name)), Namelen: unix.SizeofSockaddrInet6,
			Iov: &iov, Iovlen: 1, Control: &oob[0]}
		msg.SetControllen(len(oob))
		r, _, e := unix.Syscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&msg)), 0)
		n, errno = int(r), e
		return e != unix.EAGAIN
	}
	for {
		if err := c.rc.Read(recv); err != nil {
			return // closed
		}
		if errno != 0 {
			if b.closing.Load() {
				return
			}
			continue
		}
		if msg.Flags&unix.MSG_TRUNC != 0 {
			b.stats.inc(cInvalid)
			continue
		}
		pkt := buf[:n]
		var local, remote netip.Addr
		if c.v6 {
			remote = netip.AddrFrom16(name.Addr)
			local = pktinfo6(oob[:msg.Controllen])
		} else {
			// IPv4 raw sockets deliver the IP header too.
			if n < 20 || pkt[0]>>4 != 4 {
				b.stats.inc(cInvalid)
				continue
			}
			ihl := int(pkt[0]&0x0f) * 4
			tot := int(binary.BigEndian.Uint16(pkt[2:4]))
			if ihl < 20 || tot < ihl || tot > n {
				b.stats.inc(cInvalid)
				continue
			}
			remote = netip.AddrFrom4([4]byte(pkt[12:16]))
			local = netip.AddrFrom4([4]byte(pkt[16:20]))
			pkt = pkt[ihl:tot]
		}
		b.HandleESP(local, netip.AddrPortFrom(remote, 0), pkt)
		b.EndBatch() // one packet per read here
	}
}

func pktinfo6(oob []byte) netip.Addr {
	for len(oob) >= unix.CmsgLen(0) {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < unix.CmsgLen(0) || l > len(oob) {
			break
		}
		if h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && l >= unix.CmsgLen(unix.SizeofInet6Pktinfo) {
			pi := (*unix.Inet6Pktinfo)(unsafe.Pointer(&oob[unix.CmsgLen(0)]))
			return netip.AddrFrom16(pi.Addr)
		}
		l = unix.CmsgSpace(l - unix.CmsgLen(0))
		if l > len(oob) {
			break
		}
		oob = oob[l:]
	}
	return netip.Addr{}
}
