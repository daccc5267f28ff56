package ike

import (
	"errors"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hike-vpn/hike/internal/dataplane"
	"github.com/hike-vpn/hike/internal/wire"
)

// Config is what an Engine needs from the daemon.
type Config struct {
	Conns []*Conn
	// Send transmits one IKE datagram from local to remote. The transport
	// adds the non-ESP marker when local is on port 4500.
	Send func(local, remote netip.AddrPort, msg []byte) error
	// Dataplane installs Child SAs. Nil runs IKE only (the load generator).
	Dataplane dataplane.Backend
	Logger    *slog.Logger

	// Workers is the number of goroutines for established SAs (DPD,
	// INFORMATIONAL, CREATE_CHILD_SA, timers); HandshakeWorkers run
	// IKE_SA_INIT and IKE_AUTH, whose DH and signatures are the expensive
	// part, so that a connection storm cannot starve DPD. 0 means GOMAXPROCS.
	Workers          int
	HandshakeWorkers int
	// HandshakeQueue bounds the handshake backlog; past it new IKE_SA_INIT
	// requests are dropped.
	HandshakeQueue int
	// CookieThreshold is the number of half-open SAs from which IKE_SA_INIT
	// must carry a valid COOKIE (RFC 7296 §2.6): 0 demands one always, a
	// negative value never.
	CookieThreshold int
	// Keepalive sends one NAT keepalive (RFC 3948 §2.3) from local to
	// remote; nil disables keepalives.
	Keepalive func(local, remote netip.AddrPort) error

	// Retransmission (RFC 7296 §2.1): the first timeout, growth factor and
	// number of retransmissions before the peer is declared dead.
	RetransmitTimeout time.Duration
	RetransmitBase    float64
	RetransmitTries   int
	HalfOpenTimeout   time.Duration

	// OnExchange, if set, is told about every exchange we initiated once
	// its response has been processed: the load generator measures DPD
	// round trips with it. It runs on a worker with the SA locked, so it
	// must be quick and must not call back into the engine.
	OnExchange func(ExchangeDone)

	// SPISlot and SPISlots partition the inbound Child SA SPIs of a
	// cluster: with SPISlots > 1, every SPI this engine allocates carries
	// SPISlot in its top bits. A member that takes over another's SAs
	// installs their inbound SPIs beside its own, and random SPIs from two
	// members would collide often at the mission's scale (20,000 per node:
	// about one takeover in ten).
	SPISlot, SPISlots int
}

// ExchangeDone describes one of our exchanges that got its response.
type ExchangeDone struct {
	Type wire.ExchangeType
	// DPD marks an empty INFORMATIONAL request: a liveness check.
	DPD bool
	// RTT runs from the request's first transmission to its response, so
	// it includes any retransmissions.
	RTT    time.Duration
	Failed bool
}

func (c *Config) defaults() {
	if c.Workers <= 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	if c.HandshakeWorkers <= 0 {
		c.HandshakeWorkers = runtime.GOMAXPROCS(0)
	}
	if c.HandshakeQueue <= 0 {
		c.HandshakeQueue = 4096
	}
	if c.RetransmitTimeout <= 0 {
		c.RetransmitTimeout = 2 * time.Second
	}
	if c.RetransmitBase < 1 {
		c.RetransmitBase = 1.8
	}
	if c.RetransmitTries <= 0 {
		c.RetransmitTries = 5
	}
	if c.HalfOpenTimeout <= 0 {
		c.HalfOpenTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Engine runs IKE SAs. Datagrams enter through HandleIKE; each is processed
// by a worker holding its SA's lock, so the exchanges of one SA are strictly
// ordered while different SAs proceed in parallel. There is no goroutine per
// SA: timers live in a timing wheel and fire into the same worker pools.
type Engine struct {
	cfg   Config
	conns map[string]*Conn // by name; the load generator has one per client
	log   *slog.Logger
	table *Table
	wheel *wheel
	// Work queues, one per worker. An SA's jobs always go to the same
	// queue (chosen by its SPI), so they run in the order they arrived;
	// handshakes have their own workers.
	fast []chan job
	hs   []chan job
	wg   sync.WaitGroup
	quit chan struct{}
	now  func() time.Time

	closeOnce sync.Once

	cookies  cookieSecret
	halfOpen atomic.Int64
	dirty    atomic.Bool
	repl     replState
	reqIDs   atomic.Uint32
	stats    Stats
	logLimit rateLimiter
	bufs     bufferPools
}

// job is one unit of work for a worker: a datagram, or a timer firing.
type job struct {
	sa     *SA
	buf    *[]byte
	n      int
	local  netip.AddrPort
	remote netip.AddrPort
	timer  bool
}

// bufferPools keep copies of received datagrams in buffers of the size
// they need: a DPD request is under 100 octets, an IKE_AUTH with
// certificates a few KiB. Queued work then holds little memory even when
// the queues are full.
type bufferPools [3]sync.Pool

var bufferSizes = [3]int{512, 4096, 65535}

func (p *bufferPools) get(n int) *[]byte {
	for i, size := range bufferSizes {
		if n <= size {
			if b, ok := p[i].Get().(*[]byte); ok {
				return b
			}
			b := make([]byte, size)
			return &b
		}
	}
	return nil
}

func (p *bufferPools) put(b *[]byte) {
	for i, size := range bufferSizes {
		if cap(*b) == size {
			p[i].Put(b)
			return
		}
	}
}

// New creates an engine; Start runs it.
func New(cfg Config) *Engine {
	cfg.defaults()
	e := &Engine{
		cfg:   cfg,
		log:   cfg.Logger,
		table: NewTable(),
		fast:  lanes(cfg.Workers, 16384),
		hs:    lanes(cfg.HandshakeWorkers, cfg.HandshakeQueue),
		quit:  make(chan struct{}),
		now:   time.Now,
	}
	e.conns = make(map[string]*Conn, len(cfg.Conns))
	for _, c := range cfg.Conns {
		e.conns[c.Name] = c
	}
	e.cookies.rotate()
	e.logLimit.init(20)
	e.wheel = newWheel(50*time.Millisecond, 8192, func(sa *SA) {
		select {
		case lane(e.fast, sa.LocalSPI()) <- job{sa: sa, timer: true}:
		case <-e.quit:
		}
	})
	return e
}

func lanes(n, capacity int) []chan job {
	ls := make([]chan job, n)
	for i := range ls {
		ls[i] = make(chan job, max(capacity/n, 64))
	}
	return ls
}

// lane picks the queue of an SA. SPIs are random, so any bits spread the
// load; the high ones are used because the table shards on the low ones.
func lane(ls []chan job, spi uint64) chan job {
	return ls[(spi>>32)%uint64(len(ls))]
}

// SetDataplane sets the data plane before Start; the daemon opens it after
// the engine exists because the userspace plane sends through the same
// sockets.
func (e *Engine) SetDataplane(dp dataplane.Backend) { e.cfg.Dataplane = dp }

// Start launches the workers and the timer wheel.
func (e *Engine) Start() {
	for _, ch := range append(e.fast[:len(e.fast):len(e.fast)], e.hs...) {
		e.wg.Add(1)
		go e.worker(ch)
	}
	go e.wheel.run()
	e.wg.Add(1)
	go e.rotateCookies()
}

// cookieRotation is how often the cookie secret changes (RFC 7296 §2.6
// asks for a periodic change); a cookie stays valid across one change.
const cookieRotation = 2 * time.Minute

func (e *Engine) rotateCookies() {
	defer e.wg.Done()
	t := time.NewTicker(cookieRotation)
	defer t.Stop()
	for {
		select {
		case <-e.quit:
			return
		case <-t.C:
			e.cookies.rotate()
		}
	}
}

// Close stops the engine. SAs are not deleted: a daemon that restarts from
// its records, or a cluster member taking over, continues them.
func (e *Engine) Close() {
	e.closeOnce.Do(e.close)
}

func (e *Engine) close() {
	close(e.quit)
	e.wheel.close()
	e.wg.Wait()
}

func (e *Engine) worker(ch chan job) {
	defer e.wg.Done()
	for {
		select {
		case <-e.quit:
			return
		case j := <-ch:
			e.run(j)
		}
	}
}

func (e *Engine) run(j job) {
	if j.timer {
		sa := j.sa
		sa.mu.Lock()
		if sa.state != StateDead {
			e.onTimer(sa)
		}
		sa.mu.Unlock()
		return
	}
	defer e.bufs.put(j.buf)
	b := (*j.buf)[:j.n]
	if j.sa == nil {
		e.handleInitRequest(j.local, j.remote, b)
		return
	}
	sa := j.sa
	sa.mu.Lock()
	if sa.state != StateDead {
		e.handleMessage(sa, j.local, j.remote, b)
	}
	sa.mu.Unlock()
}

// HandleIKE takes one IKE datagram (without the non-ESP marker) received on
// local from remote. It copies what it keeps, so the caller may reuse b.
func (e *Engine) HandleIKE(local, remote netip.AddrPort, b []byte) {
	h, err := wire.ParseHeader(b)
	if err != nil {
		e.stats.Malformed.Add(1)
		e.limitedDebug("dropping malformed IKE datagram", "remote", remote, "err", err)
		return
	}
	b = b[:h.Length]
	var (
		sa    *SA
		queue chan job
	)
	switch {
	case h.Exchange == wire.IKE_SA_INIT && !h.IsResponse():
		if h.SPIr != 0 {
			e.stats.Malformed.Add(1)
			return
		}
		queue = lane(e.hs, h.SPIi)
	default:
		// The I flag says the sender is the original initiator, so the
		// other SPI is ours.
		spi := h.SPIi
		if h.IsInitiator() {
			spi = h.SPIr
		}
		if sa = e.table.Lookup(spi); sa == nil {
			e.stats.UnknownSPI.Add(1)
			e.limitedDebug("no IKE SA for SPI", "remote", remote, "exchange", h.Exchange)
			return
		}
		queue = lane(e.fast, spi)
		if h.Exchange == wire.IKE_SA_INIT || h.Exchange == wire.IKE_AUTH {
			queue = lane(e.hs, spi)
		}
	}
	buf := e.bufs.get(len(b))
	n := copy(*buf, b)
	select {
	case queue <- job{sa: sa, buf: buf, n: n, local: local, remote: remote}:
	default:
		e.bufs.put(buf)
		e.stats.QueueDrops.Add(1)
	}
}

// submit queues local work (initiation, control commands) for sa.
func (e *Engine) submit(sa *SA, f func()) {
	sa.mu.Lock()
	defer sa.mu.Unlock()
	if sa.state == StateDead {
		return
	}
	f()
}

// send transmits packets of an SA from its current addresses.
func (e *Engine) send(sa *SA, packets [][]byte) {
	for _, p := range packets {
		if err := e.cfg.Send(sa.local, sa.remote, p); err != nil {
			e.limitedDebug("send failed", "remote", sa.remote, "err", err)
		}
	}
}

// rearm schedules the SA's single timer at its earliest deadline.
func (e *Engine) rearm(sa *SA) {
	var at time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	if sa.out != nil {
		earliest(sa.out.next)
	}
	earliest(sa.dpdAt)
	earliest(sa.keepAt)
	if p := sa.resync; p != nil && p.active {
		_, t := p.r.Next()
		earliest(t)
	}
	earliest(sa.rekeyAt)
	earliest(sa.expireAt)
	for _, c := range sa.children {
		earliest(c.rekeyAt)
		earliest(c.expireAt)
	}
	if at.IsZero() {
		e.wheel.cancel(sa)
		return
	}
	e.wheel.schedule(sa, at.Sub(e.now()))
}

// remove takes sa out of service: its Child SAs leave the data plane, its
// virtual IP returns to the pool and late packets find nothing.
func (e *Engine) remove(sa *SA, reason string) {
	if sa.state == StateDead {
		return
	}
	if sa.established.IsZero() {
		e.halfOpen.Add(-1)
	} else {
		e.stats.Established.Add(-1)
		sa.conn.active.Add(-1)
		e.table.removePeer(sa)
	}
	if col := sa.ikeCollision; col != nil {
		// The peer closed this SA while our rekey crossed its own: its
		// new SA is the one that survives and takes the Child SAs.
		sa.ikeCollision = nil
		col.next.mu.Lock()
		if col.next.state == StateEstablished {
			e.moveChildren(sa, col.next)
		}
		col.next.mu.Unlock()
	}
	for _, c := range sa.children {
		e.uninstallChild(sa, c)
	}
	sa.children = nil
	if sa.vip.IsValid() && sa.conn != nil && sa.conn.Pool != nil {
		sa.conn.Pool.Release(sa.vip, sa.peerID)
	}
	if sa.hs != nil && !sa.initiator {
		e.table.RemoveHalfOpen(sa.spiI, sa.remote, sa)
	}
	sa.hs = nil
	sa.cache = responseCache{}
	if sa.out != nil {
		if a, ok := sa.out.x.(abandoner); ok {
			a.abandon(errSADeleted)
		}
		sa.out = nil
	}
	for _, x := range sa.queue {
		if f, ok := x.(interface{ abandon(error) }); ok {
			f.abandon(errSADeleted)
		}
	}
	sa.queue = nil
	if sa.keys != nil {
		sa.keys.Zero()
	}
	sa.state = StateDead
	e.touch(sa)
	if sa.onUp != nil {
		f := sa.onUp
		sa.onUp = nil
		defer f(SAInfo{}, errors.New(reason))
	}
	e.wheel.cancel(sa)
	e.table.Remove(sa)
	e.log.Info("IKE SA removed", "sa", sa.logID(), "remote", sa.remote, "reason", reason)
}

var errSADeleted = errors.New("IKE SA deleted")

func (e *Engine) limitedDebug(msg string, args ...any) {
	if e.logLimit.allow() {
		e.log.Debug(msg, args...)
	}
}
