package ike

import (
	"net/netip"

	"encoding/binary"

	"github.com/hike-vpn/hike/internal/dataplane"
	"github.com/hike-vpn/hike/internal/msgsync"
	"github.com/hike-vpn/hike/internal/wire"
)

// RFC 6311 message-ID and replay-counter synchronisation, peer role: a
// cluster that took over this IKE SA tells us its counters in an
// INFORMATIONAL request with Message ID 0, and we answer with ours. The
// arithmetic lives in package msgsync; this file is the protocol around it.

// maybeSyncRequest handles a request whose Message ID is 0 but not the one
// expected. It reports whether the message was a sync request (answered or
// dropped); false leaves it to normal handling, which drops it.
//
// The gate follows RFC 6311 §5.1 strictly: only an established IKE SA that
// negotiated IKEV2_MESSAGE_ID_SYNC_SUPPORTED, only INFORMATIONAL, only after
// the ICV verified, and only if the payloads are exactly N(16422) and
// optionally N(16423).
func (e *Engine) maybeSyncRequest(sa *SA, m *wire.Message, local, remote netip.AddrPort) bool {
	if m.Header.Exchange != wire.INFORMATIONAL || sa.state != StateEstablished {
		return false
	}
	if !sa.ext.MIDSync {
		sa.stats.SyncsDropped++
		e.stats.SyncsDropped.Add(1)
		e.limitedInfo("RFC 6311 sync request on an SA that did not negotiate it: dropped", "sa", sa.logID())
		return true
	}
	var inner [4]wire.Payload
	ps, err := e.open(sa, m, inner[:0])
	if err != nil || ps == nil {
		if err != nil {
			e.dropUndecryptable(sa, err)
		}
		return true
	}
	if !isSyncRequest(ps) {
		sa.stats.SyncsDropped++
		e.stats.SyncsDropped.Add(1)
		e.limitedInfo("Message ID 0 request is not a sync request: dropped", "sa", sa.logID())
		return true
	}
	e.answerSync(sa, ps)
	return true
}

// isSyncRequest says whether a request's payloads are exactly N(16422)
// and, optionally, N(16423) (RFC 6311 §5.1).
func isSyncRequest(ps []wire.Payload) bool {
	var hasSync, hasRC bool
	for _, p := range ps {
		n, err := wire.ParseNotify(p.Body)
		if p.Type != wire.PayloadNotify || err != nil {
			return false
		}
		switch {
		case n.Type == wire.IKEV2_MESSAGE_ID_SYNC && !hasSync:
			if _, err := n.MessageIDSync(); err != nil {
				return false
			}
			hasSync = true
		case n.Type == wire.IPSEC_REPLAY_COUNTER_SYNC && !hasRC:
			if _, err := n.ReplayCounterSync(); err != nil {
				return false
			}
			hasRC = true
		default:
			return false
		}
	}
	return hasSync
}

// answerSync runs the peer role on a verified sync request (isSyncRequest)
// of an SA that negotiated RFC 6311.
func (e *Engine) answerSync(sa *SA, ps []wire.Payload) {
	var (
		req    wire.MessageIDSync
		replay wire.ReplayCounterSync
		hasRC  bool
	)
	for _, p := range ps {
		n, _ := wire.ParseNotify(p.Body)
		switch n.Type {
		case wire.IKEV2_MESSAGE_ID_SYNC:
			req, _ = n.MessageIDSync()
		case wire.IPSEC_REPLAY_COUNTER_SYNC:
			replay, _ = n.ReplayCounterSync()
			hasRC = true
		}
	}

	cur := sa.syncCounters()
	var nonce msgsync.Nonce
	binary.BigEndian.PutUint32(nonce[:], req.Nonce)
	v := sa.sync.Respond(msgsync.Sync{Nonce: nonce, Send: req.SendReq, Recv: req.RecvReq}, cur, true)
	switch v.Action {
	case msgsync.Drop:
		sa.stats.SyncsDropped++
		e.stats.SyncsDropped.Add(1)
		e.log.Info("RFC 6311 sync request dropped", "sa", sa.logID(), "reason", v.Reason,
			"m1", req.SendReq, "p1", req.RecvReq)
		return
	case msgsync.Repeat:
		e.log.Info("RFC 6311 sync request repeated: answering again", "sa", sa.logID())
		e.sendSyncResponse(sa, v.Reply)
		return
	}

	before := [2]uint32{sa.nextSend, sa.nextRecv}
	sa.nextSend = v.Install.NextSend
	sa.nextRecv = v.Install.NextRecv
	// §1.6 of our notes: after a sync no earlier response may be replayed.
	sa.cache = responseCache{}
	sa.lastHeard = e.now()
	// Our request in flight will never be answered under its old Message
	// ID; run its work again under a new one (strongSwan does the same).
	if out := sa.out; out != nil {
		sa.out = nil
		if r, ok := out.x.(rerunner); ok {
			sa.queue = append([]exchange{r.rerun()}, sa.queue...)
		}
	}
	sa.stats.SyncsAnswered++
	e.touch(sa)
	sa.stats.LastSyncBefore = before
	sa.stats.LastSyncAfter = [2]uint32{sa.nextSend, sa.nextRecv}
	e.stats.SyncsAnswered.Add(1)
	e.log.Info("RFC 6311 message ID sync answered", "sa", sa.logID(), "m1", req.SendReq, "p1", req.RecvReq,
		"p2", v.Reply.Send, "m2", v.Reply.Recv, "next_send_before", before[0], "next_recv_before", before[1])
	e.sendSyncResponse(sa, v.Reply)
	if hasRC {
		e.applyReplayDelta(sa, replay)
	}
	e.kick(sa)
}

// syncCounters describes our Message ID state the way msgsync reads it.
// hike keeps one request in flight, with Message ID nextSend.
func (sa *SA) syncCounters() msgsync.Counters {
	c := msgsync.Counters{NextSend: sa.nextSend, NextRecv: sa.nextRecv, RecvEnd: sa.nextRecv}
	if sa.out != nil {
		c.NextSend = sa.out.mid + 1
		c.InFlight = msgsync.Requests{Below: sa.out.mid + 1, Bits: 1}
	}
	return c
}

// sendSyncResponse answers with Message ID 0 and N(16422) alone (§5.1),
// outside the response cache and without advancing the expected Message ID.
func (e *Engine) sendSyncResponse(sa *SA, reply msgsync.Sync) {
	var w wire.Builder
	w.ResetChain(make([]byte, 0, 32))
	w.AddMessageIDSync(wire.MessageIDSync{Nonce: binary.BigEndian.Uint32(reply.Nonce[:]),
		SendReq: reply.Send, RecvReq: reply.Recv})
	packets, err := e.seal(sa, sa.header(wire.INFORMATIONAL, true, 0), &w, nil)
	if err != nil {
		e.log.Warn("cannot protect sync response", "sa", sa.logID(), "err", err)
		return
	}
	e.send(sa, packets)
	e.checkMarks(sa)
}

// applyReplayDelta adds the cluster's delta to the outbound sequence number
// of every Child SA of the IKE SA (RFC 6311 §5.2, §6.4), so that our next
// packets land above the window of the member that took over.
func (e *Engine) applyReplayDelta(sa *SA, r wire.ReplayCounterSync) {
	if !sa.ext.ReplaySync {
		e.log.Info("IPSEC_REPLAY_COUNTER_SYNC on an SA that did not negotiate it: ignored", "sa", sa.logID())
		return
	}
	octets := 4
	if r.ESN {
		octets = 8
	}
	dp := e.cfg.Dataplane
	for _, c := range sa.children {
		if !c.installed || dp == nil {
			continue
		}
		id := dataplane.SAID{SPI: c.spiOut, Src: addrOf(sa.local), Dst: addrOf(sa.remote)}
		seq, err := dp.OutboundSeq(id)
		if err != nil {
			e.log.Warn("cannot read outbound sequence number", "sa", sa.logID(), "spi", hex32(c.spiOut), "err", err)
			continue
		}
		next, reason := msgsync.ApplyReplayDelta(seq, c.esn, r.Delta, octets)
		if reason != msgsync.ReasonNone {
			// Overflow: RFC 4303 forbids cycling, so replace the SA;
			// a length mismatch cannot be interpreted at all.
			e.log.Info("replay counter sync not applied", "sa", sa.logID(), "spi", hex32(c.spiOut), "reason", reason)
			if reason == msgsync.ReasonOverflow && c.state == childInstalled {
				e.enqueue(sa, &childRekeyExchange{old: c})
			}
			continue
		}
		if err := dp.SetOutboundSeq(id, next); err != nil {
			e.log.Warn("cannot set outbound sequence number", "sa", sa.logID(), "spi", hex32(c.spiOut), "err", err)
			continue
		}
		e.log.Info("replay counter synced", "sa", sa.logID(), "spi", hex32(c.spiOut), "from", seq, "to", next)
	}
}

// rerunner is implemented by exchanges that can be started again from
// scratch under a new Message ID after an RFC 6311 sync abandoned them.
type rerunner interface{ rerun() exchange }

func (x *dpdExchange) rerun() exchange    { return x }
func (x *deleteExchange) rerun() exchange { return x }

func (x *childRekeyExchange) rerun() exchange {
	if x.new != nil {
		releaseChildSPI(x.new.spiIn)
	}
	if x.old.state == childRekeying {
		x.old.state = childInstalled
	}
	return &childRekeyExchange{old: x.old}
}

func (x *ikeRekeyExchange) rerun() exchange {
	x.abandon(nil)
	return &ikeRekeyExchange{}
}
