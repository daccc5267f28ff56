package ike

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"net/netip"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hike-vpn/hike/internal/wire"
)

// Conn is the policy for one kind of IKE SA: who may connect from where, how
// they authenticate, what they may negotiate. The daemon builds Conns from
// the configuration; the engine only reads them.
type Conn struct {
	Name string

	// LocalAddrs and RemoteAddrs restrict the outer addresses; empty means
	// any. Remote is also where an initiated SA goes (its first address).
	LocalAddrs  []netip.Prefix
	RemoteAddrs []netip.Prefix
	RemotePort  uint16 // for initiation; 0 means 500

	LocalID wire.ID
	// RemoteID decides which peer identities the connection accepts; nil
	// accepts any authenticated identity.
	RemoteID IDMatcher
	// RemoteIDHint, if set, goes into the IDr payload of our IKE_AUTH
	// request to tell a responder with several identities which to use.
	RemoteIDHint wire.ID
	LocalAuth    Auth
	RemoteAuth   Auth

	IKEProposals []wire.Proposal
	Children     []*ChildConfig

	// Pool hands out virtual IPs to remote-access clients (CP, RFC 7296
	// §2.19). Nil when the connection assigns none.
	Pool *Pool
	// RequestVIP makes us, as initiator, ask for a virtual IP.
	RequestVIP bool

	DPDDelay      time.Duration // 0 disables DPD
	NATKeepalive  time.Duration // RFC 3948 keepalive interval behind a NAT; 0 disables
	RekeyTime     time.Duration // IKE SA rekey; 0 disables
	Lifetime      time.Duration // hard limit for the IKE SA; 0 means none
	Fragmentation bool
	FragmentSize  int // maximum datagram, RFC 7383; 0 means 1280

	MIDSync    bool // advertise IKEV2_MESSAGE_ID_SYNC_SUPPORTED
	ReplaySync bool // advertise IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED
	// SyncMargin and SyncJump are the RFC 6311 defaults for this
	// connection's SAs: the M1 margin and the outbound ESP jump (0: 2^30).
	SyncMargin uint32
	SyncJump   uint64

	// active counts the connection's established IKE SAs.
	active atomic.Int64
}

// AuthMethod is how one end proves its identity.
type AuthMethod uint8

const (
	AuthPSK AuthMethod = iota + 1
	AuthPubKey
)

// Auth is one end's authentication: the PSK, or for public keys our
// certificate and signer (local) or the trust anchors (remote).
type Auth struct {
	Method AuthMethod
	PSK    []byte
	Cert   *x509.Certificate
	Chain  []*x509.Certificate
	Key    crypto.Signer
	CAs    *x509.CertPool
	// CACerts are the trust anchors in CAs, named in CERTREQ payloads.
	CACerts []*x509.Certificate
}

// IDMatcher decides whether a peer's identity is acceptable.
// config.Identity implements it.
type IDMatcher interface {
	Matches(t wire.IDType, data []byte) bool
}

// IDPattern is a simple IDMatcher: a type (0 for any) and data that may
// contain '*' wildcards (path.Match rules) for FQDN and RFC 822 identities.
type IDPattern struct {
	Type wire.IDType
	Data []byte
}

// Matches reports whether the identity t/data satisfies p.
func (p IDPattern) Matches(t wire.IDType, data []byte) bool {
	if p.Type == 0 && len(p.Data) == 0 {
		return true
	}
	if p.Type != 0 && p.Type != t {
		return false
	}
	if t == wire.ID_FQDN || t == wire.ID_RFC822_ADDR {
		ok, _ := path.Match(strings.ToLower(string(p.Data)), strings.ToLower(string(data)))
		return ok
	}
	return bytes.Equal(p.Data, data)
}

func (c *Conn) acceptsID(id wire.ID) bool {
	return c.RemoteID == nil || c.RemoteID.Matches(id.Type, id.Data)
}

// ChildConfig is the policy for one kind of Child SA.
type ChildConfig struct {
	Name string
	// LocalTS and RemoteTS are what we protect. A nil RemoteTS with a
	// Conn.Pool means "the peer's virtual IP" (strongSwan's "dynamic").
	LocalTS       []TrafficSelector
	RemoteTS      []TrafficSelector
	LocalDynamic  bool // our outer address (or assigned VIP) is our TS
	RemoteDynamic bool
	ESPProposals  []wire.Proposal
	RekeyTime     time.Duration
	Lifetime      time.Duration
	LifeBytes     uint64
	LifePackets   uint64
	ReplayWindow  uint32
}

// TrafficSelector is the wire form, used as is: the engine passes
// selectors between the peer, the policy and the data plane unchanged.
type TrafficSelector = wire.TrafficSelector

// PrefixTS returns the selector covering p with any protocol and port.
func PrefixTS(p netip.Prefix) TrafficSelector {
	p = p.Masked()
	return rangeTS(p.Addr(), lastAddr(p))
}

// HostTS returns the selector covering one address.
func HostTS(a netip.Addr) TrafficSelector { return rangeTS(a, a) }

func rangeTS(start, end netip.Addr) TrafficSelector {
	t := wire.TS_IPV4_ADDR_RANGE
	if start.Is6() {
		t = wire.TS_IPV6_ADDR_RANGE
	}
	return TrafficSelector{Type: t, Start: start, End: end, EndPort: 0xffff}
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().AsSlice()
	bits := p.Bits()
	for i := range a {
		for b := 0; b < 8; b++ {
			if i*8+b >= bits {
				a[i] |= 0x80 >> b
			}
		}
	}
	r, _ := netip.AddrFromSlice(a)
	return r
}

func (c *Conn) matchAddrs(local, remote netip.Addr) bool {
	return matchAny(c.LocalAddrs, local) && matchAny(c.RemoteAddrs, remote)
}

func matchAny(ps []netip.Prefix, a netip.Addr) bool {
	if len(ps) == 0 {
		return true
	}
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
