package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Socket is one UDP socket on the IKE or NAT-T port. Send methods are safe
// for concurrent use; Serve runs on one goroutine at a time.
type Socket struct {
	conn  *net.UDPConn
	rc    syscall.RawConn
	local netip.AddrPort
	encap bool
	v6    bool
	batch int

	// localAddrs restricts which destination addresses are accepted; nil
	// accepts all. Swapped whole, read per datagram without locking.
	localAddrs atomic.Pointer[[]netip.Addr]

	// noRecvBatch and noSendBatch latch once the batch system calls turned
	// out to be unavailable.
	noRecvBatch atomic.Bool
	noSendBatch atomic.Bool
	serving     atomic.Bool

	stats     counters
	txs       sync.Pool // *txState
	lim       retainLimit
	closeOnce sync.Once
}

var _ Conn = (*Socket)(nil)

// Listen opens the socket described by cfg.
func Listen(cfg ListenConfig) (*Socket, error) {
	if !cfg.Addr.IsValid() {
		return nil, errors.New("transport: listen address is not set")
	}
	addr := netip.AddrPortFrom(cfg.Addr.Addr().Unmap(), cfg.Addr.Port())
	v6 := addr.Addr().Is6()
	batch := cfg.BatchSize
	switch {
	case batch <= 0:
		batch = DefaultBatchSize
	case batch > maxBatchSize:
		batch = maxBatchSize
	}
	network := "udp4"
	if v6 {
		network = "udp6" // the Go runtime sets IPV6_V6ONLY for udp6
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = setSockopts(int(fd), v6, &cfg) })
		if err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), network, addr.String())
	if err != nil {
		return nil, err
	}
	conn := pc.(*net.UDPConn)
	rc, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, err
	}
	la := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	s := &Socket{
		conn:  conn,
		rc:    rc,
		local: netip.AddrPortFrom(la.Addr().Unmap(), la.Port()),
		encap: cfg.Encap,
		v6:    v6,
		batch: batch,
	}
	maxRetained := cfg.MaxRetained
	if maxRetained <= 0 {
		maxRetained = DefaultMaxRetained
	}
	s.lim = retainLimit{
		held:   make(chan struct{}, maxRetained),
		closed: make(chan struct{}),
		waits:  &s.stats[cRetainWaits],
	}
	s.txs.New = func() any { return newTxState(s) }
	return s, nil
}

func setSockopts(fd int, v6 bool, cfg *ListenConfig) error {
	// UDP has no TIME_WAIT, so a restarted daemon rebinds without
	// SO_REUSEADDR; leaving it off makes a second daemon on the same port
	// fail to start instead of stealing datagrams.
	if cfg.ReuseAddr {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return fmt.Errorf("transport: SO_REUSEADDR: %w", err)
		}
	}
	if v6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1); err != nil {
			return fmt.Errorf("transport: IPV6_RECVPKTINFO: %w", err)
		}
	} else {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_PKTINFO, 1); err != nil {
			return fmt.Errorf("transport: IP_PKTINFO: %w", err)
		}
	}
	// The kernel's count of datagrams it dropped for this socket, which
	// is the only sign of a receive buffer too small for a storm.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1); err != nil {
		return fmt.Errorf("transport: SO_RXQ_OVFL: %w", err)
	}
	if cfg.FreeBind {
		// IP_FREEBIND governs IPv6 binds as well.
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_FREEBIND, 1); err != nil {
			return fmt.Errorf("transport: IP_FREEBIND: %w", err)
		}
	}
	if cfg.ReadBuffer > 0 {
		if err := setBufSize(fd, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, cfg.ReadBuffer); err != nil {
			return fmt.Errorf("transport: SO_RCVBUF: %w", err)
		}
	}
	if cfg.WriteBuffer > 0 {
		if err := setBufSize(fd, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, cfg.WriteBuffer); err != nil {
			return fmt.Errorf("transport: SO_SNDBUF: %w", err)
		}
	}
	return nil
}

// setBufSize asks for a socket buffer size past the net.core.[rw]mem_max cap
// first, which the daemon may do with CAP_NET_ADMIN: the default cap is far
// too small to ride out a connection storm. Without the capability it takes
// what the cap allows.
func setBufSize(fd, force, capped, size int) error {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, size) == nil {
		return nil
	}
	return unix.SetsockoptInt(fd, unix.SOL_SOCKET, capped, size)
}

// Sockets is a node's set of sockets.
type Sockets []*Socket

// ListenAll opens one socket per config, or none: on error the sockets
// already opened are closed.
func ListenAll(cfgs []ListenConfig) (Sockets, error) {
	socks := make(Sockets, 0, len(cfgs))
	for _, cfg := range cfgs {
		s, err := Listen(cfg)
		if err != nil {
			socks.Close()
			return nil, fmt.Errorf("transport: listen on %v: %w", cfg.Addr, err)
		}
		socks = append(socks, s)
	}
	return socks, nil
}

// Lookup returns the socket to send from with source address local on the
// NAT-T port (encap) or the IKE port: one bound to local itself, else one
// bound to the wildcard address of local's family, else nil. A node that
// takes over an SA from a replicated record, which names addresses but no
// socket, finds its socket this way.
func (ss Sockets) Lookup(local netip.Addr, encap bool) *Socket {
	local = local.Unmap()
	var wild *Socket
	for _, s := range ss {
		a := s.local.Addr()
		if s.encap != encap || a.Is4() != local.Is4() {
			continue
		}
		if a == local {
			return s
		}
		if a.IsUnspecified() && wild == nil {
			wild = s
		}
	}
	return wild
}

// Close closes every socket and returns the first error.
func (ss Sockets) Close() error {
	var first error
	for _, s := range ss {
		if err := s.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// LocalAddr returns the bound address and port.
func (s *Socket) LocalAddr() netip.AddrPort { return s.local }

// Encap reports whether this is the NAT-T socket.
func (s *Socket) Encap() bool { return s.encap }

// Stats returns a snapshot of the socket's counters.
func (s *Socket) Stats() Stats { return s.stats.snapshot() }

// Close closes the socket; Serve then returns nil.
func (s *Socket) Close() error {
	s.closeOnce.Do(func() { close(s.lim.closed) })
	return s.conn.Close()
}

// SetLocalAddrs restricts the socket to datagrams sent to one of addrs,
// typically the VIPs this node owns; others are counted as DropNotLocal. A
// nil slice accepts every address and an empty one none (a node that owns no
// VIP). It may be called at any time; the slice is copied.
func (s *Socket) SetLocalAddrs(addrs []netip.Addr) {
	if addrs == nil {
		s.localAddrs.Store(nil)
		return
	}
	c := make([]netip.Addr, len(addrs))
	for i, a := range addrs {
		c[i] = a.Unmap()
	}
	s.localAddrs.Store(&c)
}

// localAllowed is a linear scan: a node owns a handful of VIPs, and a scan
// of a short slice beats hashing.
func (s *Socket) localAllowed(a netip.Addr) bool {
	p := s.localAddrs.Load()
	if p == nil {
		return true
	}
	for _, l := range *p {
		if l == a {
			return true
		}
	}
	return false
}

// SendIKE sends one IKE message, adding the non-ESP marker on the NAT-T
// port.
func (s *Socket) SendIKE(local netip.Addr, remote netip.AddrPort, msg []byte) error {
	d := [1]Datagram{{Kind: KindIKE, Local: local, Remote: remote, Data: msg}}
	_, err := s.Send(d[:])
	return err
}

// SendESP sends one UDP-encapsulated ESP packet.
func (s *Socket) SendESP(local netip.Addr, remote netip.AddrPort, pkt []byte) error {
	d := [1]Datagram{{Kind: KindESP, Local: local, Remote: remote, Data: pkt}}
	_, err := s.Send(d[:])
	return err
}

// SendKeepalive sends one NAT keepalive (RFC 3948 §2.3).
func (s *Socket) SendKeepalive(local netip.Addr, remote netip.AddrPort) error {
	d := [1]Datagram{{Kind: KindKeepalive, Local: local, Remote: remote}}
	_, err := s.Send(d[:])
	return err
}
