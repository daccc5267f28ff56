// Package vip moves a cluster's virtual IP addresses between nodes: it adds
// an address to an interface, tells the segment at once that the address now
// lives behind this node's MAC, and removes the address again.
//
// The announcement is the point. When a node dies, the routers and clients on
// its segment still map the VIP to the dead node's MAC, and they keep doing so
// until the entry ages out and is resolved afresh, which on Linux takes
// several seconds of failed probes to the old MAC and on some routers
// minutes. Every packet sent in the
// meantime is lost, so IKE retransmits and DPD would see the failover as an
// outage. An unsolicited announcement corrects those caches within
// milliseconds:
//
//   - IPv4: a gratuitous ARP (sender and target protocol address both the
//     VIP, broadcast). It is sent in both of its historical forms, a request
//     (the ARP Announcement of RFC 5227 section 2.3) and a reply, because
//     implementations differ in which one they honour. Linux updates an
//     existing entry from either, even within locktime, because it
//     recognises the frame as gratuitous; for the reply form it requires the
//     target hardware address to equal the sender's, which is why the reply
//     carries it. Linux creates no new entry from a gratuitous ARP unless
//     arp_accept is set; that is fine, a neighbour without an entry resolves
//     afresh and reaches the new owner anyway.
//   - IPv6: an unsolicited Neighbor Advertisement (RFC 4861 section 7.2.6) to
//     all-nodes with the Override flag, without which receivers keep the old
//     link-layer address, and with the Router flag mirroring this node's
//     forwarding setting, because receivers copy it into their IsRouter flag.
//
// A single frame can be lost, so callers repeat Announce a few times (say
// twice more, 100 ms apart) after Add; the package starts no goroutines, so
// nothing outlives a call and the caller's own timers decide the schedule.
//
// IPv6 VIPs are added without duplicate address detection: the address is
// known to be ours to take, and DAD would hold it unusable for a second or
// more, during which the node could neither receive on it nor announce it.
//
// A caution for IPv4: if the VIP is the first address of its subnet on the
// interface it becomes the primary, and deleting a primary also deletes the
// secondaries of that subnet unless net.ipv4.conf.<if>.promote_secondaries is
// set. Give the interface its own address in the VIP's subnet first, or set
// promote_secondaries.
package vip

import (
	"errors"
	"fmt"
	"net/netip"
)

// checkPrefix rejects what no interface should carry as a VIP, so that the
// kernel's terse EINVAL never has to explain it.
func checkPrefix(p netip.Prefix) error {
	if !p.IsValid() {
		return errors.New("invalid prefix")
	}
	return checkAddr(p.Addr())
}

func checkAddr(a netip.Addr) error {
	switch {
	case !a.IsValid():
		return errors.New("invalid address")
	case a.Is4In6():
		return errors.New("IPv4-mapped IPv6 address; give the IPv4 address")
	case a.Zone() != "":
		return errors.New("address has a zone; the interface is given separately")
	case a.IsUnspecified(), a.IsMulticast():
		return errors.New("not a unicast address")
	}
	return nil
}

// opError names the operation, the address and the interface, because the
// daemon handles several VIPs on several interfaces and an errno alone would
// not say which one failed.
func opError(op string, what fmt.Stringer, prep, ifname string, err error) error {
	return fmt.Errorf("vip: %s %s %s %s: %w", op, what, prep, ifname, err)
}
