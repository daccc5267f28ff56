package userspace

import (
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/hike-vpn/hike/internal/dataplane"
	"github.com/hike-vpn/hike/internal/esp"
	"github.com/hike-vpn/hike/internal/transport"
)

// Defaults for Config.
const (
	DefaultName = "hike0"
	// DefaultMTU is the largest inner packet whose ESP packet still fits a
	// 1500-octet path with the costliest combination hike negotiates:
	// outer IPv6 (40), UDP (8), SPI and sequence number (8), a CBC IV (16),
	// 1380 octets padded with the trailer to 1392, and a 32-octet
	// HMAC-SHA2-512-256 ICV: 1496 octets.
	DefaultMTU = 1380
	// eventBuffer is how many lifetime events wait for the daemon before
	// the backend reports EventLost instead.
	eventBuffer = 1024
)

// Device is the packet interface the backend reads outbound packets from
// and writes decrypted inbound packets to: one IP packet per call, without
// any prefix. A TUN device opened by New implements it; tests pass an
// in-memory device.
type Device interface {
	Read(p []byte) (int, error)
	Write(p []byte) (int, error)
	Close() error
}

// Config configures New.
type Config struct {
	// Name is the TUN device to create; "" means DefaultName.
	Name string
	// MTU of the TUN device; 0 means DefaultMTU.
	MTU int
	// Logger receives control-path messages; nil means slog.Default().
	Logger *slog.Logger
	// SendESP sends an ESP packet inside UDP (RFC 3948) from local to
	// remote; the daemon passes the NAT-T socket's SendESP. Required for
	// SAs with UDP encapsulation.
	SendESP func(local netip.Addr, remote netip.AddrPort, pkt []byte) error
	// SendESPBatch, if set, sends several UDP-encapsulated ESP packets in
	// one call and reports how many were sent; the daemon passes the NAT-T
	// socket's Send, which uses sendmmsg. The TUN reader then takes up to
	// 32 packets per wake-up and sends their ESP packets together.
	SendESPBatch func(ds []transport.Datagram) (int, error)
	// RawESP opens raw sockets for IP protocol 50, to send and receive ESP
	// without UDP encapsulation. Without it, adding an SA without
	// encapsulation fails.
	RawESP bool
	// CoalesceInbound lets HandleESP hold decrypted TCP segments and hand
	// consecutive ones of a connection to the kernel as one super-packet,
	// which saves most of the receiving TCP stack's per-packet work. The
	// caller must then call EndBatch after every batch of HandleESP calls
	// (the daemon's transport.BatchEnder), or held segments wait for the
	// next batch. It needs the TUN device New creates.
	CoalesceInbound bool
	// Device, if set, is used instead of creating a TUN device. The backend
	// then manages no routes, and Close closes the Device.
	Device Device
}

// Backend is the userspace ESP data plane. It implements dataplane.Backend.
//
// Concurrency: one goroutine reads the device (in bursts, see the package
// documentation) and seals and sends every outbound packet itself; inbound packets are opened and written to the
// device on the goroutine that calls HandleESP (the socket's receive loop,
// or the backend's own raw-socket readers). Packet paths take a read lock
// on the SA and policy tables for the lookups only, and each SA's mutex for
// Seal or Open (esp.SA allows one of each at a time; the mutex matters only
// when two receive loops carry the same SA, for example after the peer
// moved from UDP to raw ESP). The control-plane methods take the write lock
// for table changes only; route changes run under their own lock so that
// netlink round trips never stall packets.
type Backend struct {
	log       *slog.Logger
	sendESP   func(local netip.Addr, remote netip.AddrPort, pkt []byte) error
	sendBatch func(ds []transport.Datagram) (int, error)
	dev       Device
	tun       *tunDevice // dev, if the backend created the TUN device itself
	router    *router    // nil without a kernel TUN device
	raw       *rawESP    // nil without Config.RawESP
	gro       *coalescer // nil without Config.CoalesceInbound

	mu       sync.RWMutex
	byID     map[dataplane.SAID]*saState
	inbound  map[uint32]*saState   // by SPI: inbound SPIs are ours and unique
	outbound map[uint32][]*saState // by ReqID, oldest first; the newest is used
	policies map[uint32]*policy    // by ReqID
	table    selectorTable

	routeMu sync.Mutex // serialises route changes, taken before mu
	routes  map[netip.Prefix]bool

	evMu     sync.Mutex
	events   chan dataplane.Event
	evLost   bool
	evClosed bool

	stats counters

	closing   atomic.Bool
	closeOnce sync.Once
	wg        sync.WaitGroup
}

var _ dataplane.Backend = (*Backend)(nil)

// path is where an outbound SA's packets go. It is replaced as a whole by
// UpdateSA so that the sender never sees half an update.
type path struct {
	local  netip.Addr
	remote netip.AddrPort // port 0 for raw ESP
	udp    bool
}

type saState struct {
	id    dataplane.SAID
	reqID uint32
	dir   esp.Direction
	sa    *esp.SA
	mu    sync.Mutex // one Seal or one Open at a time, as esp.SA requires
	path  atomic.Pointer[path]
	life  atomic.Pointer[dataplane.Lifetime] // nil: no volume limits
	soft  atomic.Bool                        // soft event sent
	hard  atomic.Bool                        // hard event sent, SA removed
}

// New creates the TUN device (or adopts Config.Device), opens the raw ESP
// sockets if asked and starts reading outbound packets. Devices and sockets
// belong to the network namespace of the calling thread.
func New(cfg Config) (*Backend, error) {
	b := &Backend{
		log:       cfg.Logger,
		sendESP:   cfg.SendESP,
		sendBatch: cfg.SendESPBatch,
		byID:      make(map[dataplane.SAID]*saState),
		inbound:   make(map[uint32]*saState),
		outbound:  make(map[uint32][]*saState),
		policies:  make(map[uint32]*policy),
		routes:    make(map[netip.Prefix]bool),
		events:    make(chan dataplane.Event, eventBuffer),
	}
	if b.log == nil {
		b.log = slog.Default()
	}
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if cfg.MTU < 576 || cfg.MTU > maxInner {
		return nil, fmt.Errorf("userspace: MTU %d out of range 576-%d", cfg.MTU, maxInner)
	}
	b.dev = cfg.Device
	if b.dev == nil {
		tun, err := openTUN(cfg.Name, cfg.MTU)
		if err != nil {
			return nil, err
		}
		b.dev, b.tun = tun, tun
		r, err := newRouter(tun.index)
		if err != nil {
			tun.Close()
			return nil, err
		}
		b.router = r
		b.log.Info("userspace data plane: TUN device up", "name", tun.name, "mtu", cfg.MTU, "offload", tun.offload)
	}
	if cfg.CoalesceInbound && b.tun != nil && b.tun.offload {
		b.gro = newCoalescer(func(p []byte) error {
			_, err := b.tun.File.Write(p)
			return err
		}, func(segs int) { b.stats.add(cTUNWrite, uint64(segs)) })
	}
	if cfg.RawESP {
		raw, err := openRawESP()
		if err != nil {
			b.dev.Close()
			if b.router != nil {
				b.router.close()
			}
			return nil, err
		}
		b.raw = raw
		for _, c := range raw.conns() {
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				c.readLoop(b)
			}()
		}
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.readLoop()
	}()
	return b, nil
}

// Kind implements dataplane.Backend.
func (b *Backend) Kind() dataplane.Kind { return dataplane.KindUserspace }

// Stats returns a snapshot of the backend-wide counters.
func (b *Backend) Stats() Stats { return b.stats.snapshot() }

// replayWindow maps the negotiated window onto what esp supports: a
// multiple of 64 of at least 64. esp cannot switch replay protection off,
// so a window of 0 gets the default; receiving with a window is always
// allowed (RFC 4303 §3.4.3 leaves the check to the receiver).
func replayWindow(w uint32) int {
	if w == 0 {
		return esp.DefaultReplayWindow
	}
	n := (int(w) + 63) / 64 * 64
	return min(n, esp.MaxReplayWindow)
}

func (b *Backend) newState(sa *dataplane.SA, dir esp.Direction) (*saState, error) {
	if err := sa.Validate(); err != nil {
		return nil, err
	}
	st := &saState{id: sa.ID, reqID: sa.ReqID, dir: dir}
	cfg := esp.Config{
		SPI:       sa.ID.SPI,
		Direction: dir,
		Encr:      esp.EncrID(sa.Alg.Encr),
		EncrKey:   sa.EncrKey,
		Integ:     esp.IntegID(sa.Alg.Integ),
		IntegKey:  sa.IntegKey,
		ESN:       sa.ESN,
	}
	if dir == esp.Inbound {
		cfg.ReplayWindow = replayWindow(sa.ReplayWindow)
	} else {
		// Running out of sequence numbers is a soft expiry too: the daemon
		// must rekey before Seal starts failing.
		cfg.OnSoftLimit = func() { b.softExpire(st) }
	}
	s, err := esp.NewSA(cfg)
	if err != nil {
		return nil, fmt.Errorf("SA %s: %w", sa.ID, err)
	}
	st.sa = s
	st.setPath(sa)
	st.setLifetime(sa.Lifetime)
	return st, nil
}

func (st *saState) setPath(sa *dataplane.SA) {
	p := &path{local: sa.ID.Src, remote: netip.AddrPortFrom(sa.ID.Dst, 0)}
	if sa.Encap != nil {
		p.udp = true
		p.remote = netip.AddrPortFrom(sa.ID.Dst, sa.Encap.DstPort)
	}
	st.path.Store(p)
}

func (st *saState) setLifetime(l dataplane.Lifetime) {
	if l == (dataplane.Lifetime{}) {
		st.life.Store(nil)
		return
	}
	st.life.Store(&l)
}

// AddSAs implements dataplane.Backend.
func (b *Backend) AddSAs(p dataplane.SAPair) error {
	in, err := b.newState(&p.In, esp.Inbound)
	if err != nil {
		return err
	}
	out, err := b.newState(&p.Out, esp.Outbound)
	if err != nil {
		return err
	}
	if p.Out.Encap == nil && b.raw == nil {
		return fmt.Errorf("SA %s: no UDP encapsulation and raw ESP is not enabled", p.Out.ID)
	}
	if p.Out.Encap != nil && b.sendESP == nil {
		return fmt.Errorf("SA %s: UDP encapsulation but no SendESP configured", p.Out.ID)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, dup := b.inbound[p.In.ID.SPI]; dup {
		return fmt.Errorf("SA %s: inbound SPI already installed", p.In.ID)
	}
	if _, dup := b.byID[p.In.ID]; dup {
		return fmt.Errorf("SA %s: already installed", p.In.ID)
	}
	if _, dup := b.byID[p.Out.ID]; dup {
		return fmt.Errorf("SA %s: already installed", p.Out.ID)
	}
	b.byID[p.In.ID] = in
	b.inbound[p.In.ID.SPI] = in
	b.byID[p.Out.ID] = out
	b.outbound[out.reqID] = append(b.outbound[out.reqID], out)
	return nil
}

// UpdateSA implements dataplane.Backend: it changes the UDP encapsulation
// ports and the lifetimes. Keys and algorithms in sa are ignored.
func (b *Backend) UpdateSA(sa dataplane.SA) error {
	if sa.Encap != nil && (sa.Encap.SrcPort == 0 || sa.Encap.DstPort == 0) {
		return fmt.Errorf("SA %s: UDP encapsulation needs both ports", sa.ID)
	}
	st, err := b.lookup(sa.ID)
	if err != nil {
		return err
	}
	if st.dir == esp.Outbound {
		if sa.Encap == nil && b.raw == nil {
			return fmt.Errorf("SA %s: no UDP encapsulation and raw ESP is not enabled", sa.ID)
		}
		if sa.Encap != nil && b.sendESP == nil {
			return fmt.Errorf("SA %s: UDP encapsulation but no SendESP configured", sa.ID)
		}
	}
	st.setPath(&sa)
	st.setLifetime(sa.Lifetime)
	// New limits may lie above the old ones: let a soft event fire again
	// once the new soft limit is reached.
	if l := st.life.Load(); l == nil || !softReached(l, st.sa.Stats()) {
		st.soft.Store(false)
	}
	b.checkLifetime(st)
	return nil
}

// DeleteSA implements dataplane.Backend.
func (b *Backend) DeleteSA(id dataplane.SAID) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	st, ok := b.byID[id]
	if !ok {
		return fmt.Errorf("SA %s: %w", id, dataplane.ErrNotFound)
	}
	b.removeLocked(st)
	return nil
}

func (b *Backend) removeLocked(st *saState) {
	if b.byID[st.id] != st {
		return
	}
	delete(b.byID, st.id)
	if b.inbound[st.id.SPI] == st {
		delete(b.inbound, st.id.SPI)
		return
	}
	outs := b.outbound[st.reqID]
	for i, o := range outs {
		if o == st {
			// A fresh slice: the device reader may hold the old one.
			n := make([]*saState, 0, len(outs)-1)
			n = append(append(n, outs[:i]...), outs[i+1:]...)
			outs = n
			break
		}
	}
	if len(outs) == 0 {
		delete(b.outbound, st.reqID)
	} else {
		b.outbound[st.reqID] = outs
	}
}

func (b *Backend) lookup(id dataplane.SAID) (*saState, error) {
	b.mu.RLock()
	st, ok := b.byID[id]
	b.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("SA %s: %w", id, dataplane.ErrNotFound)
	}
	return st, nil
}

// Counters implements dataplane.Backend: inner packet bytes and packets.
func (b *Backend) Counters(id dataplane.SAID) (dataplane.Counters, error) {
	st, err := b.lookup(id)
	if err != nil {
		return dataplane.Counters{}, err
	}
	s := st.sa.Stats()
	return dataplane.Counters{Bytes: s.Bytes, Packets: s.Packets}, nil
}

// OutboundSeq implements dataplane.Backend.
func (b *Backend) OutboundSeq(id dataplane.SAID) (uint64, error) {
	st, err := b.lookup(id)
	if err != nil {
		return 0, err
	}
	if st.dir != esp.Outbound {
		return 0, fmt.Errorf("SA %s: %w", id, esp.ErrDirection)
	}
	return st.sa.OutboundSeq(), nil
}

// SetOutboundSeq implements dataplane.Backend. Moving the counter backwards
// fails (esp.ErrSeqBackwards): it would reuse sequence numbers and, for the
// AEADs, nonces.
func (b *Backend) SetOutboundSeq(id dataplane.SAID, seq uint64) error {
	st, err := b.lookup(id)
	if err != nil {
		return err
	}
	if err := st.sa.SetOutboundSeq(seq); err != nil {
		return fmt.Errorf("SA %s: %w", id, err)
	}
	return nil
}

// ReplayState implements dataplane.Backend.
func (b *Backend) ReplayState(id dataplane.SAID) (dataplane.Replay, error) {
	st, err := b.lookup(id)
	if err != nil {
		return dataplane.Replay{}, err
	}
	if st.dir != esp.Inbound {
		return dataplane.Replay{}, fmt.Errorf("SA %s: %w", id, esp.ErrDirection)
	}
	return toReplay(st.sa.ReplayState()), nil
}

// SetReplayState implements dataplane.Backend. The window can only become
// stricter: the state is merged into the current one (esp.SA.SetReplayState),
// so restoring an older snapshot never makes a received number acceptable
// again.
func (b *Backend) SetReplayState(id dataplane.SAID, r dataplane.Replay) error {
	st, err := b.lookup(id)
	if err != nil {
		return err
	}
	if err := st.sa.SetReplayState(fromReplay(r)); err != nil {
		return fmt.Errorf("SA %s: %w", id, err)
	}
	return nil
}

// AdvanceReplay implements dataplane.Backend.
func (b *Backend) AdvanceReplay(id dataplane.SAID, delta uint64) error {
	st, err := b.lookup(id)
	if err != nil {
		return err
	}
	if err := st.sa.AdvanceReplayWindow(delta); err != nil {
		return fmt.Errorf("SA %s: %w", id, err)
	}
	return nil
}

// toReplay converts esp's 64-bit-word bitmap into dataplane's 32-bit words;
// both number bits from the top down (bit k is Top-k).
func toReplay(s esp.ReplayState) dataplane.Replay {
	r := dataplane.Replay{Seq: s.Top, Window: uint32(len(s.Bitmap) * 64), Bitmap: make([]uint32, 2*len(s.Bitmap))}
	for i, w := range s.Bitmap {
		r.Bitmap[2*i] = uint32(w)
		r.Bitmap[2*i+1] = uint32(w >> 32)
	}
	return r
}

func fromReplay(r dataplane.Replay) esp.ReplayState {
	s := esp.ReplayState{Top: r.Seq, Bitmap: make([]uint64, (len(r.Bitmap)+1)/2)}
	for i, w := range r.Bitmap {
		s.Bitmap[i/2] |= uint64(w) << (32 * (i % 2))
	}
	if len(r.Bitmap)%2 == 1 {
		// An odd number of 32-bit words leaves the upper half of the last
		// 64-bit word uncovered; esp counts uncovered numbers as received,
		// and so must this conversion.
		s.Bitmap[len(s.Bitmap)-1] |= 0xffffffff << 32
	}
	return s
}

// InstallPolicies implements dataplane.Backend. With a kernel TUN device it
// also routes the remote selectors' prefixes into the device.
func (b *Backend) InstallPolicies(p dataplane.Policies) error {
	if err := p.Validate(); err != nil {
		return err
	}
	pol := compilePolicy(&p)
	b.routeMu.Lock()
	defer b.routeMu.Unlock()
	b.mu.Lock()
	var removed []netip.Prefix
	if old := b.policies[p.ReqID]; old != nil {
		removed = b.table.remove(old)
	}
	added := b.table.add(pol)
	b.policies[p.ReqID] = pol
	b.mu.Unlock()
	b.updateRoutes(pol, added, removed)
	return nil
}

// RemovePolicies implements dataplane.Backend.
func (b *Backend) RemovePolicies(p dataplane.Policies) error {
	b.routeMu.Lock()
	defer b.routeMu.Unlock()
	b.mu.Lock()
	old := b.policies[p.ReqID]
	var removed []netip.Prefix
	if old != nil {
		removed = b.table.remove(old)
		delete(b.policies, p.ReqID)
	}
	b.mu.Unlock()
	b.updateRoutes(nil, nil, removed)
	return nil
}

// updateRoutes adds routes for prefixes that came into use and removes
// those that went out of use. Route failures are logged, not returned: the
// policy is in place, and a missing route only means the kernel does not
// steer the traffic here, which an administrator can see and fix.
func (b *Backend) updateRoutes(pol *policy, added, removed []netip.Prefix) {
	if b.router == nil {
		return
	}
	keep := make(map[netip.Prefix]bool, len(added))
	for _, pfx := range added {
		keep[pfx] = true
	}
	for _, pfx := range removed {
		if keep[pfx] {
			continue // replaced policy routes the same prefix
		}
		if b.routes[pfx] {
			if err := b.router.del(pfx); err != nil {
				b.log.Warn("userspace: removing route", "prefix", pfx, "err", err)
			}
		}
		delete(b.routes, pfx)
	}
	for _, pfx := range added {
		if _, ok := b.routes[pfx]; ok {
			continue
		}
		if pfx.Contains(pol.outerRemote) || pfx.Contains(pol.outerLocal) {
			// Routing the outer peer address into the tunnel would loop
			// every ESP packet back into the device.
			b.log.Warn("userspace: not routing a selector that covers the tunnel endpoints",
				"prefix", pfx, "reqid", pol.reqID)
			b.routes[pfx] = false
			continue
		}
		src := pol.srcHint[famIndex(pfx.Addr())]
		ours, err := b.router.add(pfx, src)
		if err != nil {
			b.log.Warn("userspace: adding route", "prefix", pfx, "err", err)
		}
		b.routes[pfx] = ours
	}
}

// Events implements dataplane.Backend.
func (b *Backend) Events() <-chan dataplane.Event { return b.events }

func (b *Backend) emit(ev dataplane.Event) {
	b.evMu.Lock()
	defer b.evMu.Unlock()
	if b.evClosed {
		return
	}
	if b.evLost {
		select {
		case b.events <- dataplane.Event{Kind: dataplane.EventLost}:
			b.evLost = false
		default:
			return
		}
	}
	select {
	case b.events <- ev:
	default:
		b.evLost = true
	}
}
