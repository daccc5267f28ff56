// Package dataplane defines the contract between the IKE daemon and the code
// that moves ESP packets. Two backends implement it: the kernel's XFRM
// (package xfrm) and userspace ESP over a TUN device. The daemon negotiates
// Child SAs and hands the result here; everything the backends need is in
// these types, expressed in IKEv2 terms (transform IDs, traffic selectors)
// so that no backend-specific knowledge leaks into the protocol code.
//
// RFC 6311 failover needs two things beyond install/delete: reading and
// setting the outbound sequence number, and reading, setting and advancing
// the inbound replay window. Both are part of Backend so that a node taking
// over an SA can continue where the old owner stopped.
package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Kind selects a data plane in the configuration ("dataplane: auto").
type Kind string

const (
	// KindAuto uses the kernel when it can create ESP SAs and userspace
	// ESP otherwise.
	KindAuto Kind = "auto"
	// KindUserspace is ESP in this process over a TUN device.
	KindUserspace Kind = "userspace"
	// KindXFRM is the Linux kernel's IPsec stack, driven over netlink.
	KindXFRM Kind = "xfrm"
)

// ParseKind accepts the configuration spelling of a Kind. The empty
// string means auto.
func ParseKind(s string) (Kind, error) {
	switch k := Kind(strings.ToLower(strings.TrimSpace(s))); k {
	case "":
		return KindAuto, nil
	case KindAuto, KindUserspace, KindXFRM:
		return k, nil
	}
	return "", fmt.Errorf("unknown data plane %q (want auto, userspace or xfrm)", s)
}

// ErrNoKernelESP is wrapped by a kernel probe that found XFRM but no ESP
// support (CONFIG_INET_ESP off and no esp4 module).
var ErrNoKernelESP = errors.New("kernel has no ESP support (CONFIG_INET_ESP)")

// Selection is the outcome of Select: the backend to start and, for auto,
// why it was chosen, so that the daemon can log the decision.
type Selection struct {
	Kind   Kind
	Reason string
}

// Select resolves a configured Kind to a concrete backend. probeXFRM
// reports whether the kernel can create an ESP SA (xfrm.Probe); it is
// passed in rather than imported because the backends depend on this
// package. An explicit xfrm choice that the kernel cannot serve is an
// error at start-up, never a silent fallback.
func Select(k Kind, probeXFRM func() error) (Selection, error) {
	switch k {
	case KindUserspace:
		return Selection{Kind: KindUserspace, Reason: "configured"}, nil
	case KindXFRM, KindAuto, "":
	default:
		return Selection{}, fmt.Errorf("unknown data plane %q", k)
	}
	var err error
	if probeXFRM == nil {
		err = errors.New("no kernel probe available on this platform")
	} else {
		err = probeXFRM()
	}
	if err == nil {
		return Selection{Kind: KindXFRM, Reason: "kernel can create ESP SAs"}, nil
	}
	if k == KindXFRM {
		return Selection{}, fmt.Errorf("xfrm data plane unavailable: %w; use dataplane: userspace", err)
	}
	return Selection{Kind: KindUserspace, Reason: "xfrm unavailable: " + err.Error()}, nil
}

// SAID names one installed SA. The kernel keys SAs by destination, SPI and
// protocol; the userspace plane needs only the SPI but keeps the addresses
// for its table and error messages.
type SAID struct {
	SPI uint32
	Src netip.Addr // outer source: the sender of packets on this SA
	Dst netip.Addr // outer destination: the receiver
}

func (id SAID) String() string {
	return fmt.Sprintf("%s->%s/0x%08x", id.Src, id.Dst, id.SPI)
}

// UDPEncap carries the RFC 3948 ESP-in-UDP ports of an SA behind NAT, as
// seen from the SA's direction: SrcPort is the sender's port.
type UDPEncap struct {
	SrcPort uint16
	DstPort uint16
}

// Lifetime holds the volume limits the data plane enforces on its own.
// Zero means unlimited. Time limits are not here on purpose: the daemon
// schedules rekeys in its own timer wheel, so a single clock decides.
type Lifetime struct {
	SoftBytes, HardBytes     uint64
	SoftPackets, HardPackets uint64
}

// SA is one direction of a Child SA in tunnel mode.
type SA struct {
	ID    SAID
	ReqID uint32 // ties the SA to its policies; the same for both directions and across rekeys
	Encap *UDPEncap

	Alg Algorithm
	// EncrKey is the ENCR key material as taken from KEYMAT; for AES-GCM and
	// ChaCha20-Poly1305 it ends with the 4-octet salt (RFC 4106 §8.1,
	// RFC 7634 §2).
	EncrKey  []byte
	IntegKey []byte

	ESN bool
	// ReplayWindow is the inbound anti-replay window in packets; zero turns
	// replay protection off. Ignored for outbound SAs.
	ReplayWindow uint32
	Lifetime     Lifetime
}

// SAPair is the two SAs of a Child SA as installed on this host: In carries
// packets from the peer, Out carries packets to it.
type SAPair struct {
	In, Out SA
}

// TrafficSelector is one IKEv2 traffic selector (RFC 7296 §3.13.1): an
// inclusive address range, an IP protocol (0 = any) and an inclusive port
// range (0-65535 = any). Backends that only know prefixes split ranges.
type TrafficSelector struct {
	Start, End         netip.Addr
	Proto              uint8
	StartPort, EndPort uint16
}

// PrefixSelector is a selector covering prefix with any protocol and port.
func PrefixSelector(p netip.Prefix) TrafficSelector {
	p = p.Masked()
	return TrafficSelector{Start: p.Addr(), End: lastAddr(p), EndPort: 0xffff}
}

// Policies are the tunnel-mode policies of one Child SA: every pair of a
// local and a remote selector is protected by the SAs with ReqID between
// the outer addresses Local and Remote.
type Policies struct {
	ReqID         uint32
	Local, Remote netip.Addr
	LocalTS       []TrafficSelector
	RemoteTS      []TrafficSelector
}

// Counters are the traffic totals of one SA since it was installed. Bytes
// count the plaintext IP packets, as the kernel's lifetime counters do, so
// byte lifetimes mean the same on both backends.
type Counters struct {
	Bytes   uint64
	Packets uint64
}

// Replay is the anti-replay state of an inbound SA.
type Replay struct {
	// Seq is the highest sequence number received; with ESN the upper 32
	// bits are the high-order bits the receiver has inferred.
	Seq uint64
	// Window is the window size in packets. It is fixed at install time;
	// SetReplay ignores it.
	Window uint32
	// Bitmap marks received packets relative to Seq: bit i (word i/32,
	// bit i%32) set means Seq-i was received. Backends translate from and
	// to their own layout, so that state read from one backend can be
	// written to the other.
	Bitmap []uint32
}

// EventKind says what happened to an SA.
type EventKind uint8

const (
	// EventSoftExpire: a soft lifetime ran out; rekey the Child SA.
	EventSoftExpire EventKind = iota + 1
	// EventHardExpire: a hard lifetime ran out; the SA is gone, delete the
	// Child SA.
	EventHardExpire
	// EventLost: the backend dropped events (for example the kernel's
	// netlink socket overflowed); the daemon should check its SAs' counters.
	EventLost
)

func (k EventKind) String() string {
	switch k {
	case EventSoftExpire:
		return "soft-expire"
	case EventHardExpire:
		return "hard-expire"
	case EventLost:
		return "events-lost"
	}
	return fmt.Sprintf("event(%d)", uint8(k))
}

// Event reports an SA lifetime event. SA and ReqID are zero for EventLost.
type Event struct {
	Kind  EventKind
	SA    SAID
	ReqID uint32
}

// ErrNotFound is wrapped by calls that name an SA the backend does not have.
var ErrNotFound = errors.New("SA not found")

// Backend is a data plane. Its methods are safe for concurrent use.
type Backend interface {
	// Kind reports which data plane this is.
	Kind() Kind

	// AddSAs installs both SAs of a Child SA, the inbound one first so that
	// the peer's first packet finds it. On error nothing stays installed.
	AddSAs(p SAPair) error
	// UpdateSA changes the mutable attributes of an installed SA: the UDP
	// encapsulation ports (NAT rebinding) and the lifetimes. Keys,
	// algorithms and addresses never change; rekeying installs a new pair.
	UpdateSA(sa SA) error
	// DeleteSA removes one SA. Deleting a missing SA wraps ErrNotFound.
	DeleteSA(id SAID) error

	// InstallPolicies installs or replaces the policies of a Child SA:
	// out (local to remote), in and forward (remote to local). It is
	// idempotent, so a rekey that keeps ReqID needs no policy change.
	InstallPolicies(p Policies) error
	// RemovePolicies removes what InstallPolicies installed; missing
	// policies are not an error.
	RemovePolicies(p Policies) error

	// Counters reads the traffic totals of an SA.
	Counters(id SAID) (Counters, error)

	// OutboundSeq reads the last sequence number sent on an outbound SA;
	// the next packet carries OutboundSeq()+1.
	OutboundSeq(id SAID) (uint64, error)
	// SetOutboundSeq sets the last sequence number sent. RFC 6311 §5.2: a
	// node taking over an SA must never reuse a number, so it sets at least
	// the replicated reservation mark.
	SetOutboundSeq(id SAID, seq uint64) error
	// ReplayState reads the anti-replay state of an inbound SA.
	ReplayState(id SAID) (Replay, error)
	// SetReplayState overwrites the anti-replay state of an inbound SA.
	SetReplayState(id SAID, r Replay) error
	// AdvanceReplay moves the inbound window forward by delta and marks the
	// whole window as received. It is the local half of
	// IPSEC_REPLAY_COUNTER_SYNC (RFC 6311 §5.2): the peer adds the same
	// delta to its outbound counter, so its next packets land above the
	// window, while packets the previous owner may already have accepted
	// can no longer be replayed.
	AdvanceReplay(id SAID, delta uint64) error

	// Events delivers lifetime events. The channel is closed by Close.
	Events() <-chan Event

	// Close stops event delivery and releases the backend's resources.
	// Installed SAs and policies stay: a restarting daemon may adopt them.
	Close() error
}
