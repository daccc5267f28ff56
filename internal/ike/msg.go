package ike

import (
	"bytes"
	"errors"
	"math"
	"net/netip"
	"time"

	"github.com/hike-vpn/hike/internal/crypto"
	"github.com/hike-vpn/hike/internal/wire"
)

// exchange is one request/response exchange that we initiate (a task in
// strongSwan's terms). The engine owns Message IDs, retransmission and
// protection; an exchange only writes its request payloads and handles the
// response, so each file of this package reads as one protocol exchange.
type exchange interface {
	kind() wire.ExchangeType
	// build appends the request's payloads: inside SK for every exchange but
	// IKE_SA_INIT, where w also holds the header.
	build(e *Engine, sa *SA, w *wire.Builder) error
	// process handles the response. An error fails the exchange; what that
	// means for the SA is the exchange's decision, taken before returning.
	process(e *Engine, sa *SA, in *inbound) error
}

// abandoner is implemented by exchanges that must clean up when they never
// complete (the SA died, or the peer stopped answering).
type abandoner interface{ abandon(error) }

// inbound is a received message after decryption.
type inbound struct {
	hdr           wire.Header
	raw           []byte         // the message as received (IKE_SA_INIT: signed by AUTH)
	payloads      []wire.Payload // inner payloads, or the plain chain of IKE_SA_INIT
	local, remote netip.AddrPort
	request       [][]byte // for a response: the request it answers
}

func (in *inbound) find(t wire.PayloadType) (wire.Payload, bool) { return wire.Find(in.payloads, t) }

// notify returns the first notify of type t.
func (in *inbound) notify(t wire.NotifyType) (wire.Notify, bool) {
	for _, p := range in.payloads {
		if p.Type != wire.PayloadNotify {
			continue
		}
		if n, err := wire.ParseNotify(p.Body); err == nil && n.Type == t {
			return n, true
		}
	}
	return wire.Notify{}, false
}

// errorNotify returns the first error notify, if any: in a response it
// means the request failed (RFC 7296 §3.10.1).
func (in *inbound) errorNotify() (wire.NotifyType, bool) {
	for _, p := range in.payloads {
		if p.Type != wire.PayloadNotify {
			continue
		}
		if n, err := wire.ParseNotify(p.Body); err == nil && n.Type.IsError() {
			return n.Type, true
		}
	}
	return 0, false
}

// postAction is what the engine does after a response has been sent.
type postAction uint8

const (
	postNone postAction = iota
	postDeleteSA
)

var errDrop = errors.New("message dropped")

// errUnprotected is a message after IKE_SA_INIT without an SK or SKF
// payload. It is not a *wire.Error: nothing in it is authenticated, so it
// must be dropped, never answered, never move the peer nor consume a
// Message ID.
var errUnprotected = errors.New("message has no encrypted payload")

// handleMessage processes one datagram for an existing SA; sa.mu is held.
func (e *Engine) handleMessage(sa *SA, local, remote netip.AddrPort, b []byte) {
	var m wire.Message
	if err := m.Parse(b); err != nil {
		e.stats.Malformed.Add(1)
		e.limitedDebug("malformed message", "sa", sa.logID(), "err", err)
		return
	}
	if m.Header.IsResponse() {
		e.handleResponse(sa, &m, local, remote)
	} else {
		e.handleRequest(sa, &m, local, remote)
	}
	if sa.state != StateDead {
		e.rearm(sa)
	}
}

// handleRequest answers a request from the peer (RFC 7296 §2.1-2.2).
func (e *Engine) handleRequest(sa *SA, m *wire.Message, local, remote netip.AddrPort) {
	h := &m.Header
	if h.Exchange == wire.IKE_SA_INIT {
		e.retransmitInit(sa, m, local, remote)
		return
	}
	// A copy, taken before open: the SK payload is decrypted in place, and
	// the last 32 octets of a message hold ciphertext as well as the ICV
	// whenever the ICV is shorter, so the wire octets would be gone.
	var icvBuf [32]byte
	icv := icvBuf[:copy(icvBuf[:], tail(m.Raw, 32))]
	if c := &sa.cache; c.valid && h.MessageID == c.mid && bytes.Equal(icv[len(icv)-int(c.icvLen):], c.icv[:c.icvLen]) {
		// A retransmission: answer with the same octets, change nothing.
		e.stats.RetransmitsIn.Add(1)
		e.send(sa, c.packets)
		return
	}
	// A sync request always carries Message ID 0 (RFC 6311 §5.1), which
	// may be the one our cache answered: it is recognised by its content.
	maybeSync := h.MessageID == 0 && h.Exchange == wire.INFORMATIONAL && sa.ext.MIDSync
	if c := &sa.cache; c.valid && h.MessageID == c.mid && !maybeSync && e.authentic(sa, m) {
		// The same Message ID with other content: a cluster node that
		// took the SA over from a record without our answer, sending its
		// first request under the Message ID its predecessor used. RFC
		// 7296 §2.1 answers a Message ID already answered with the same
		// response, and so it learns that the request was processed.
		e.stats.RetransmitsIn.Add(1)
		e.send(sa, c.packets)
		return
	}
	// slack: taken over from a record, the predecessor may have answered
	// the request after the recorded one.
	slack := sa.recvSlack && h.MessageID == sa.nextRecv+1
	if h.MessageID != sa.nextRecv && !slack {
		if h.MessageID == 0 && e.maybeSyncRequest(sa, m, local, remote) {
			return
		}
		e.limitedDebug("unexpected message ID", "sa", sa.logID(), "mid", h.MessageID, "expected", sa.nextRecv)
		return
	}
	// A deleting SA still answers INFORMATIONAL: the old SA of a rekey the
	// peer started is deleted by the peer (RFC 7296 §2.18), and a Delete
	// that crosses our own must be answered too (§2.25).
	// A deleting SA still answers: INFORMATIONAL (a crossing Delete, RFC
	// 7296 §2.25) and CREATE_CHILD_SA (with TEMPORARY_FAILURE).
	if sa.sk == nil || (sa.state != StateEstablished && h.Exchange != wire.IKE_AUTH && sa.state != StateDeleting) {
		return
	}
	if sa.state == StateEstablished && h.Exchange == wire.IKE_AUTH {
		return
	}
	var inner [maxInner]wire.Payload
	in := inbound{hdr: *h, raw: m.Raw, local: local, remote: remote}
	var err error
	in.payloads, err = e.open(sa, m, inner[:0])
	var we *wire.Error
	authentic := err == nil || (errors.As(err, &we) && !errors.Is(err, crypto.ErrIntegrity))
	if !authentic {
		e.dropUndecryptable(sa, err)
		return
	}
	if err == nil && in.payloads == nil {
		return // a fragment of an incomplete message
	}
	if maybeSync && sa.state == StateEstablished && err == nil && isSyncRequest(in.payloads) {
		// The expected Message ID is still 0: we never had a request
		// from this peer, and the cluster's sync request arrives first.
		e.answerSync(sa, in.payloads)
		return
	}
	sa.lastHeard = e.now()
	if sa.recvSlack {
		sa.recvSlack = false
		sa.nextRecv = h.MessageID
	}
	e.followPeer(sa, local, remote)

	var w wire.Builder
	w.ResetChain(make([]byte, 0, 256))
	post := postNone
	if err == nil {
		post, err = e.respond(sa, &in, &w)
	} else {
		// Authentic but malformed (RFC 7296 §2.21.2, §2.5): the error
		// below answers it.
		e.stats.Malformed.Add(1)
		e.limitedInfo("malformed request", "sa", sa.logID(), "err", err)
	}
	if errors.As(err, &we) {
		// The request authenticated but is malformed (RFC 7296 §2.21.2):
		// answer INVALID_SYNTAX (or UNSUPPORTED_CRITICAL_PAYLOAD) alone.
		w.ResetChain(w.Finish()[:0])
		w.AddNotify(wire.Notify{Type: we.Notify, Data: we.NotifyData()})
	} else if errors.Is(err, errDrop) {
		return
	}
	e.stats.exchange(h.Exchange, true, err != nil)
	e.sendResponse(sa, h.Exchange, h.MessageID, &w, icv)
	sa.nextRecv++
	e.midMoved(sa)
	switch post {
	case postDeleteSA:
		e.remove(sa, "deleted by peer")
	}
	e.kick(sa)
}

// respond dispatches a request to its exchange.
func (e *Engine) respond(sa *SA, in *inbound, w *wire.Builder) (postAction, error) {
	switch in.hdr.Exchange {
	case wire.IKE_AUTH:
		return e.respondAuth(sa, in, w)
	case wire.CREATE_CHILD_SA:
		return e.respondCreateChild(sa, in, w)
	case wire.INFORMATIONAL:
		return e.respondInformational(sa, in, w)
	}
	// An unknown exchange type in a protected request: RFC 7296 §2.21 has
	// no better answer than INVALID_SYNTAX.
	return postNone, &wire.Error{Notify: wire.INVALID_SYNTAX, Reason: "unknown exchange type"}
}

// sendResponse seals, sends and caches a response.
func (e *Engine) sendResponse(sa *SA, x wire.ExchangeType, mid uint32, w *wire.Builder, reqICV []byte) {
	h := sa.header(x, true, mid)
	c := &sa.cache
	var reuse []byte
	if len(c.packets) == 1 {
		reuse = c.packets[0][:0]
	}
	packets, err := e.seal(sa, h, w, reuse)
	if err != nil {
		e.log.Warn("cannot protect response", "sa", sa.logID(), "err", err)
		return
	}
	e.send(sa, packets)
	c.valid = true
	c.mid = mid
	c.icvLen = uint8(copy(c.icv[:], reqICV))
	c.packets = packets
	c.at = e.now()
	e.checkMarks(sa)
}

// authentic reports whether m, a request in one datagram, passes its
// integrity check. It decrypts in place, so m is spent.
func (e *Engine) authentic(sa *SA, m *wire.Message) bool {
	if sa.sk == nil || len(m.Payloads) == 0 || m.Payloads[len(m.Payloads)-1].Type != wire.PayloadSK {
		return false
	}
	_, _, err := sa.sk.OpenInPlace(m.Raw, m.Payloads[len(m.Payloads)-1])
	return err == nil
}

// seal protects the chain in w into one datagram, or into RFC 7383
// fragments when negotiated and needed.
func (e *Engine) seal(sa *SA, h wire.Header, w *wire.Builder, buf []byte) ([][]byte, error) {
	inner := w.Finish()
	// RFC 7383 §2.5.1: 1280 octets per datagram unless configured; an IKE
	// message gets what the IP and UDP headers and the non-ESP marker leave.
	size := 1280
	if sa.conn != nil && sa.conn.FragmentSize > 0 {
		size = sa.conn.FragmentSize
	}
	size -= 8 + 4 + 20
	if addrOf(sa.remote).Is6() {
		size -= 20
	}
	if sa.ext.Fragmentation && wire.HeaderLen+sa.sk.Overhead(len(inner))+len(inner) > size {
		_, frags, err := sa.sk.SealFragments(nil, nil, h, w.First(), inner, size)
		return frags, err
	}
	pkt, err := sa.sk.Seal(buf, h, w.First(), inner)
	if err != nil {
		return nil, err
	}
	return [][]byte{pkt}, nil
}

// maxInner bounds the inner payloads parsed without allocating; longer
// chains still parse.
const maxInner = 32

// open decrypts the SK (or reassembles the SKF) payload of m and parses the
// inner chain into dst. It returns nil payloads and no error for a fragment
// that does not complete its message yet.
func (e *Engine) open(sa *SA, m *wire.Message, dst []wire.Payload) ([]wire.Payload, error) {
	if len(m.Payloads) == 0 {
		return nil, errUnprotected
	}
	last := m.Payloads[len(m.Payloads)-1]
	var plain []byte
	var first wire.PayloadType
	var err error
	switch last.Type {
	case wire.PayloadSK:
		plain, first, err = sa.sk.OpenInPlace(m.Raw, last)
	case wire.PayloadSKF:
		if !sa.ext.Fragmentation {
			return nil, errDrop
		}
		var done bool
		if sa.reasm == nil {
			sa.reasm = &crypto.Reassembler{}
		}
		plain, first, done, err = sa.reasm.Add(sa.sk, m.Raw, last)
		if err == nil && !done {
			return nil, nil
		}
		if done {
			// The reassembler owns plain until Reset; the caller is done
			// with it before the next message of this SA.
			defer sa.reasm.Reset()
		}
	default:
		return nil, errUnprotected
	}
	if err != nil {
		return nil, err
	}
	ps, err := wire.ParseChain(dst, first, plain)
	if err != nil {
		return nil, err
	}
	if ps == nil {
		ps = dst[:0:0]
	}
	return ps, nil
}

func (e *Engine) dropUndecryptable(sa *SA, err error) {
	if errors.Is(err, crypto.ErrIntegrity) || errors.Is(err, crypto.ErrFragmentDropped) {
		e.stats.IntegrityFail.Add(1)
	} else {
		e.stats.Malformed.Add(1)
	}
	e.limitedDebug("dropping undecryptable message", "sa", sa.logID(), "err", err)
}

// followPeer updates the peer's address after an authenticated message from
// a new one, but only where RFC 7296 §2.23 allows it: the peer is behind a
// NAT and we are not.
func (e *Engine) followPeer(sa *SA, local, remote netip.AddrPort) {
	if remote == sa.remote || !sa.ext.NATRemote || sa.ext.NATLocal {
		return
	}
	e.log.Info("peer moved", "sa", sa.logID(), "from", sa.remote, "to", remote)
	old := sa.remote
	sa.remote = remote
	sa.local = local
	for _, c := range sa.children {
		e.updateChildEncap(sa, c, old)
	}
	e.touch(sa)
}

// handleResponse matches a response to our outstanding request.
func (e *Engine) handleResponse(sa *SA, m *wire.Message, local, remote netip.AddrPort) {
	out := sa.out
	h := &m.Header
	if h.MessageID == 0 && h.Exchange == wire.INFORMATIONAL && sa.resync != nil && sa.state == StateEstablished {
		e.handleSyncResponse(sa, m)
		return
	}
	if out == nil || h.MessageID != out.mid || (h.Exchange != out.x.kind() && !sa.sendSlack) {
		e.limitedDebug("unexpected response", "sa", sa.logID(), "mid", h.MessageID)
		return
	}
	in := inbound{hdr: *h, raw: m.Raw, local: local, remote: remote, request: out.packets}
	var inner [maxInner]wire.Payload
	if h.Exchange == wire.IKE_SA_INIT {
		in.payloads = m.Payloads
	} else {
		ps, err := e.open(sa, m, inner[:0])
		if err != nil {
			e.dropUndecryptable(sa, err)
			return
		}
		if ps == nil {
			return
		}
		in.payloads = ps
	}
	sa.out = nil
	sa.nextSend++
	sa.lastHeard = e.now()
	e.midMoved(sa)
	if sa.sendSlack {
		sa.sendSlack = false
		if h.Exchange != out.x.kind() {
			// The peer answered our predecessor's request under this
			// Message ID and repeated that answer: it proves the peer
			// alive and the Message IDs in step, but answers nothing
			// we asked, so our exchange starts again under the next.
			e.log.Info("taken-over SA: peer repeated its answer to the previous owner", "sa", sa.logID(), "mid", h.MessageID)
			if r, ok := out.x.(rerunner); ok {
				sa.queue = append([]exchange{r.rerun()}, sa.queue...)
			} else if a, ok := out.x.(abandoner); ok {
				a.abandon(errDrop)
			}
			e.kick(sa)
			return
		}
	}
	err := out.x.process(e, sa, &in)
	e.stats.exchange(h.Exchange, false, err != nil)
	if f := e.cfg.OnExchange; f != nil {
		_, dpd := out.x.(*dpdExchange)
		f(ExchangeDone{Type: h.Exchange, DPD: dpd, RTT: e.now().Sub(out.sent), Failed: err != nil})
	}
	if err != nil {
		e.log.Info("exchange failed", "sa", sa.logID(), "exchange", h.Exchange, "err", err)
	}
	e.kick(sa)
}

// enqueue adds local work to the SA and starts it if nothing is in flight.
func (e *Engine) enqueue(sa *SA, x exchange) {
	sa.queue = append(sa.queue, x)
	e.kick(sa)
	e.rearm(sa)
}

// kick starts the next queued exchange when no request is outstanding.
func (e *Engine) kick(sa *SA) {
	if sa.resync != nil && sa.resync.active {
		// RFC 6311 §8.1: no ordinary request until the counters agree.
		return
	}
	for sa.out == nil && len(sa.queue) > 0 && sa.state != StateDead {
		x := sa.queue[0]
		sa.queue[0] = nil
		sa.queue = sa.queue[1:]
		if err := e.start(sa, x); err != nil {
			e.log.Info("cannot start exchange", "sa", sa.logID(), "exchange", x.kind(), "err", err)
			if a, ok := x.(abandoner); ok {
				a.abandon(err)
			}
		}
	}
}

func (e *Engine) start(sa *SA, x exchange) error {
	h := sa.header(x.kind(), false, sa.nextSend)
	var w wire.Builder
	var packets [][]byte
	if x.kind() == wire.IKE_SA_INIT {
		w.Reset(make([]byte, 0, 512), h)
		if err := x.build(e, sa, &w); err != nil {
			return err
		}
		packets = [][]byte{w.Finish()}
	} else {
		w.ResetChain(make([]byte, 0, 256))
		if err := x.build(e, sa, &w); err != nil {
			return err
		}
		var err error
		if packets, err = e.seal(sa, h, &w, nil); err != nil {
			return err
		}
	}
	now := e.now()
	sa.out = &outstanding{mid: h.MessageID, packets: packets, x: x, sent: now, next: now.Add(e.cfg.RetransmitTimeout)}
	e.send(sa, packets)
	e.checkMarks(sa)
	return nil
}

// onTimer runs whatever is due on sa; sa.mu is held.
func (e *Engine) onTimer(sa *SA) {
	now := e.now()
	if out := sa.out; out != nil && !now.Before(out.next) {
		if out.tries >= e.cfg.RetransmitTries {
			if _, dpd := out.x.(*dpdExchange); dpd {
				e.stats.DPDTimeouts.Add(1)
			}
			e.log.Info("peer not responding", "sa", sa.logID(), "remote", sa.remote, "exchange", out.x.kind(), "tries", out.tries+1)
			e.remove(sa, "retransmissions exhausted")
			return
		}
		out.tries++
		sa.stats.Retransmits++
		e.stats.Retransmits.Add(1)
		wait := float64(e.cfg.RetransmitTimeout) * math.Pow(e.cfg.RetransmitBase, float64(out.tries))
		out.next = now.Add(time.Duration(wait))
		e.send(sa, out.packets)
	}
	if p := sa.resync; p != nil && p.active {
		if _, at := p.r.Next(); !now.Before(at) && !e.resyncTimer(sa, now) {
			return
		}
	}
	if sa.state == StateInit && !sa.initiator && now.Sub(sa.created) > e.cfg.HalfOpenTimeout {
		e.remove(sa, "half-open timeout")
		return
	}
	if !sa.expireAt.IsZero() && !now.Before(sa.expireAt) {
		e.remove(sa, "lifetime expired")
		return
	}
	if sa.state == StateEstablished {
		e.keepalive(sa, now)
		e.childTimers(sa, now)
		if !sa.rekeyAt.IsZero() && !now.Before(sa.rekeyAt) {
			sa.rekeyAt = time.Time{}
			e.enqueue(sa, &ikeRekeyExchange{})
		}
		if d := sa.dpdDelay(); d > 0 {
			due := sa.lastHeard.Add(d)
			if !now.Before(due) && sa.out == nil && len(sa.queue) == 0 {
				sa.stats.DPDSent++
				e.stats.DPDSent.Add(1)
				e.enqueue(sa, &dpdExchange{})
				due = now.Add(d)
			}
			sa.dpdAt = due
		}
	}
	e.kick(sa)
	e.rearm(sa)
}

func (sa *SA) dpdDelay() time.Duration {
	if sa.conn == nil {
		return 0
	}
	return sa.conn.DPDDelay
}

func tail(b []byte, n int) []byte {
	if len(b) < n {
		return b
	}
	return b[len(b)-n:]
}

// keepalive keeps a NAT mapping open while we are behind one (RFC 3948
// §2.3): any packet would do, but after an interval of silence a single
// 0xFF octet is the cheapest.
func (e *Engine) keepalive(sa *SA, now time.Time) {
	d := sa.conn.NATKeepalive
	if !sa.ext.NATLocal || d <= 0 || e.cfg.Keepalive == nil {
		sa.keepAt = time.Time{}
		return
	}
	if sa.keepAt.IsZero() {
		sa.keepAt = now.Add(d)
		return
	}
	if !now.Before(sa.keepAt) {
		e.cfg.Keepalive(sa.local, sa.remote)
		sa.keepAt = now.Add(d)
	}
}
