package vip

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

// ARP operation codes (RFC 826).
const (
	arpRequest = 1
	arpReply   = 2
)

var broadcastMAC = [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// appendARP appends an Ethernet/IPv4 ARP packet (RFC 826) in which the VIP
// is both sender and target protocol address: the form every stack
// recognises as gratuitous.
func appendARP(b []byte, op uint16, mac [6]byte, ip [4]byte) []byte {
	b = binary.BigEndian.AppendUint16(b, 1)      // hardware type: Ethernet
	b = binary.BigEndian.AppendUint16(b, 0x0800) // protocol type: IPv4
	b = append(b, 6, 4)
	b = binary.BigEndian.AppendUint16(b, op)
	b = append(b, mac[:]...)
	b = append(b, ip[:]...)
	// The target hardware address is unknown in a request (RFC 5227
	// sections 2.1.1 and 2.3 set it to zero); in a reply Linux counts the
	// frame as gratuitous only if it repeats the sender's.
	if op == arpReply {
		b = append(b, mac[:]...)
	} else {
		b = append(b, 0, 0, 0, 0, 0, 0)
	}
	return append(b, ip[:]...)
}

// sendARP broadcasts one gratuitous ARP of form op on ifindex. The socket is
// opened with protocol 0, so it receives nothing and needs no draining.
func sendARP(ifindex int, op uint16, mac [6]byte, ip [4]byte) error {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("packet socket: %w", err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrLinklayer{
		Protocol: htons(unix.ETH_P_ARP),
		Ifindex:  ifindex,
		Halen:    6,
	}
	copy(to.Addr[:], broadcastMAC[:])
	var buf [28]byte
	if err := sendto(fd, appendARP(buf[:0], op, mac, ip), to); err != nil {
		return fmt.Errorf("send ARP: %w", err)
	}
	return nil
}

// NA flags (RFC 4861 section 4.4).
const (
	naRouter   = 0x80
	naOverride = 0x20
)

// appendNA appends an unsolicited ICMPv6 Neighbor Advertisement (RFC 4861
// section 4.4) for target with a Target Link-Layer Address option. The
// checksum stays zero: the kernel fills it in on ICMPv6 raw sockets (RFC
// 3542 section 3.1).
func appendNA(b []byte, target [16]byte, mac [6]byte, router bool) []byte {
	flags := byte(naOverride) // Solicited stays clear: nobody asked
	if router {
		flags |= naRouter
	}
	b = append(b, 136, 0, 0, 0, flags, 0, 0, 0)
	b = append(b, target[:]...)
	b = append(b, 2, 1) // Target Link-Layer Address, 1 unit of 8 octets
	return append(b, mac[:]...)
}

// sendNA sends one unsolicited NA for a to all-nodes on ifindex, from a
// itself: the VIP was added without DAD, so it is usable as a source at once,
// while the interface's link-local address may still be tentative.
func sendNA(ifindex int, ifname string, a netip.Addr, mac [6]byte) error {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6)
	if err != nil {
		return fmt.Errorf("ICMPv6 socket: %w", err)
	}
	defer unix.Close(fd)
	// Receivers drop neighbour discovery with any other hop limit (RFC 4861
	// section 7.1.2): it proves the sender is on the link.
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, 255); err != nil {
		return fmt.Errorf("ICMPv6 socket: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, ifindex); err != nil {
		return fmt.Errorf("ICMPv6 socket: %w", err)
	}
	// Our own stack has nothing to learn from it.
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_LOOP, 0); err != nil {
		return fmt.Errorf("ICMPv6 socket: %w", err)
	}
	src := &unix.SockaddrInet6{Addr: a.As16()}
	if a.IsLinkLocalUnicast() {
		src.ZoneId = uint32(ifindex)
	}
	if err := unix.Bind(fd, src); err != nil {
		return fmt.Errorf("bind ICMPv6 socket to %s: %w", a, err)
	}
	var buf [32]byte
	to := &unix.SockaddrInet6{Addr: [16]byte{0: 0xff, 1: 0x02, 15: 0x01}, ZoneId: uint32(ifindex)}
	if err := sendto(fd, appendNA(buf[:0], a.As16(), mac, forwarding6(ifname)), to); err != nil {
		return fmt.Errorf("send NA: %w", err)
	}
	return nil
}

// forwarding6 reports whether ifname forwards IPv6, which is what the Router
// flag must say: a receiver that sees it clear removes us from its default
// router list (RFC 4861 section 7.2.5). An unreadable setting counts as host.
func forwarding6(ifname string) bool {
	b, err := os.ReadFile("/proc/sys/net/ipv6/conf/" + ifname + "/forwarding")
	return err == nil && len(b) > 0 && b[0] == '1'
}

func sendto(fd int, b []byte, to unix.Sockaddr) error {
	for {
		err := unix.Sendto(fd, b, 0, to)
		if err != unix.EINTR {
			return err
		}
	}
}

// htons puts v in network byte order for fields the kernel takes as is.
func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}
