package vip

import (
	"errors"
	"net"
	"net/netip"
	"os"

	"golang.org/x/sys/unix"
)

var errNoInterface = errors.New("no such interface")

// link finds ifname. A missing interface gets its own plain message: it is
// the likeliest mistake (a typo in the config, a renamed NIC) and the
// standard library's wording for it names a routing operation instead.
func link(ifname string) (*net.Interface, error) {
	if ifname == "" {
		return nil, errNoInterface
	}
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		var se *os.SyscallError
		if errors.As(err, &se) {
			return nil, err
		}
		return nil, errNoInterface
	}
	return ifc, nil
}

// Add puts p on ifname and sends one announcement of p's address. An address
// already there is not an error, and is announced all the same: Add is what
// a node calls when it takes a VIP over, whoever put the address there. IPv6
// addresses are added without duplicate address detection.
//
// If the address was added but the announcement failed, the error says so;
// the address stays, and calling Add or Announce again is safe.
//
// Add needs CAP_NET_ADMIN for the address and CAP_NET_RAW for the
// announcement.
func Add(ifname string, p netip.Prefix) error {
	if err := checkPrefix(p); err != nil {
		return opError("add", p, "to", ifname, err)
	}
	ifc, err := link(ifname)
	if err != nil {
		return opError("add", p, "to", ifname, err)
	}
	var flags uint32
	if p.Addr().Is6() {
		flags = unix.IFA_F_NODAD
	}
	req := addrMsg(unix.RTM_NEWADDR, unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_EXCL, 1, ifc.Index, p, flags)
	if err := rtnlDo(req); err != nil && !errors.Is(err, unix.EEXIST) {
		return opError("add", p, "to", ifname, err)
	}
	if err := announce(ifc, p.Addr()); err != nil {
		return opError("add", p, "to", ifname, err)
	}
	return nil
}

// Remove takes p off ifname. An address that is not there, with exactly
// p's prefix length, is not an error: the VIP is gone either way.
func Remove(ifname string, p netip.Prefix) error {
	if err := checkPrefix(p); err != nil {
		return opError("remove", p, "from", ifname, err)
	}
	ifc, err := link(ifname)
	if err != nil {
		return opError("remove", p, "from", ifname, err)
	}
	req := addrMsg(unix.RTM_DELADDR, unix.NLM_F_REQUEST|unix.NLM_F_ACK, 1, ifc.Index, p, 0)
	if err := rtnlDo(req); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return opError("remove", p, "from", ifname, err)
	}
	return nil
}

// Present reports whether a is on ifname, with any prefix length.
func Present(ifname string, a netip.Addr) (bool, error) {
	if err := checkAddr(a); err != nil {
		return false, opError("look up", a, "on", ifname, err)
	}
	ifc, err := link(ifname)
	if err != nil {
		return false, opError("look up", a, "on", ifname, err)
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return false, opError("look up", a, "on", ifname, err)
	}
	for _, x := range addrs {
		n, ok := x.(*net.IPNet)
		if !ok {
			continue
		}
		if b, ok := netip.AddrFromSlice(n.IP); ok && b.Unmap() == a {
			return true, nil
		}
	}
	return false, nil
}

// Announce tells ifname's segment that a is reachable at ifname's MAC: a
// gratuitous ARP, as request and as reply, for IPv4, an unsolicited Neighbor
// Advertisement for IPv6. It sends once and returns; see the package
// documentation for why and how often to repeat it. On an interface without
// an Ethernet address (a tunnel, say) there is no neighbour cache to correct
// and Announce sends nothing.
func Announce(ifname string, a netip.Addr) error {
	if err := checkAddr(a); err != nil {
		return opError("announce", a, "on", ifname, err)
	}
	ifc, err := link(ifname)
	if err != nil {
		return opError("announce", a, "on", ifname, err)
	}
	if err := announce(ifc, a); err != nil {
		return opError("announce", a, "on", ifname, err)
	}
	return nil
}

func announce(ifc *net.Interface, a netip.Addr) error {
	if len(ifc.HardwareAddr) != 6 {
		return nil
	}
	mac := [6]byte(ifc.HardwareAddr)
	if a.Is4() {
		// Both forms: stacks differ in which one they act on (package doc).
		if err := sendARP(ifc.Index, arpRequest, mac, a.As4()); err != nil {
			return err
		}
		return sendARP(ifc.Index, arpReply, mac, a.As4())
	}
	return sendNA(ifc.Index, ifc.Name, a, mac)
}
