// Package daemon assembles `hike serve`: it turns a configuration into
// sockets, a data plane, the IKE engine and the control socket, runs them,
// and takes them down again. It holds no protocol logic of its own.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"github.com/hike-vpn/hike/internal/config"
	"github.com/hike-vpn/hike/internal/dataplane"
	"github.com/hike-vpn/hike/internal/dataplane/xfrm"
	"github.com/hike-vpn/hike/internal/ike"
	"github.com/hike-vpn/hike/internal/transport"
)

// Options adjust a daemon beyond its configuration file.
type Options struct {
	Logger *slog.Logger
	// Dataplane, if set, is used instead of the configured one: tests run
	// the engine against an in-memory plane, the load generator against
	// none (NoDataplane).
	Dataplane   dataplane.Backend
	NoDataplane bool
}

// Daemon is one running hike node.
type Daemon struct {
	cfg     *config.Config
	log     *slog.Logger
	engine  *ike.Engine
	dp      dataplane.Backend
	sockets []*transport.Socket
	esp     espHandler
	member  *member // nil outside a cluster
	wg      sync.WaitGroup
}

// espHandler is the part of a userspace data plane that takes ESP-in-UDP
// packets from the NAT-T socket, and is told when a receive batch ends.
type espHandler interface {
	HandleESP(local netip.Addr, remote netip.AddrPort, pkt []byte)
	EndBatch()
}

// New builds a daemon from cfg without starting anything that talks to the
// network.
func New(cfg *config.Config, opts Options) (*Daemon, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	d := &Daemon{cfg: cfg, log: log}
	cs, err := conns(cfg)
	if err != nil {
		return nil, err
	}
	ec := ike.Config{
		Conns:           cs,
		Send:            d.sendIKE,
		Logger:          log,
		CookieThreshold: cfg.Limits.HalfOpenCookieThreshold,
		Keepalive:       d.sendKeepalive,
	}
	if c := cfg.Cluster; c != nil {
		// Members restore each other's Child SAs beside their own: each
		// allocates inbound SPIs in its own slot of the SPI space.
		ec.SPISlots = len(c.Peers)
		for i, p := range c.Peers {
			if p.ID == c.NodeID {
				ec.SPISlot = i
			}
		}
	}
	d.engine = ike.New(ec)
	if c := cfg.Cluster; c != nil {
		if self := c.Self(); self != nil && self.Witness {
			return nil, fmt.Errorf("node %q is a witness in the configuration: run it with `hike witness`", c.NodeID)
		}
		if d.member, err = newMember(d); err != nil {
			return nil, err
		}
	}
	switch {
	case opts.NoDataplane:
	case opts.Dataplane != nil:
		d.dp = opts.Dataplane
	default:
		if d.dp, err = d.openDataplane(); err != nil {
			return nil, err
		}
	}
	if d.dp != nil {
		d.engine.SetDataplane(d.dp)
		if h, ok := d.dp.(espHandler); ok {
			d.esp = h
		}
	}
	return d, nil
}

// openDataplane starts the configured data plane. An explicit xfrm on a
// kernel without ESP fails here, before any socket is opened.
func (d *Daemon) openDataplane() (dataplane.Backend, error) {
	kind, err := dataplane.ParseKind(d.cfg.Dataplane.Kind)
	if err != nil {
		return nil, err
	}
	sel, err := dataplane.Select(kind, xfrm.Probe)
	if err != nil {
		return nil, err
	}
	d.log.Info("data plane selected", "kind", sel.Kind, "reason", sel.Reason)
	switch sel.Kind {
	case dataplane.KindXFRM:
		b, err := xfrm.Open(xfrm.Options{})
		if err != nil {
			return nil, err
		}
		// IKE must not travel inside the Child SAs it negotiates when
		// their selectors cover the gateways' own addresses.
		if err := b.BypassPorts(d.cfg.Listen.Port, d.cfg.Listen.NATTPort); err != nil {
			b.Close()
			return nil, err
		}
		return b, nil
	case dataplane.KindUserspace:
		return openUserspace(d)
	}
	return nil, fmt.Errorf("unknown data plane %q", sel.Kind)
}

// Engine returns the IKE engine (for the control socket).
func (d *Daemon) Engine() *ike.Engine { return d.engine }

// Run opens the sockets, starts the engine and serves until ctx ends.
func (d *Daemon) Run(ctx context.Context) error {
	ctl, err := d.startControl()
	if err != nil {
		return err
	}
	defer ctl.stop()
	var cfgs []transport.ListenConfig
	// The kernel's default receive buffer (about 200 KiB) overflows when
	// thousands of clients' DPD timers fire in the same tick.
	const sockBuf = 8 << 20
	for _, a := range d.cfg.Listen.Addrs {
		cfgs = append(cfgs,
			transport.ListenConfig{Addr: netip.AddrPortFrom(a, d.cfg.Listen.Port), ReuseAddr: true,
				ReadBuffer: sockBuf, WriteBuffer: sockBuf},
			transport.ListenConfig{Addr: netip.AddrPortFrom(a, d.cfg.Listen.NATTPort), Encap: true, ReuseAddr: true,
				ReadBuffer: sockBuf, WriteBuffer: sockBuf})
	}
	socks, err := transport.ListenAll(cfgs)
	if err != nil {
		return err
	}
	d.sockets = socks
	ctl.setSockets(socks)
	d.engine.Start()
	for _, s := range socks {
		d.wg.Add(1)
		go func(s *transport.Socket) {
			defer d.wg.Done()
			if err := s.Serve(d); err != nil {
				d.log.Error("socket failed", "addr", s.LocalAddr(), "err", err)
			}
		}(s)
		d.log.Info("listening", "addr", s.LocalAddr(), "natt", s.Encap())
	}
	if d.member != nil {
		// Raft holds the records of a cluster member, newer than any file.
		if d.cfg.State != nil {
			d.log.Info("cluster member: SAs come from the cluster, not from the state file", "file", d.cfg.State.Path)
		}
		if err := d.member.start(ctx); err != nil {
			ctl.stop()
			d.shutdown()
			return err
		}
	} else {
		if err := d.restore(); err != nil {
			d.log.Error("cannot restore state", "err", err)
		}
		go d.persist(ctx)
	}
	if d.member == nil {
		d.startConnections(func(*config.Connection) bool { return true })
	}
	<-ctx.Done()
	ctl.stop()
	d.shutdown()
	return nil
}

func (d *Daemon) shutdown() {
	if d.member != nil {
		d.member.stop()
	}
	for _, s := range d.sockets {
		s.Close()
	}
	d.wg.Wait()
	d.engine.Close()
	if d.cfg.State != nil && d.member == nil {
		// An orderly stop: the counters in this last record are exact.
		if err := d.save(true); err != nil {
			d.log.Error("cannot save state", "err", err)
		}
	}
	if d.dp != nil {
		if c, ok := d.dp.(interface{ Close() error }); ok {
			c.Close()
		}
	}
}

// startConnections initiates the connections that which selects and
// whose children say start_action: start.
func (d *Daemon) startConnections(which func(*config.Connection) bool) {
	for _, c := range d.cfg.Connections {
		if !which(c) {
			continue
		}
		start := false
		for _, ch := range c.Children {
			start = start || ch.StartAction == config.StartStart
		}
		// A restored SA already serves the connection; a second one would
		// only replace it.
		if !start || d.engine.HasSA(c.Name) {
			continue
		}
		if err := d.Initiate(c.Name, nil); err != nil {
			d.log.Error("cannot start connection", "conn", c.Name, "err", err)
		}
	}
}

// Initiate starts an IKE SA for a connection from the address the kernel
// would use to reach its peer.
func (d *Daemon) Initiate(name string, done func(ike.SAInfo, error)) error {
	c := d.cfg.Connection(name)
	if c == nil {
		return fmt.Errorf("no connection %q", name)
	}
	if len(c.Remote.Addrs) == 0 || !c.Remote.Addrs[0].IsSingleIP() {
		return fmt.Errorf("connection %q has no single remote address", name)
	}
	remote := netip.AddrPortFrom(c.Remote.Addrs[0].Addr(), d.cfg.Listen.Port)
	var local netip.Addr
	for _, a := range c.Local.Addrs {
		if a.Is4() == remote.Addr().Unmap().Is4() {
			local = a
			break
		}
	}
	if !local.IsValid() {
		var err error
		if local, err = sourceFor(remote); err != nil {
			return err
		}
	}
	return d.engine.Initiate(name, netip.AddrPortFrom(local, d.cfg.Listen.Port), done)
}

// sourceFor asks the kernel which source address it would use towards
// remote: connecting a UDP socket routes without sending anything.
func sourceFor(remote netip.AddrPort) (netip.Addr, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(remote))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("no route to %v: %w", remote, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}

// HandleIKE implements transport.Handler.
func (d *Daemon) HandleIKE(p *transport.Packet) {
	local := netip.AddrPortFrom(p.Local, p.Conn.LocalAddr().Port())
	d.engine.HandleIKE(local, p.Remote, p.Data)
}

// HandleESP implements transport.Handler.
func (d *Daemon) HandleESP(p *transport.Packet) {
	if d.esp != nil {
		d.esp.HandleESP(p.Local, p.Remote, p.Data)
	}
}

// EndBatch implements transport.BatchEnder: the data plane flushes the
// packets it coalesced from the batch.
func (d *Daemon) EndBatch() {
	if d.esp != nil {
		d.esp.EndBatch()
	}
}

var errNoSocket = errors.New("no socket for this address family and port")

// sendIKE is the engine's way out: the socket of the right family and port.
func (d *Daemon) sendIKE(local, remote netip.AddrPort, msg []byte) error {
	s := d.socket(remote.Addr().Unmap().Is4(), local.Port() == d.cfg.Listen.NATTPort)
	if s == nil {
		return errNoSocket
	}
	src := local.Addr()
	if src.IsUnspecified() {
		src = netip.Addr{}
	}
	return s.SendIKE(src, netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port()), msg)
}

func (d *Daemon) sendKeepalive(local, remote netip.AddrPort) error {
	s := d.socket(remote.Addr().Unmap().Is4(), true)
	if s == nil {
		return errNoSocket
	}
	return s.SendKeepalive(local.Addr(), netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port()))
}

func (d *Daemon) sendESP(local netip.Addr, remote netip.AddrPort, pkt []byte) error {
	s := d.socket(remote.Addr().Unmap().Is4(), true)
	if s == nil {
		return errNoSocket
	}
	return s.SendESP(local, remote, pkt)
}

func (d *Daemon) socket(v4, natt bool) *transport.Socket {
	for _, s := range d.sockets {
		a := s.LocalAddr()
		if a.Addr().Unmap().Is4() == v4 && s.Encap() == natt {
			return s
		}
	}
	return nil
}
