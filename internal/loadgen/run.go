// Package loadgen is `hike load`: many simulated IKEv2 clients in one
// process, each a real initiator on hike's own engine. One engine carries
// every client's IKE SA as an event-driven state machine (no goroutine per
// SA), and one UDP socket carries their traffic (two on port 500, the
// second for NAT-T on 4500), sending from each client's own source address;
// responders tell the SAs apart by SPI, so clients may share an address and
// a port.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hike-vpn/hike/internal/ike"
	"github.com/hike-vpn/hike/internal/transport"
)

// run is the state of one load run shared by the ramp, the engine's
// callbacks and the progress line.
type run struct {
	o       Options
	eng     *ike.Engine
	sock    *transport.Socket
	natt    *transport.Socket // port 4500 beside port 500, else nil
	port    uint16
	srcs    []netip.Addr
	names   []string // connection per client; one shared when nil
	start   time.Time
	stopped chan struct{}

	initiated   atomic.Int64
	established atomic.Int64
	failed      atomic.Int64
	lastUp      atomic.Int64 // nanoseconds from start to the latest establishment
	sendErrs    atomic.Uint64
	setup       Histogram
	dpdRTT      Histogram
	dpdDone     atomic.Uint64
	dpdFailed   atomic.Uint64

	// settled is closed once every client has its setup outcome; the DPD
	// rate is measured from then on, when no handshake competes.
	settled     chan struct{}
	settleOnce  sync.Once
	settledAt   atomic.Int64
	dpdAtSettle atomic.Uint64
	// What the engine had sent and retransmitted by then: after setup
	// every request is a DPD probe, so the differences are the probes
	// sent and those left unanswered for a retransmission timeout.
	sentAtSettle  uint64
	rexmtAtSettle uint64
	// steadyAt is one DPD delay later: from then on every SA probes at
	// its steady rate. lastMark is the latest whole number of DPD delays
	// after it: SAs set up within moments of each other probe in step, so
	// only whole periods count each one equally often.
	steadyAt    atomic.Int64
	dpdAtSteady atomic.Uint64
	lastMarkAt  atomic.Int64
	dpdAtLast   atomic.Uint64

	mu      sync.Mutex
	reasons map[string]int64
}

// Run drives the load described by o and returns its summary. It ends when
// ctx ends, when o.Duration has passed, or, with no Duration, once every
// client has its setup outcome. SAs are left as they are: the responder
// sees the clients fall silent.
func Run(ctx context.Context, o Options) (*Summary, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	r := &run{o: o, stopped: make(chan struct{}), settled: make(chan struct{}), reasons: map[string]int64{}}
	if err := r.setupSources(); err != nil {
		return nil, err
	}
	conns, err := r.conns()
	if err != nil {
		return nil, err
	}
	unspec := netip.IPv4Unspecified()
	if o.Target.Addr().Is6() {
		unspec = netip.IPv6Unspecified()
	}
	// A ramp of thousands per second answered in bursts: the default
	// buffers would drop responses.
	lc := transport.ListenConfig{Addr: netip.AddrPortFrom(unspec, o.LocalPort),
		Encap: o.Target.Port() == transport.PortNATT, ReadBuffer: 8 << 20, WriteBuffer: 8 << 20}
	if r.sock, err = transport.Listen(lc); err != nil {
		return nil, fmt.Errorf("opening the clients' socket on port %d: %w", o.LocalPort, err)
	}
	r.port = r.sock.LocalAddr().Port()
	if r.port == transport.PortIKE {
		// After IKE_SA_INIT finds a NAT (or a responder fakes one, as
		// strongSwan's kernel-libipsec does) the engine moves an SA from
		// 500 to 4500 (RFC 7296 §2.23).
		lc.Addr, lc.Encap = netip.AddrPortFrom(unspec, transport.PortNATT), true
		if r.natt, err = transport.Listen(lc); err != nil {
			r.sock.Close()
			return nil, fmt.Errorf("opening the clients' NAT-T socket on port 4500: %w", err)
		}
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r.eng = ike.New(ike.Config{
		Conns:             conns,
		Send:              r.send,
		Logger:            log,
		RetransmitTimeout: o.RetransmitTimeout,
		OnExchange:        r.onExchange,
		// The clients answer no IKE_SA_INIT; a cookie demand is moot.
		CookieThreshold: -1,
	})
	cpu := startCPU(o.WatchPIDs)
	r.start = time.Now()
	r.eng.Start()
	served := make(chan error, 2)
	go func() { served <- r.sock.Serve(handler{r, r.port}) }()
	if r.natt != nil {
		go func() { served <- r.natt.Serve(handler{r, transport.PortNATT}) }()
	}
	progressDone := make(chan struct{})
	go r.progress(progressDone)

	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		select {
		case <-r.settled:
			cpu.settle()
		case <-r.stopped:
		}
	}()
	end := r.loop(ctx)
	close(r.stopped)
	<-progressDone
	<-sampled
	elapsed := end.Sub(r.start)
	s := r.summary(elapsed)
	settledAt := elapsed
	if cpu.settled != nil {
		settledAt = time.Duration(r.settledAt.Load())
	}
	s.CPU = cpu.finish(elapsed, settledAt)
	r.sock.Close()
	<-served
	if r.natt != nil {
		r.natt.Close()
		<-served
	}
	r.eng.Close()
	return s, nil
}

// loop ramps the clients up and waits for the end; it returns when the
// run ended.
func (r *run) loop(ctx context.Context) time.Time {
	var deadline <-chan time.Time
	if r.o.Duration > 0 {
		t := time.NewTimer(r.o.Duration)
		defer t.Stop()
		deadline = t.C
	}
	// Without a Duration the run ends when every client has its outcome,
	// or Hold after that.
	settled := r.settled
	if r.o.Duration > 0 && r.o.Hold == 0 {
		settled = nil
	}
	tb := newTokenBucket(r.o.Rate, r.start)
	pace := time.NewTimer(0)
	defer pace.Stop()
	<-pace.C
	for i := 0; i < r.o.Clients; {
		want := r.o.Clients - i
		if m := r.o.MaxInFlight; m > 0 {
			want = min(want, m-int(r.initiated.Load()-r.established.Load()-r.failed.Load()))
		}
		var n int
		wait := inFlightPoll
		if want > 0 {
			n, wait = tb.take(time.Now(), want)
		}
		for ; n > 0; n-- {
			r.initiate(i)
			i++
		}
		if wait == 0 {
			continue
		}
		pace.Reset(wait)
		select {
		case <-ctx.Done():
			return time.Now()
		case <-deadline:
			return time.Now()
		case <-pace.C:
		}
	}
	var hold <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return time.Now()
		case <-deadline:
			return time.Now()
		case <-hold:
			return time.Now()
		case <-settled:
			if r.o.Hold == 0 {
				return time.Now()
			}
			t := time.NewTimer(r.o.Hold)
			defer t.Stop()
			hold, settled = t.C, nil
		}
	}
}

// inFlightPoll is how often a ramp held back by MaxInFlight looks again:
// polling costs less than a wakeup from every completed setup.
const inFlightPoll = time.Millisecond

func (r *run) initiate(i int) {
	name := "load"
	if r.names != nil {
		name = r.names[i]
	}
	local := netip.AddrPortFrom(r.srcs[i%len(r.srcs)], r.port)
	t0 := time.Now()
	r.initiated.Add(1)
	err := r.eng.Initiate(name, local, func(info ike.SAInfo, err error) {
		if err != nil {
			r.fail(err.Error())
			return
		}
		// The engine keeps an IKE SA whose first Child SA failed (RFC 7296
		// §1.2); a run that asked for one counts it as a failed setup.
		if r.o.Child && len(info.Children) == 0 {
			r.fail("IKE SA up, Child SA refused")
			return
		}
		if r.o.VirtualIP && info.VirtualIP == "" {
			r.fail("IKE SA up, no virtual IP")
			return
		}
		now := time.Now()
		r.setup.Record(now.Sub(t0))
		r.lastUp.Store(int64(now.Sub(r.start)))
		r.established.Add(1)
		r.maybeSettled()
	})
	if err != nil {
		r.fail("initiate: " + err.Error())
	}
}

func (r *run) fail(reason string) {
	r.mu.Lock()
	r.reasons[reason]++
	r.mu.Unlock()
	r.failed.Add(1)
	r.maybeSettled()
}

func (r *run) maybeSettled() {
	if r.established.Load()+r.failed.Load() < int64(r.o.Clients) {
		return
	}
	r.settleOnce.Do(func() {
		r.dpdAtSettle.Store(r.dpdDone.Load())
		st := r.eng.Stats()
		r.sentAtSettle, r.rexmtAtSettle = st.DPDSent.Load(), st.Retransmits.Load()
		r.settledAt.Store(int64(time.Since(r.start)))
		close(r.settled)
		if r.o.DPD > 0 {
			go r.markDPD()
		}
	})
}

// markDPD samples the DPD count every DPD delay from one delay after setup
// until the run stops.
func (r *run) markDPD() {
	t := time.NewTicker(r.o.DPD)
	defer t.Stop()
	for first := true; ; first = false {
		select {
		case <-r.stopped:
			return
		case <-t.C:
		}
		n, at := r.dpdDone.Load(), int64(time.Since(r.start))
		if first {
			r.dpdAtSteady.Store(n)
			r.steadyAt.Store(at)
			continue
		}
		r.dpdAtLast.Store(n)
		r.lastMarkAt.Store(at)
	}
}

// onExchange runs on the engine's workers for every completed exchange:
// atomics and a histogram, nothing that allocates or blocks.
func (r *run) onExchange(x ike.ExchangeDone) {
	if !x.DPD {
		return
	}
	if x.Failed {
		r.dpdFailed.Add(1)
		return
	}
	r.dpdDone.Add(1)
	r.dpdRTT.Record(x.RTT)
}

func (r *run) send(local, remote netip.AddrPort, msg []byte) error {
	s := r.sock
	if local.Port() == transport.PortNATT && r.natt != nil {
		s = r.natt
	}
	err := s.SendIKE(local.Addr(), remote, msg)
	if err != nil {
		r.sendErrs.Add(1)
	}
	return err
}

// handler hands the socket's IKE datagrams to the engine, which copies
// what it keeps.
type handler struct {
	r    *run
	port uint16
}

func (h handler) HandleIKE(p *transport.Packet) {
	h.r.eng.HandleIKE(netip.AddrPortFrom(p.Local, h.port), p.Remote, p.Data)
}

func (handler) HandleESP(*transport.Packet) {}

// setupSources picks the clients' addresses and checks that they are
// local: the load generator adds none itself.
func (r *run) setupSources() error {
	if len(r.o.Sources) == 0 {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(r.o.Target))
		if err != nil {
			return fmt.Errorf("no route to %v: %w", r.o.Target, err)
		}
		a := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
		c.Close()
		r.srcs = []netip.Addr{a}
		return nil
	}
	r.srcs = sourceAddrs(r.o.Sources, r.o.Clients)
	if len(r.srcs) == 0 {
		return errors.New("sources: the prefixes hold no usable address")
	}
	for _, a := range []netip.Addr{r.srcs[0], r.srcs[len(r.srcs)-1]} {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 0)))
		if err != nil {
			return fmt.Errorf("sources: %v is not a local address (add the prefix first, e.g. ip addr add %v dev lo): %w",
				a, r.o.Sources[0], err)
		}
		c.Close()
	}
	return nil
}

// conns builds the clients' policy: hike's defaults, PSK both ways, any
// responder identity. With an identity format every client is its own
// connection, so that each has its identity and sends INITIAL_CONTACT as
// the first SA of a real client would.
func (r *run) conns() ([]*ike.Conn, error) {
	o := &r.o
	props, err := ikeProposals(o.IKEProposals)
	if err != nil {
		return nil, err
	}
	var children []*ike.ChildConfig
	if o.Child {
		esp, err := espProposals(o.ESPProposals)
		if err != nil {
			return nil, err
		}
		all := netip.MustParsePrefix("0.0.0.0/0")
		if o.Target.Addr().Is6() {
			all = netip.MustParsePrefix("::/0")
		}
		children = []*ike.ChildConfig{{Name: "load", LocalDynamic: true,
			RemoteTS: []ike.TrafficSelector{ike.PrefixTS(all)}, ESPProposals: esp}}
	}
	fill := func(c *ike.Conn, name string) {
		*c = ike.Conn{Name: name,
			RemoteAddrs:  []netip.Prefix{netip.PrefixFrom(o.Target.Addr(), o.Target.Addr().BitLen())},
			RemotePort:   o.Target.Port(),
			LocalAuth:    ike.Auth{Method: ike.AuthPSK, PSK: o.PSK},
			RemoteAuth:   ike.Auth{Method: ike.AuthPSK, PSK: o.PSK},
			IKEProposals: props,
			Children:     children,
			DPDDelay:     o.DPD,
			RequestVIP:   o.VirtualIP,
			MIDSync:      o.RFC6311,
			ReplaySync:   o.RFC6311,
		}
	}
	if o.IDFormat == "" {
		c := new(ike.Conn)
		fill(c, "load")
		return []*ike.Conn{c}, nil
	}
	conns := make([]*ike.Conn, o.Clients)
	store := make([]ike.Conn, o.Clients)
	r.names = make([]string, o.Clients)
	for i := range conns {
		id, err := clientID(o.IDFormat, i)
		if err != nil {
			return nil, err
		}
		c := &store[i]
		fill(c, "c"+strconv.Itoa(i))
		c.LocalID = id
		r.names[i] = c.Name
		conns[i] = c
	}
	return conns, nil
}
