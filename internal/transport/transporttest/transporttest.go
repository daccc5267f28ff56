// Package transporttest is an in-memory network for testing the layers
// above transport without sockets: Conns exchange datagrams by address,
// with the non-ESP marker, keepalives and classification handled exactly as
// on real sockets (both sides use transport.Classify), and every Packet
// reports the address it was sent to and the address it came from.
//
// There is no routing table: a Conn bound to a wildcard address must name
// the source address of what it sends, as a reply naming Packet.Local does.
// Each delivered Packet's Data is a fresh slice that is never reused, so
// Packet.Retain returns nil and there is nothing to release.
package transporttest

import (
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/hike-vpn/hike/internal/transport"
)

// queueLen bounds each Conn's receive queue, as a socket buffer would: a
// datagram arriving at a full queue is lost.
const queueLen = 4096

var (
	// ErrNoSource is returned when a Conn bound to a wildcard address sends
	// without a source address.
	ErrNoSource = errors.New("transporttest: no source address")
	// ErrClosed is returned by operations on a closed Conn.
	ErrClosed = errors.New("transporttest: conn closed")
)

// Filter sees every datagram (its on-the-wire UDP payload) before delivery
// and returns false to lose it.
type Filter func(from, to netip.AddrPort, payload []byte) bool

// Network connects Conns.
type Network struct {
	mu       sync.Mutex
	conns    map[netip.AddrPort]*Conn
	nextPort uint16
	filter   atomic.Pointer[Filter]
}

// NewNetwork returns an empty network.
func NewNetwork() *Network {
	return &Network{conns: make(map[netip.AddrPort]*Conn), nextPort: 49152}
}

// SetFilter installs f (nil removes it), for loss and reordering-free
// mangling in tests of retransmission and error handling.
func (n *Network) SetFilter(f Filter) {
	if f == nil {
		n.filter.Store(nil)
		return
	}
	n.filter.Store(&f)
}

// Listen binds a Conn to addr; port 0 picks a free port. encap marks it as
// the NAT-T port, as transport.ListenConfig.Encap does.
func (n *Network) Listen(addr netip.AddrPort, encap bool) (*Conn, error) {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	if !addr.Addr().IsValid() {
		return nil, errors.New("transporttest: listen address is not set")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if addr.Port() == 0 {
		for {
			n.nextPort++
			if n.nextPort == 0 {
				n.nextPort = 49152
			}
			cand := netip.AddrPortFrom(addr.Addr(), n.nextPort)
			if n.conns[cand] == nil {
				addr = cand
				break
			}
		}
	}
	if n.conns[addr] != nil {
		return nil, errors.New("transporttest: address in use: " + addr.String())
	}
	c := &Conn{
		net:    n,
		local:  addr,
		encap:  encap,
		queue:  make(chan datagram, queueLen),
		closed: make(chan struct{}),
	}
	n.conns[addr] = c
	return c, nil
}

// route finds the Conn for to: one bound to exactly that address, else one
// bound to the wildcard address of its family on that port.
func (n *Network) route(to netip.AddrPort) *Conn {
	n.mu.Lock()
	defer n.mu.Unlock()
	if c := n.conns[to]; c != nil {
		return c
	}
	wild := netip.IPv4Unspecified()
	if to.Addr().Is6() {
		wild = netip.IPv6Unspecified()
	}
	return n.conns[netip.AddrPortFrom(wild, to.Port())]
}

type datagram struct {
	from, to netip.AddrPort
	payload  []byte
}

// Stats counts what a Conn did.
type Stats struct {
	RxIKE, RxESP, Keepalives, DropRunt uint64
	// DropQueueFull counts datagrams lost because the Conn's queue was
	// full, as the kernel drops them when a socket buffer is.
	DropQueueFull uint64
	// Lost counts datagrams this Conn sent that were filtered out or had
	// no Conn to go to.
	Lost        uint64
	TxDatagrams uint64
}

// Conn is an in-memory transport.Conn.
type Conn struct {
	net       *Network
	local     netip.AddrPort
	encap     bool
	queue     chan datagram
	closed    chan struct{}
	closeOnce sync.Once
	serving   atomic.Bool

	rxIKE, rxESP, keepalives, dropRunt, dropQueueFull, lost, tx atomic.Uint64
}

var _ transport.Conn = (*Conn)(nil)

// LocalAddr returns the bound address and port.
func (c *Conn) LocalAddr() netip.AddrPort { return c.local }

// Encap reports whether this is a NAT-T Conn.
func (c *Conn) Encap() bool { return c.encap }

// Stats returns the Conn's counters.
func (c *Conn) Stats() Stats {
	return Stats{
		RxIKE: c.rxIKE.Load(), RxESP: c.rxESP.Load(), Keepalives: c.keepalives.Load(),
		DropRunt: c.dropRunt.Load(), DropQueueFull: c.dropQueueFull.Load(),
		Lost: c.lost.Load(), TxDatagrams: c.tx.Load(),
	}
}

// Close unbinds the Conn; Serve returns nil.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.net.mu.Lock()
		if c.net.conns[c.local] == c {
			delete(c.net.conns, c.local)
		}
		c.net.mu.Unlock()
		close(c.closed)
	})
	return nil
}

// Serve delivers received datagrams to h, one at a time on the calling
// goroutine, until Close.
func (c *Conn) Serve(h transport.Handler) error {
	if !c.serving.CompareAndSwap(false, true) {
		return errors.New("transporttest: conn is already serving")
	}
	defer c.serving.Store(false)
	ender, _ := h.(transport.BatchEnder)
	for {
		select {
		case <-c.closed:
			return nil
		case d := <-c.queue:
			// Every datagram is a batch of its own.
			if c.deliver(h, d) && ender != nil {
				ender.EndBatch()
			}
		}
	}
}

// deliver reports whether the handler got a packet.
func (c *Conn) deliver(h transport.Handler, d datagram) bool {
	kind, data := transport.Classify(d.payload, c.encap)
	p := &transport.Packet{Kind: kind, Data: data, Local: d.to.Addr(), Remote: d.from, Conn: c}
	switch kind {
	case transport.KindIKE:
		c.rxIKE.Add(1)
		h.HandleIKE(p)
	case transport.KindESP:
		c.rxESP.Add(1)
		h.HandleESP(p)
	case transport.KindKeepalive:
		c.keepalives.Add(1)
		return false
	default:
		c.dropRunt.Add(1)
		return false
	}
	return true
}

// SendIKE implements transport.Conn.
func (c *Conn) SendIKE(local netip.Addr, remote netip.AddrPort, msg []byte) error {
	_, err := c.Send([]transport.Datagram{{Kind: transport.KindIKE, Local: local, Remote: remote, Data: msg}})
	return err
}

// SendESP implements transport.Conn.
func (c *Conn) SendESP(local netip.Addr, remote netip.AddrPort, pkt []byte) error {
	_, err := c.Send([]transport.Datagram{{Kind: transport.KindESP, Local: local, Remote: remote, Data: pkt}})
	return err
}

// SendKeepalive implements transport.Conn.
func (c *Conn) SendKeepalive(local netip.Addr, remote netip.AddrPort) error {
	_, err := c.Send([]transport.Datagram{{Kind: transport.KindKeepalive, Local: local, Remote: remote}})
	return err
}

// Send implements transport.Conn. Delivery is asynchronous, as on a real
// network, so a handler may reply from inside its callback.
func (c *Conn) Send(ds []transport.Datagram) (int, error) {
	select {
	case <-c.closed:
		return 0, ErrClosed
	default:
	}
	var firstErr error
	sent := 0
	for i := range ds {
		d := &ds[i]
		from, payload, err := c.wire(d)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		sent++
		c.tx.Add(1)
		to := netip.AddrPortFrom(d.Remote.Addr().Unmap(), d.Remote.Port())
		if f := c.net.filter.Load(); f != nil && !(*f)(from, to, payload) {
			c.lost.Add(1)
			continue
		}
		dst := c.net.route(to)
		if dst == nil {
			c.lost.Add(1)
			continue
		}
		select {
		case dst.queue <- datagram{from: from, to: to, payload: payload}:
		default:
			dst.dropQueueFull.Add(1)
		}
	}
	return sent, firstErr
}

// wire checks d as transport.Socket does and returns its source address and
// its UDP payload, in a fresh slice the receiver may keep.
func (c *Conn) wire(d *transport.Datagram) (netip.AddrPort, []byte, error) {
	src := d.Local.Unmap()
	if !src.IsValid() || src.IsUnspecified() {
		src = c.local.Addr()
	}
	if src.IsUnspecified() {
		return netip.AddrPort{}, nil, ErrNoSource
	}
	remote := d.Remote.Addr().Unmap()
	if !d.Remote.IsValid() || src.Is4() != c.local.Addr().Is4() || remote.Is4() != src.Is4() {
		return netip.AddrPort{}, nil, transport.ErrAddressFamily
	}
	var payload []byte
	switch d.Kind {
	case transport.KindIKE:
		if c.encap {
			payload = make([]byte, transport.NonESPMarkerLen, transport.NonESPMarkerLen+len(d.Data))
		}
		payload = append(payload, d.Data...)
	case transport.KindESP:
		if !c.encap {
			return netip.AddrPort{}, nil, transport.ErrNotEncap
		}
		payload = append([]byte(nil), d.Data...)
	case transport.KindKeepalive:
		if !c.encap {
			return netip.AddrPort{}, nil, transport.ErrNotEncap
		}
		payload = []byte{0xFF}
	default:
		return netip.AddrPort{}, nil, transport.ErrKind
	}
	return netip.AddrPortFrom(src, c.local.Port()), payload, nil
}
