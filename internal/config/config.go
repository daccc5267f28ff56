// Package config loads hike's YAML configuration strictly: unknown keys,
// wrong types, missing required keys and contradictions are errors that
// name the file, the line and the key path, and one run reports all of
// them. docs/config.md is the operator's reference for the schema.
//
// A *Config returned without error is complete: defaults are filled in,
// proposals are parsed into IKEv2 transforms, secrets are resolved, and
// certificate and key files have been read and checked. Secrets print as
// "[redacted]" in every format.
package config

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/hike-vpn/hike/internal/wire"
)

// Config is a loaded configuration file.
type Config struct {
	File          string // the path it was loaded from
	Listen        Listen
	ControlSocket string // unix socket for `hike sa`/`hike cluster`
	Metrics       string // Prometheus listen address (host:port); "" disables the endpoint
	Log           Log
	Dataplane     Dataplane
	State         *State // nil: SA records are not persisted
	Limits        Limits
	Pools         []*Pool // in file order
	Connections   []*Connection
	Cluster       *Cluster // nil: a standalone node
}

// Connection returns the connection with the given name, or nil.
func (c *Config) Connection(name string) *Connection {
	for _, conn := range c.Connections {
		if conn.Name == name {
			return conn
		}
	}
	return nil
}

// Pool returns the pool with the given name, or nil.
func (c *Config) Pool(name string) *Pool {
	for _, p := range c.Pools {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Listen is where IKE is served.
type Listen struct {
	Addrs    []netip.Addr // default 0.0.0.0 and ::
	Port     uint16       // IKE, default 500
	NATTPort uint16       // IKE and ESP-in-UDP after NAT detection, default 4500
}

// Log configures the daemon's slog handler.
type Log struct {
	Level  slog.Level // default info
	Format string     // "text" (default) or "json"
}

// Data plane kinds, as spelled in the configuration.
const (
	DataplaneAuto      = "auto"
	DataplaneUserspace = "userspace"
	DataplaneXFRM      = "xfrm"
)

// Dataplane selects where ESP is processed.
type Dataplane struct {
	Kind   string // DataplaneAuto (default), DataplaneUserspace or DataplaneXFRM
	TUN    string // userspace: TUN device name, default "hike0"
	TUNMTU int    // userspace: TUN MTU, default 1400
}

// State configures encrypted persistence of SA records (hitless restart).
type State struct {
	Path    string // file the records are written to
	KeyFile string
	Key     Secret // StateKeySize bytes read from KeyFile
}

// Limits protect the responder under load.
type Limits struct {
	// HalfOpenCookieThreshold is the number of half-open IKE SAs above
	// which IKE_SA_INIT requests must carry a COOKIE (RFC 7296 §2.6).
	// Default 1000; 0 demands cookies always.
	HalfOpenCookieThreshold int
	// HalfOpenMax drops new IKE_SA_INIT requests beyond this many
	// half-open SAs. 0 (default): no limit beyond the cookie.
	HalfOpenMax int
	// IKESAsMax refuses new IKE SAs beyond this many. 0 (default): no limit.
	IKESAsMax int
}

// Pool is a set of virtual IP addresses handed to remote-access clients.
type Pool struct {
	Name   string
	Ranges []AddrRange  // v4 and v6 ranges, in file order
	DNS    []netip.Addr // DNS servers sent with an address (CP INTERNAL_IP4/6_DNS)
}

// AddrRange is an inclusive range of addresses of one family.
type AddrRange struct{ From, To netip.Addr }

// Contains reports whether a lies in the range.
func (r AddrRange) Contains(a netip.Addr) bool {
	return a.BitLen() == r.From.BitLen() && r.From.Compare(a) <= 0 && a.Compare(r.To) <= 0
}

// Overlaps reports whether the two ranges share an address.
func (r AddrRange) Overlaps(o AddrRange) bool {
	return r.From.BitLen() == o.From.BitLen() && r.From.Compare(o.To) <= 0 && o.From.Compare(r.To) <= 0
}

func (r AddrRange) String() string {
	if r.From == r.To {
		return r.From.String()
	}
	if p, ok := rangePrefix(r); ok {
		return p.String()
	}
	return r.From.String() + "-" + r.To.String()
}

// Auth is an authentication method.
type Auth string

const (
	AuthPSK    Auth = "psk"    // pre-shared key (RFC 7296 §2.15)
	AuthPubkey Auth = "pubkey" // X.509 certificate and signature (RFC 7427)
)

// Connection is one IKE peer or class of peers and the Child SAs
// negotiated with it.
type Connection struct {
	Name          string
	Local         Local
	Remote        Remote
	PSK           Secret // set when either side authenticates with AuthPSK
	PSKName       string // the secrets: entry PSK came from
	IKE           IKE
	Children      []*Child
	Pools         []*Pool // virtual IPs offered to the remote, in preference order
	DPD           DPD
	Fragmentation bool          // RFC 7383, default true
	WindowSize    int           // RFC 7296 §2.3 SET_WINDOW_SIZE, default 1
	NATKeepalive  time.Duration // RFC 3948 keepalive interval behind a NAT, default 20s; 0 disables
	RFC6311       RFC6311
}

// Local is this gateway's side of a connection.
type Local struct {
	Addrs    []netip.Addr // addresses IKE is accepted on / sent from; empty: any
	ID       Identity     // default: the certificate subject (pubkey) or the IKE address (psk)
	Auth     Auth
	CertFile string
	KeyFile  string
	Cert     *x509.Certificate // AuthPubkey: leaf certificate sent in IKE_AUTH
	Chain    []*x509.Certificate
	Key      PrivateKey
}

// Remote is the peer's side of a connection.
type Remote struct {
	Addrs  []netip.Prefix // accepted/initiated peer addresses; empty: any
	ID     Identity       // default: any identity (authenticated by Auth)
	Auth   Auth           // default: the same as Local.Auth
	CAFile string
	CAs    []*x509.Certificate // AuthPubkey: trust anchors for the peer's certificate
}

// IKE holds the IKE SA parameters of a connection.
type IKE struct {
	Proposals []Proposal    // default DefaultIKEProposals
	RekeyTime time.Duration // soft lifetime: rekey (or reauthenticate) after this, default 4h; 0 never
	Lifetime  time.Duration // hard lifetime: delete after this, default RekeyTime + 10%; 0 never
	Reauth    bool          // reauthenticate instead of rekeying, default false
}

// DPD configures dead peer detection (RFC 7296 §2.4).
type DPD struct {
	Delay   time.Duration // send a liveness check after this long without traffic, default 30s
	Timeout time.Duration // declare the peer dead after this long without an answer, default 150s
}

// RFC6311 holds the per-connection switches for RFC 6311 (IKEv2/IPsec
// high availability). Both syncs are on by default; they only take effect
// when the peer also advertises them.
type RFC6311 struct {
	MessageIDSync     bool // advertise IKEV2_MESSAGE_ID_SYNC_SUPPORTED
	ReplayCounterSync bool // advertise IPSEC_REPLAY_COUNTER_SYNC_SUPPORTED
	// OutboundJump is how far a node taking over advances each Child
	// SA's outbound ESP sequence number. 0 means auto: estimated from the
	// traffic rate, else 2^30 and an early rekey.
	OutboundJump uint64
	// Margin is added to the last known send message ID (plus the window)
	// when computing M1 for a sync request. Default 16.
	Margin uint32
}

// Child SA modes and start actions, as spelled in the configuration.
const (
	ModeTunnel = "tunnel"

	StartNone  = "none"  // wait for the peer
	StartTrap  = "trap"  // negotiate when matching traffic appears
	StartStart = "start" // negotiate when the daemon starts
)

// Child is a Child SA template.
type Child struct {
	Name        string
	LocalTS     []TrafficSelector // default: dynamic
	RemoteTS    []TrafficSelector // default: dynamic
	ESP         []Proposal        // default DefaultESPProposals
	Mode        string            // ModeTunnel
	StartAction string            // StartNone (default), StartTrap or StartStart
	Rekey       Lifetime          // soft limits: rekey when reached; time default 1h
	Life        Lifetime          // hard limits: delete when reached; default soft + 10%
}

// Lifetime is a set of limits; a zero field has no limit.
type Lifetime struct {
	Time    time.Duration
	Bytes   uint64
	Packets uint64
}

// TrafficSelector is one entry of a TSi or TSr list (RFC 7296 §3.13.1).
type TrafficSelector struct {
	// Dynamic stands for the address the SA ends up using: the IKE
	// address, or on the remote side of a pool connection the virtual IP.
	Dynamic  bool
	From, To netip.Addr // inclusive; invalid when Dynamic
	Proto    uint8      // IP protocol; 0 for any
	PortFrom uint16
	PortTo   uint16 // 65535 with PortFrom 0 for any port
}

// Range returns the selector's address range; ok is false for dynamic.
func (ts TrafficSelector) Range() (r AddrRange, ok bool) {
	return AddrRange{ts.From, ts.To}, !ts.Dynamic
}

// Type returns the wire TS type for the selector's address family.
func (ts TrafficSelector) Type() wire.TSType {
	if ts.From.Is6() {
		return wire.TS_IPV6_ADDR_RANGE
	}
	return wire.TS_IPV4_ADDR_RANGE
}

// Cluster configures HA cluster membership (raft).
type Cluster struct {
	NodeID           string
	Peers            []Peer // every voter, this node included, in file order
	DataDir          string // raft log and snapshots
	KeyFile          string // cluster key sealing SA records, checked at load but not kept; "" only on a witness
	Interface        string // interface VIPs are added to; "" picks the one whose subnet holds the VIP
	TLS              TLSFiles
	HeartbeatTimeout time.Duration // raft heartbeat timeout, default 500ms
	ElectionTimeout  time.Duration // raft election timeout, default 1s
}

// Self returns this node's entry in Peers.
func (c *Cluster) Self() *Peer {
	for i := range c.Peers {
		if c.Peers[i].ID == c.NodeID {
			return &c.Peers[i]
		}
	}
	return nil
}

// Peer is one voting member of the cluster.
type Peer struct {
	ID      string
	Address string         // raft address, host:port
	Witness bool           // votes but runs no data plane and owns no VIPs
	VIPs    []netip.Prefix // virtual IPs this node owns, with their prefix length
}

// TLSFiles names the PEM files for raft's mutually authenticated TLS. All
// three have been read and checked; the key matches the certificate.
type TLSFiles struct {
	CAFile   string
	CertFile string
	KeyFile  string
}

// Summary describes the configuration in one line for `hike config check`,
// e.g. "2 connections (road-warriors, branch), 1 pool, data plane auto,
// cluster node node1 of 3". It never includes secrets.
func (c *Config) Summary() string {
	var b strings.Builder
	b.WriteString(plural(len(c.Connections), "connection"))
	if len(c.Connections) > 0 {
		b.WriteString(" (")
		for i, conn := range c.Connections {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(conn.Name)
		}
		b.WriteByte(')')
	}
	b.WriteString(", ")
	b.WriteString(plural(len(c.Pools), "pool"))
	b.WriteString(", data plane ")
	b.WriteString(c.Dataplane.Kind)
	if c.State != nil {
		b.WriteString(", persistent state")
	}
	if c.Cluster != nil {
		fmt.Fprintf(&b, ", cluster node %s of %d", c.Cluster.NodeID, len(c.Cluster.Peers))
		if self := c.Cluster.Self(); self != nil && self.Witness {
			b.WriteString(" (witness)")
		}
	}
	return b.String()
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}
