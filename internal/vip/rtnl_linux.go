package vip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// The two address messages are built by hand, as internal/dataplane/xfrm
// does for its messages: they are small, and a netlink library would be a
// new dependency for three attributes.

// addrMsg builds an RTM_NEWADDR or RTM_DELADDR request for p on ifindex.
func addrMsg(typ, flags uint16, seq uint32, ifindex int, p netip.Prefix, ifaFlags uint32) []byte {
	a := p.Addr()
	family, alen := byte(unix.AF_INET), 4
	if a.Is6() {
		family, alen = unix.AF_INET6, 16
	}
	raw := a.AsSlice()
	b := make([]byte, unix.SizeofNlMsghdr+unix.SizeofIfAddrmsg, unix.SizeofNlMsghdr+unix.SizeofIfAddrmsg+2*(4+16)+8)
	ne := binary.NativeEndian
	ne.PutUint16(b[4:], typ)
	ne.PutUint16(b[6:], flags)
	ne.PutUint32(b[8:], seq)
	h := b[unix.SizeofNlMsghdr:]
	h[0] = family
	h[1] = byte(p.Bits())
	h[2] = byte(ifaFlags) // the 8-bit field; IFA_FLAGS below carries all 32
	h[3] = unix.RT_SCOPE_UNIVERSE
	ne.PutUint32(h[4:], uint32(ifindex))
	// IFA_LOCAL and IFA_ADDRESS equal: a plain address, not a peer pair.
	b = appendAttr(b, unix.IFA_LOCAL, raw[:alen])
	b = appendAttr(b, unix.IFA_ADDRESS, raw[:alen])
	if ifaFlags != 0 {
		b = appendAttr(b, unix.IFA_FLAGS, ne.AppendUint32(nil, ifaFlags))
	}
	ne.PutUint32(b[0:], uint32(len(b)))
	return b
}

func appendAttr(b []byte, typ uint16, data []byte) []byte {
	ne := binary.NativeEndian
	b = ne.AppendUint16(b, uint16(unix.SizeofRtAttr+len(data)))
	b = ne.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// nlError is a netlink errno with the kernel's extended-ack text, which
// often says more than the errno ("prefix length is invalid").
type nlError struct {
	errno unix.Errno
	msg   string
}

func (e *nlError) Error() string {
	if e.msg == "" {
		return e.errno.Error()
	}
	return e.errno.Error() + " (" + e.msg + ")"
}

func (e *nlError) Unwrap() error { return e.errno }

// rtnlDo sends one request on a fresh NETLINK_ROUTE socket and waits for
// its acknowledgement. A socket per call keeps the package free of shared
// state; VIPs move a handful of times per failover, not per packet.
func rtnlDo(req []byte) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	defer unix.Close(fd)
	// Best effort: kernels without extended acks still answer with the errno.
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	// A kernel that never answers must not hang a failover.
	tv := unix.NsecToTimeval(int64(5 * time.Second))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink bind: %w", err)
	}
	seq := binary.NativeEndian.Uint32(req[8:])
	for {
		err = unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}
	buf := make([]byte, 16<<10)
	for {
		n, from, err := unix.Recvfrom(fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("netlink receive: %w", err)
		}
		if sa, ok := from.(*unix.SockaddrNetlink); !ok || sa.Pid != 0 {
			continue // only the kernel answers requests
		}
		if done, err := parseAck(buf[:n], seq); done {
			return err
		}
	}
}

var errShortAck = errors.New("netlink: truncated acknowledgement")

// parseAck looks through a datagram of netlink messages for the
// acknowledgement of request seq. It reports done once it has found it, with
// the request's error (nil on success).
func parseAck(b []byte, seq uint32) (done bool, err error) {
	ne := binary.NativeEndian
	for len(b) >= unix.SizeofNlMsghdr {
		l := int(ne.Uint32(b[0:]))
		if l < unix.SizeofNlMsghdr || l > len(b) {
			return true, errShortAck
		}
		m := b[:l]
		if al := (l + 3) &^ 3; al < len(b) {
			b = b[al:]
		} else {
			b = nil
		}
		typ, flags := ne.Uint16(m[4:]), ne.Uint16(m[6:])
		if ne.Uint32(m[8:]) != seq || typ != unix.NLMSG_ERROR {
			continue
		}
		if len(m) < unix.SizeofNlMsghdr+4 {
			return true, errShortAck
		}
		errno := int32(ne.Uint32(m[unix.SizeofNlMsghdr:]))
		if errno == 0 {
			return true, nil
		}
		e := &nlError{errno: unix.Errno(-int64(errno))}
		if flags&unix.NLM_F_ACK_TLVS != 0 {
			// With NETLINK_CAP_ACK the echoed request is only its header,
			// unless the kernel says otherwise by clearing NLM_F_CAPPED.
			off := unix.SizeofNlMsghdr + unix.SizeofNlMsgerr
			if flags&unix.NLM_F_CAPPED == 0 && len(m) >= unix.SizeofNlMsghdr+unix.SizeofNlMsgerr {
				inner := int(ne.Uint32(m[unix.SizeofNlMsghdr+4:]))
				off = unix.SizeofNlMsghdr + 4 + (inner+3)&^3
			}
			if off >= 0 && off <= len(m) {
				e.msg = extAckMsg(m[off:])
			}
		}
		return true, e
	}
	return false, nil
}

// extAckMsg returns the NLMSGERR_ATTR_MSG string among attributes tlv.
func extAckMsg(tlv []byte) string {
	ne := binary.NativeEndian
	for len(tlv) >= unix.SizeofRtAttr {
		l := int(ne.Uint16(tlv[0:]))
		if l < unix.SizeofRtAttr || l > len(tlv) {
			return ""
		}
		if ne.Uint16(tlv[2:])&0x3fff == unix.NLMSGERR_ATTR_MSG {
			s := tlv[unix.SizeofRtAttr:l]
			for i, c := range s {
				if c == 0 {
					s = s[:i]
					break
				}
			}
			return string(s)
		}
		al := (l + 3) &^ 3
		if al >= len(tlv) {
			return ""
		}
		tlv = tlv[al:]
	}
	return ""
}
