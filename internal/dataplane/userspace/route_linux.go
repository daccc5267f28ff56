package userspace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"golang.org/x/sys/unix"
)

// rtprotHike marks the routes this backend adds (rtm_protocol), so that
// `ip route show proto 104` lists them and nothing else is mistaken for
// ours. The value is unassigned in iproute2's rt_protos.
const rtprotHike = 104

// router adds and removes routes into the TUN device over one rtnetlink
// socket opened in New, so that route changes reach the network namespace
// the device lives in whichever thread makes them.
type router struct {
	mu    sync.Mutex
	fd    int
	index int
	seq   uint32
	buf   []byte
}

func newRouter(index int) (*router, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("userspace: rtnetlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("userspace: rtnetlink bind: %w", err)
	}
	// A kernel that never answers must not hang policy installation.
	tv := unix.Timeval{Sec: 5}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("userspace: rtnetlink timeout: %w", err)
	}
	return &router{fd: fd, index: index, buf: make([]byte, 8192)}, nil
}

func (r *router) close() { unix.Close(r.fd) }

// add routes pfx into the device, with src as preferred source address if
// valid. ours is false when an identical route already existed: it is left
// alone, and not removed later. A src that is not a local address is
// dropped rather than failing the route.
func (r *router) add(pfx netip.Prefix, src netip.Addr) (ours bool, err error) {
	flags := uint16(unix.NLM_F_REQUEST | unix.NLM_F_ACK | unix.NLM_F_CREATE | unix.NLM_F_EXCL)
	err = r.request(unix.RTM_NEWROUTE, flags, pfx, src)
	if src.IsValid() && (errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EADDRNOTAVAIL)) {
		err = r.request(unix.RTM_NEWROUTE, flags, pfx, netip.Addr{})
	}
	if errors.Is(err, unix.EEXIST) {
		return false, nil
	}
	return err == nil, err
}

// del removes a route add created; a route that is already gone is fine.
func (r *router) del(pfx netip.Prefix) error {
	err := r.request(unix.RTM_DELROUTE, unix.NLM_F_REQUEST|unix.NLM_F_ACK, pfx, netip.Addr{})
	if errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) {
		return nil
	}
	return err
}

func (r *router) request(typ uint16, flags uint16, pfx netip.Prefix, src netip.Addr) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	family := byte(unix.AF_INET)
	if pfx.Addr().Is6() {
		family = unix.AF_INET6
	}
	msg := make([]byte, unix.SizeofNlMsghdr, 128)
	// struct rtmsg
	msg = append(msg, family, byte(pfx.Bits()), 0, 0,
		unix.RT_TABLE_MAIN, rtprotHike, unix.RT_SCOPE_LINK, unix.RTN_UNICAST, 0, 0, 0, 0)
	msg = appendAttr(msg, unix.RTA_DST, pfx.Addr().AsSlice())
	msg = appendAttr(msg, unix.RTA_OIF, binary.NativeEndian.AppendUint32(nil, uint32(r.index)))
	if src.IsValid() {
		msg = appendAttr(msg, unix.RTA_PREFSRC, src.AsSlice())
	}
	binary.NativeEndian.PutUint32(msg[0:4], uint32(len(msg)))
	binary.NativeEndian.PutUint16(msg[4:6], typ)
	binary.NativeEndian.PutUint16(msg[6:8], flags)
	binary.NativeEndian.PutUint32(msg[8:12], r.seq)
	if err := unix.Sendto(r.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("rtnetlink send: %w", err)
	}
	for {
		n, _, err := unix.Recvfrom(r.fd, r.buf, 0)
		if err != nil {
			return fmt.Errorf("rtnetlink receive: %w", err)
		}
		for b := r.buf[:n]; len(b) >= unix.SizeofNlMsghdr; {
			l := int(binary.NativeEndian.Uint32(b[0:4]))
			if l < unix.SizeofNlMsghdr || l > len(b) {
				break
			}
			t := binary.NativeEndian.Uint16(b[4:6])
			seq := binary.NativeEndian.Uint32(b[8:12])
			if seq == r.seq && t == unix.NLMSG_ERROR && l >= unix.SizeofNlMsghdr+4 {
				if e := int32(binary.NativeEndian.Uint32(b[16:20])); e != 0 {
					return unix.Errno(-e)
				}
				return nil
			}
			next := (l + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1)
			if next > len(b) {
				break
			}
			b = b[next:]
		}
	}
}

func appendAttr(b []byte, typ uint16, data []byte) []byte {
	l := unix.SizeofRtAttr + len(data)
	b = binary.NativeEndian.AppendUint16(b, uint16(l))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%unix.RTA_ALIGNTO != 0 {
		b = append(b, 0)
	}
	return b
}
