package ike

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/hike-vpn/hike/internal/dataplane"
	"github.com/hike-vpn/hike/internal/msgsync"
	"github.com/hike-vpn/hike/internal/wire"
)

// RFC 6311, cluster role: after a takeover (or a restart from a record that
// may be stale) we tell the peer our counters in one protected
// INFORMATIONAL exchange with Message ID 0, and both sides continue from
// the maxima. With IPSEC_REPLAY_COUNTER_SYNC the same request moves the
// ESP counters of every Child SA past anything the previous owner used.

// ErrSyncNotNegotiated is returned by Resync for an SA whose peer did not
// advertise IKEV2_MESSAGE_ID_SYNC_SUPPORTED: the cluster must fall back to
// replicated counters for it.
var ErrSyncNotNegotiated = errors.New("RFC 6311 message ID sync not negotiated with this peer")

// ErrSyncDone is returned by Resync when the SA was already synchronised
// since the last takeover: RFC 6311 §7 allows one sync per failover event.
var ErrSyncDone = errors.New("IKE SA already synchronised since the last takeover")

// ResyncOptions tune one resynchronisation.
type ResyncOptions struct {
	// Margin is added to the known send Message ID besides the window
	// (RFC 6311 §5.1 RECOMMENDS at least the window).
	Margin uint32
	// OutboundJump advances each Child SA's outbound ESP sequence number;
	// 0 picks 2^30 and an early rekey (RFC 6311 §5.2).
	OutboundJump uint64
	// InboundDelta is the IPSEC_REPLAY_COUNTER_SYNC delta; 0 picks 2^30.
	InboundDelta uint64
	// Timeout is the first retransmission timeout.
	Timeout time.Duration
}

// resyncProc is the cluster-role procedure running on one SA.
type resyncProc struct {
	r       msgsync.Resync
	packets [][]byte
	delta   uint64 // N(16423) delta, 0 if none is sent
	esn     bool
	active  bool
	started time.Time
	done    []func(error)
	// abandoned is our request that was in flight when the sync started;
	// it is run again under the new Message IDs.
	abandoned exchange
}

// Resync runs the cluster-role RFC 6311 procedure on the SA named by ref.
// done, if not nil, gets the outcome.
func (e *Engine) Resync(ref string, opts ResyncOptions, done func(error)) error {
	sa := e.find(ref)
	if sa == nil {
		return ErrNoSuchSA
	}
	var err error
	e.submit(sa, func() {
		err = e.startResync(sa, opts, done)
		e.rearm(sa)
	})
	return err
}

// startResync starts the procedure; sa.mu is held.
func (e *Engine) startResync(sa *SA, opts ResyncOptions, done func(error)) error {
	if sa.state != StateEstablished {
		return errors.New("IKE SA not established")
	}
	if !sa.ext.MIDSync {
		return ErrSyncNotNegotiated
	}
	if p := sa.resync; p != nil {
		if p.active {
			if done != nil {
				p.done = append(p.done, done)
			}
			return nil
		}
		if !sa.needsSync {
			return ErrSyncDone
		}
	}
	if opts.Margin == 0 {
		opts.Margin = sa.conn.SyncMargin
	}
	if opts.OutboundJump == 0 {
		opts.OutboundJump = sa.conn.SyncJump
	}
	now := e.now()
	window := max(sa.peerWindow, 1)
	r, err := msgsync.NewResync(msgsync.ResyncConfig{Window: window, Margin: opts.Margin, Timeout: opts.Timeout},
		sa.syncCounters(), msgsync.NewNonce(), now)
	if err != nil {
		return err
	}
	p := &resyncProc{r: r, active: true, started: now}
	if done != nil {
		p.done = append(p.done, done)
	}
	// Our request in flight was sent by whoever owned the SA before; its
	// answer will never come under that Message ID.
	if out := sa.out; out != nil {
		sa.out = nil
		if rr, ok := out.x.(rerunner); ok {
			p.abandoned = rr.rerun()
		}
	}
	if sa.ext.ReplaySync {
		p.delta, p.esn = e.jumpReplayCounters(sa, opts)
	} else {
		e.jumpOutbound(sa, opts)
	}
	before := [2]uint32{sa.nextSend, sa.nextRecv}
	e.installCounters(sa, r.Hold(sa.syncCounters()))
	sa.stats.LastSyncBefore = before
	sa.resync = p
	sa.needsSync = false
	if err := e.sendSyncRequest(sa); err != nil {
		sa.resync = nil
		return err
	}
	e.stats.SyncsSent.Add(1)
	req := r.Request()
	e.log.Info("RFC 6311 sync started", "sa", sa.logID(), "m1", req.Send, "p1", req.Recv,
		"replay_delta", p.delta, "known_send", before[0], "known_recv", before[1])
	return nil
}

// sendSyncRequest builds and sends the current request: N(16422), and
// N(16423) when replay counters are synced (RFC 6311 §5, case 3).
func (e *Engine) sendSyncRequest(sa *SA) error {
	p := sa.resync
	req := p.r.Request()
	var w wire.Builder
	w.ResetChain(make([]byte, 0, 48))
	w.AddMessageIDSync(wire.MessageIDSync{Nonce: binary.BigEndian.Uint32(req.Nonce[:]), SendReq: req.Send, RecvReq: req.Recv})
	if p.delta != 0 {
		w.AddReplayCounterSync(wire.ReplayCounterSync{Delta: p.delta, ESN: p.esn})
	}
	packets, err := e.seal(sa, sa.header(wire.INFORMATIONAL, false, 0), &w, nil)
	if err != nil {
		return err
	}
	p.packets = packets
	e.send(sa, packets)
	e.checkMarks(sa)
	return nil
}

// handleSyncResponse processes a Message ID 0 response while a procedure
// runs or ran; sa.mu is held.
func (e *Engine) handleSyncResponse(sa *SA, m *wire.Message) {
	var inner [4]wire.Payload
	ps, err := e.open(sa, m, inner[:0])
	if err != nil || ps == nil {
		if err != nil {
			e.dropUndecryptable(sa, err)
		}
		return
	}
	var resp wire.MessageIDSync
	found := false
	for _, pl := range ps {
		if pl.Type != wire.PayloadNotify {
			continue
		}
		if n, err := wire.ParseNotify(pl.Body); err == nil && n.Type == wire.IKEV2_MESSAGE_ID_SYNC {
			if resp, err = n.MessageIDSync(); err == nil {
				found = true
			}
		}
	}
	p := sa.resync
	if !found {
		e.log.Info("RFC 6311 sync response without IKEV2_MESSAGE_ID_SYNC: dropped", "sa", sa.logID())
		return
	}
	var nonce msgsync.Nonce
	binary.BigEndian.PutUint32(nonce[:], resp.Nonce)
	o := p.r.Accept(msgsync.Sync{Nonce: nonce, Send: resp.SendReq, Recv: resp.RecvReq}, sa.syncCounters())
	switch o.Action {
	case msgsync.Drop:
		e.stats.SyncsDropped.Add(1)
		sa.stats.SyncsDropped++
		e.log.Info("RFC 6311 sync response dropped", "sa", sa.logID(), "reason", o.Reason)
		return
	case msgsync.GiveUp:
		e.log.Warn("RFC 6311 sync failed", "sa", sa.logID(), "reason", o.Reason)
		e.finishResync(sa, errors.New("RFC 6311 sync failed: "+o.Reason.String()))
		e.remove(sa, "RFC 6311 sync failed")
		return
	}
	e.installCounters(sa, o.Install)
	sa.lastHeard = e.now()
	sa.stats.LastSyncAfter = [2]uint32{sa.nextSend, sa.nextRecv}
	e.log.Info("RFC 6311 sync complete", "sa", sa.logID(), "p2", resp.SendReq, "m2", resp.RecvReq,
		"next_send", sa.nextSend, "next_recv", sa.nextRecv, "took", e.now().Sub(p.started))
	if p.abandoned != nil {
		sa.queue = append([]exchange{p.abandoned}, sa.queue...)
		p.abandoned = nil
	}
	e.finishResync(sa, nil)
	e.kick(sa)
}

func (e *Engine) finishResync(sa *SA, err error) {
	p := sa.resync
	if err == nil {
		e.stats.SyncsDone.Add(1)
	} else {
		e.stats.SyncsFailed.Add(1)
	}
	p.active = false
	p.packets = nil
	for _, f := range p.done {
		f(err)
	}
	p.done = nil
}

// resyncTimer drives retransmission; sa.mu is held. It reports false when
// the SA was removed.
func (e *Engine) resyncTimer(sa *SA, now time.Time) bool {
	p := sa.resync
	switch p.r.Expire(now) {
	case msgsync.Resend:
		sa.stats.Retransmits++
		e.stats.Retransmits.Add(1)
		e.send(sa, p.packets)
	case msgsync.Renew:
		if _, err := p.r.Renew(msgsync.NewNonce(), now); err != nil {
			e.finishResync(sa, err)
			e.remove(sa, "RFC 6311 sync: message IDs exhausted")
			return false
		}
		e.installCounters(sa, p.r.Hold(sa.syncCounters()))
		e.log.Info("RFC 6311 sync unanswered: new request", "sa", sa.logID(), "m1", p.r.Request().Send)
		e.sendSyncRequest(sa)
		e.stats.SyncsSent.Add(1)
	case msgsync.GiveUp:
		e.log.Warn("RFC 6311 sync unanswered: deleting IKE SA", "sa", sa.logID())
		e.finishResync(sa, errors.New("RFC 6311 sync unanswered"))
		e.remove(sa, "RFC 6311 sync unanswered")
		return false
	}
	return true
}

// installCounters sets our Message IDs from msgsync's view.
func (e *Engine) installCounters(sa *SA, c msgsync.Counters) {
	sa.nextSend = c.NextSend
	sa.nextRecv = c.NextRecv
	sa.cache = responseCache{}
	e.touch(sa)
}

// jumpReplayCounters prepares IPSEC_REPLAY_COUNTER_SYNC: our outbound
// counters jump (§5.2 MUST), our inbound windows advance by the delta the
// peer is about to add to its outbound counters. It returns the delta and
// its ESN width, or 0 if no delta can be sent (Child SAs that mix ESN and
// non-ESN cannot share one delta, §6.4).
func (e *Engine) jumpReplayCounters(sa *SA, opts ResyncOptions) (uint64, bool) {
	e.jumpOutbound(sa, opts)
	if len(sa.children) == 0 || e.cfg.Dataplane == nil {
		return 0, false
	}
	esn := sa.children[0].esn
	for _, c := range sa.children {
		if c.esn != esn {
			e.log.Info("Child SAs mix ESN settings: no replay counter sync", "sa", sa.logID())
			return 0, false
		}
	}
	delta := opts.InboundDelta
	if delta == 0 {
		// One delta for every Child SA (§6.4): the largest estimate.
		for _, c := range sa.children {
			delta = max(delta, e.estimate(c.inRate, c.ratedAt))
		}
	}
	for _, c := range sa.children {
		id := dataplane.SAID{SPI: c.spiIn, Src: addrOf(sa.remote), Dst: addrOf(sa.local)}
		if err := e.cfg.Dataplane.AdvanceReplay(id, delta); err != nil {
			e.log.Warn("cannot advance inbound replay window", "sa", sa.logID(), "spi", hex32(c.spiIn), "err", err)
		}
	}
	return delta, esn
}

// jumpSafety multiplies an estimated jump, and minJump bounds it from
// below: a jump that is too short makes the peer drop our first packets
// as replays, one that is too long only spends sequence space.
const (
	jumpSafety = 4
	minJump    = 1 << 16
	// maxEstimateAge is how old recorded counters may be for an estimate:
	// a rate measured long ago says little about the traffic since, so
	// older records get RFC 6311's large jump instead. Records are
	// refreshed more often than this (daemon.persist).
	maxEstimateAge = 30 * time.Second
)

// estimate is how far a counter moving at rate packets per second since
// at may have gone (RFC 6311 §5.2: "estimate ... from the traffic rate"),
// or 2^30 when nothing is known.
func (e *Engine) estimate(rate float64, at time.Time) uint64 {
	if at.IsZero() || e.now().Sub(at) > maxEstimateAge {
		return msgsync.FallbackJump
	}
	if rate == 0 {
		return minJump // idle when recorded: nothing to cover but a burst
	}
	j, _ := msgsync.EstimateJump(msgsync.JumpInput{Rate: rate, Since: e.now().Sub(at), Safety: jumpSafety, Window: 1024})
	if j == msgsync.FallbackJump {
		return j
	}
	return max(j, minJump)
}

// jumpOutbound advances every Child SA's outbound sequence number past what
// the previous owner may have used (RFC 6311 §5.2), from the configured
// jump, an estimate from the recorded traffic rate, or 2^30 and a rekey
// soon when nothing is known.
func (e *Engine) jumpOutbound(sa *SA, opts ResyncOptions) {
	if e.cfg.Dataplane == nil {
		return
	}
	for _, c := range sa.children {
		jump, guess := opts.OutboundJump, false
		if jump == 0 {
			jump = e.estimate(c.outRate, c.ratedAt)
			guess = jump == msgsync.FallbackJump
		}
		id := dataplane.SAID{SPI: c.spiOut, Src: addrOf(sa.local), Dst: addrOf(sa.remote)}
		seq, err := e.cfg.Dataplane.OutboundSeq(id)
		if err != nil {
			continue
		}
		next, reason := msgsync.AdvanceSeq(seq, c.esn, jump)
		if reason != msgsync.ReasonNone {
			e.enqueue(sa, &childRekeyExchange{old: c})
			continue
		}
		if err := e.cfg.Dataplane.SetOutboundSeq(id, next); err != nil {
			e.log.Warn("cannot advance outbound sequence number", "sa", sa.logID(), "spi", hex32(c.spiOut), "err", err)
		}
		if guess && c.state == childInstalled {
			// A guessed jump spends a quarter of a non-ESN SA's space:
			// replace the SA soon (RFC 6311 §5.2).
			c.rekeyAt = e.now().Add(time.Minute)
		}
	}
}
