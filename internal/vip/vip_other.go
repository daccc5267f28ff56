//go:build !linux

package vip

import (
	"errors"
	"net/netip"
)

// Add adds p to ifname; VIP handling is Linux-only.
func Add(ifname string, p netip.Prefix) error {
	return opError("add", p, "to", ifname, errors.ErrUnsupported)
}

// Remove removes p from ifname; VIP handling is Linux-only.
func Remove(ifname string, p netip.Prefix) error {
	return opError("remove", p, "from", ifname, errors.ErrUnsupported)
}

// Present reports whether a is on ifname; VIP handling is Linux-only.
func Present(ifname string, a netip.Addr) (bool, error) {
	return false, opError("look up", a, "on", ifname, errors.ErrUnsupported)
}

// Announce announces a on ifname; VIP handling is Linux-only.
func Announce(ifname string, a netip.Addr) error {
	return opError("announce", a, "on", ifname, errors.ErrUnsupported)
}
