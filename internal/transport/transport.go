package transport

import (
	"errors"
	"net/netip"
)

// Well-known ports (RFC 7296 §2, RFC 3948 §2).
const (
	PortIKE  = 500
	PortNATT = 4500
)

// DefaultBatchSize is how many datagrams one recvmmsg or sendmmsg moves when
// ListenConfig.BatchSize is zero. With BufferSize buffers it pins 1 MiB per
// socket while Serve runs.
const DefaultBatchSize = 64

// maxBatchSize is the kernel's limit on messages per recvmmsg/sendmmsg
// (UIO_MAXIOV).
const maxBatchSize = 1024

var (
	// ErrNotEncap is returned when ESP or a keepalive is to be sent on a
	// socket that is not the NAT-T port: ESP is never UDP-encapsulated on
	// port 500.
	ErrNotEncap = errors.New("transport: ESP and keepalives are sent only on the NAT-T port")
	// ErrAddressFamily is returned when a local or remote address does not
	// belong to the socket's address family.
	ErrAddressFamily = errors.New("transport: address family does not match the socket")
	// ErrKind is returned for a Datagram whose Kind cannot be sent.
	ErrKind = errors.New("transport: datagram kind cannot be sent")
)

// ListenConfig describes one UDP socket.
type ListenConfig struct {
	// Addr is the address and port to bind. An IPv4 address opens an IPv4
	// socket and an IPv6 address an IPv6-only socket; the unspecified
	// address (0.0.0.0 or ::) receives for every local address, which is
	// what a node whose VIPs come and go wants. Port 0 picks a free port.
	Addr netip.AddrPort
	// Encap marks the NAT-T socket (normally port 4500): IKE carries the
	// non-ESP marker, ESP-in-UDP and keepalives are recognised. It is a
	// setting, not derived from the port, so that tests may use port 0.
	Encap bool
	// BatchSize is the number of datagrams per receive or send system call.
	// Zero means DefaultBatchSize; 1 disables batching.
	BatchSize int
	// FreeBind allows binding a specific address that is not (yet) local
	// (IP_FREEBIND), such as a VIP this node is about to take over.
	FreeBind bool
	// ReuseAddr sets SO_REUSEADDR, which a socket on one address needs to
	// share its port with a wildcard socket (both must set it). It also
	// lets a second process bind the very same address and port and take
	// the traffic, so it is off unless sockets share a port.
	ReuseAddr bool
	// MaxRetained bounds the buffers handlers hold through Packet.Retain;
	// zero means DefaultMaxRetained.
	MaxRetained int
	// ReadBuffer and WriteBuffer set SO_RCVBUF and SO_SNDBUF when non-zero,
	// beyond the sysctl caps if the process has CAP_NET_ADMIN.
	ReadBuffer, WriteBuffer int
}

// StandardConfigs returns the four sockets a concentrator listens on: the
// IKE and NAT-T ports on the IPv4 and IPv6 wildcard addresses.
func StandardConfigs() []ListenConfig {
	return []ListenConfig{
		{Addr: netip.AddrPortFrom(netip.IPv4Unspecified(), PortIKE)},
		{Addr: netip.AddrPortFrom(netip.IPv4Unspecified(), PortNATT), Encap: true},
		{Addr: netip.AddrPortFrom(netip.IPv6Unspecified(), PortIKE)},
		{Addr: netip.AddrPortFrom(netip.IPv6Unspecified(), PortNATT), Encap: true},
	}
}

// Packet is one IKE message or ESP-in-UDP packet handed to a Handler.
type Packet struct {
	Kind Kind
	// Data is the IKE message without the non-ESP marker, or the ESP packet
	// from the SPI on. It aliases a receive buffer: see Retain.
	Data []byte
	// Local is the address the datagram was sent to. Replies must use it as
	// their source address so that they leave from the VIP the peer
	// addressed.
	Local netip.Addr
	// Remote is the peer's address and port as seen here, after any NAT.
	Remote netip.AddrPort
	// IfIndex is the interface the datagram arrived on.
	IfIndex int
	// Conn is the socket it arrived on; replies go out on the same one.
	Conn Conn

	buf *Buffer
	lim *retainLimit
}

// Retain transfers the buffer behind Data to the caller, so that Data stays
// valid after the handler returns, until the returned Buffer is released.
// The Packet value itself is reused by the receive loop: copy what is needed.
// Calling Retain again returns nil.
//
// A socket lets its handlers hold at most ListenConfig.MaxRetained buffers;
// beyond that Retain waits for one to be released, which stops the receive
// loop. Handlers must therefore release buffers from other goroutines (the
// workers they queue packets to), never wait for the receive loop.
func (p *Packet) Retain() *Buffer {
	b := p.buf
	if b == nil {
		return nil
	}
	p.buf = nil
	if p.lim != nil {
		p.lim.acquire(b)
	}
	return b
}

// Handler receives what a socket's receive loop classified. Both methods run
// on the receive goroutine: they must not block, and p and its Data are
// valid only until they return unless Retain is called.
type Handler interface {
	HandleIKE(p *Packet)
	HandleESP(p *Packet)
}

// BatchEnder is implemented by a Handler that wants to know when the
// packets read by one receive call have all been delivered, for example to
// hand queued work to its workers once per batch rather than once per
// packet. EndBatch runs on the receive goroutine after every batch that
// delivered at least one packet.
type BatchEnder interface {
	EndBatch()
}

// Datagram is one message to send.
type Datagram struct {
	// Kind is KindIKE, KindESP or KindKeepalive (Data is then ignored).
	Kind Kind
	// Local is the source address. The zero Addr or the unspecified
	// address lets the kernel choose; a reply sets the request's
	// Packet.Local.
	Local  netip.Addr
	Remote netip.AddrPort
	// Data is the IKE message without marker, or the ESP packet.
	Data []byte
}

// Conn is what the IKE and ESP layers need from a socket: a way to answer.
// *Socket implements it; tests may use a fake.
type Conn interface {
	// SendIKE sends an IKE message, adding the non-ESP marker on the NAT-T
	// port.
	SendIKE(local netip.Addr, remote netip.AddrPort, msg []byte) error
	// SendESP sends a UDP-encapsulated ESP packet (NAT-T port only).
	SendESP(local netip.Addr, remote netip.AddrPort, pkt []byte) error
	// SendKeepalive sends a NAT keepalive (NAT-T port only).
	SendKeepalive(local netip.Addr, remote netip.AddrPort) error
	// Send sends datagrams, batched where the kernel allows, and reports
	// how many were sent. A datagram that fails is skipped and the first
	// error is returned after the others have been tried.
	Send(ds []Datagram) (int, error)
	// LocalAddr is the bound address and port.
	LocalAddr() netip.AddrPort
	// Encap reports whether this is the NAT-T socket.
	Encap() bool
}
