package msgsync

import (
	"errors"
	"time"
)

// ResyncConfig tunes the cluster role. The zero value adds nothing to the
// known send Message ID and retransmits with the defaults below.
type ResyncConfig struct {
	// Window is the IKE sender window (RFC 7296 §2.3). §5.1 RECOMMENDS adding
	// at least this much to the known send Message ID, because the old member
	// may have had that many requests in flight past the last replicated value.
	Window uint32
	// Margin is added on top of Window. With hike's replicated reservation
	// mark (DESIGN.md) the known value is already an upper bound, so Window
	// alone suffices; with periodically replicated values the margin must
	// cover what the old member sent between two replications.
	Margin uint32
	// Timeout is the first retransmission timeout; it doubles after each
	// retransmission. Zero means DefaultTimeout.
	Timeout time.Duration
	// Resends is how many times each request is retransmitted unchanged
	// before it is given up. Zero means DefaultResends; negative means none.
	Resends int
}

const (
	DefaultTimeout = time.Second
	DefaultResends = 3
	// maxBackoff bounds the doubling so that a large Resends cannot push a
	// retransmission into the far future.
	maxBackoff = time.Minute
)

// ErrExhausted reports that M1 would leave the 32-bit Message ID space; the
// IKE SA has to be replaced instead of synchronized.
var ErrExhausted = errors.New("msgsync: message ID space exhausted")

// ErrNotDue reports a Renew call that the schedule did not ask for, or a nonce
// that does not differ from the previous one.
var ErrNotDue = errors.New("msgsync: renew not due or nonce reused")

type resyncState uint8

const (
	pending resyncState = iota
	renewDue
	done
	failed
)

// Resync is one cluster-side RFC 6311 message-ID synchronization of one IKE
// SA: the newly active member runs exactly one per IKE SA per failover event
// (§7, which limits what replayed trigger packets can provoke). It sends a
// request, retransmits it unchanged with exponential backoff, then sends one
// new request with a higher M1 and a new nonce, and gives up if that is not
// answered either. It accepts exactly one response.
//
// To survive a second failover while the procedure runs, the caller should
// replicate Request().Send (M1) to the other members (§5.1): a member that
// takes over later must pass a known NextSend of at least M1 + 1, or the peer
// drops its request as a replay and the IKE SA is lost.
type Resync struct {
	cfg      ResyncConfig
	req      Sync
	state    resyncState
	attempt  uint8 // 1 for the first request, 2 for the renewed one
	resent   int   // retransmissions of the current request so far
	deadline time.Time
	reason   Reason
}

// NewResync starts a procedure from the counters the member knows from
// replicated state. M1 = known.NextSend + Window + Margin and P1 = the Message
// ID after the last request received from the peer. The caller sends
// Request() now, installs Hold(counters), and calls Expire at Next's time.
func NewResync(cfg ResyncConfig, known Counters, nonce Nonce, now time.Time) (Resync, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Resends == 0 {
		cfg.Resends = DefaultResends
	} else if cfg.Resends < 0 {
		cfg.Resends = 0
	}
	step, ok := addMID(cfg.Window, cfg.Margin)
	if !ok {
		return Resync{}, ErrExhausted
	}
	m1, ok := addMID(known.NextSend, step)
	if !ok {
		return Resync{}, ErrExhausted
	}
	return Resync{
		cfg:      cfg,
		req:      Sync{Nonce: nonce, Send: m1, Recv: known.recvFloor()},
		attempt:  1,
		deadline: now.Add(cfg.Timeout),
	}, nil
}

// Request returns the current request: (nonce, M1, P1).
func (r *Resync) Request() Sync { return r.req }

// Hold returns cur raised to what the current request declared: the member
// sends no request below M1 and, per §8.1, accepts no request below P1 from
// now on. Install it when the request is first sent and after Renew. While
// the procedure is pending the member should send no ordinary requests.
func (r *Resync) Hold(cur Counters) Counters {
	return raise(cur, r.req.Send, r.req.Recv)
}

// Next reports the action Expire will return once the time it reports has
// come: Resend, Renew or GiveUp while pending, Renew while a renewal is due
// (with the zero time: now), and Done or GiveUp (zero time) once finished.
func (r *Resync) Next() (Action, time.Time) {
	switch r.state {
	case pending:
		switch {
		case r.resent < r.cfg.Resends:
			return Resend, r.deadline
		case r.attempt == 1:
			return Renew, r.deadline
		default:
			return GiveUp, r.deadline
		}
	case renewDue:
		return Renew, time.Time{}
	case done:
		return Done, time.Time{}
	default:
		return GiveUp, time.Time{}
	}
}

// Expire advances the schedule to now. It returns Wait if nothing is due,
// Resend (retransmit the identical bytes of the current request), Renew (call
// Renew), GiveUp (delete the IKE SA; Reason tells why) or Done.
func (r *Resync) Expire(now time.Time) Action {
	act, at := r.Next()
	if r.state != pending {
		return act
	}
	if now.Before(at) {
		return Wait
	}
	switch act {
	case Resend:
		r.resent++
		r.deadline = now.Add(backoff(r.cfg.Timeout, r.resent))
	case Renew:
		r.state = renewDue
	case GiveUp:
		r.state, r.reason = failed, ReasonTimeout
	}
	return act
}

// backoff is the wait after the n-th retransmission: the timeout doubled n
// times, capped at maxBackoff (or at the timeout itself if that is longer).
func backoff(t time.Duration, n int) time.Duration {
	limit := max(t, maxBackoff)
	for ; n > 0 && t < limit; n-- {
		t *= 2
	}
	return min(t, limit)
}

// Renew replaces the unanswered request by a new one with a higher M1 (raised
// by Window + Margin, at least 1, so that a peer which did see the first
// request still accepts the second) and the fresh nonce, and restarts the
// retransmission schedule. It is valid only after Expire returned Renew. If
// M1 would leave the Message ID space the procedure gives up and Renew
// returns ErrExhausted.
func (r *Resync) Renew(nonce Nonce, now time.Time) (Sync, error) {
	if r.state != renewDue || nonce == r.req.Nonce {
		return r.req, ErrNotDue
	}
	step, _ := addMID(r.cfg.Window, r.cfg.Margin) // checked in NewResync
	m1, ok := addMID(r.req.Send, max(step, 1))
	if !ok {
		r.state, r.reason = failed, ReasonExhausted
		return r.req, ErrExhausted
	}
	r.req = Sync{Nonce: nonce, Send: m1, Recv: r.req.Recv}
	r.state, r.attempt, r.resent = pending, 2, 0
	r.deadline = now.Add(r.cfg.Timeout)
	return r.req, nil
}

// Reason tells why the procedure gave up; ReasonNone otherwise.
func (r *Resync) Reason() Reason { return r.reason }

// Outcome is the cluster role's decision on one sync response.
type Outcome struct {
	Action Action // Drop, Done or GiveUp
	Reason Reason // why, for Drop and GiveUp
	// Install holds the counters to continue with, for Done.
	Install Counters
	// Abandon lists requests sent while the procedure ran, for Done; their
	// operations are to be run again from Install.NextSend on.
	Abandon Requests
}

// Accept applies a sync response resp (nonce, P2, M2) to the procedure; cur
// is the IKE SA's counters now, which include whatever answering a crossing
// sync request from the peer installed meanwhile (App. A.4).
//
// The response states the peer's view (§6.3): resp.Send is the Message ID of
// the peer's next request, so it becomes our next expected receive, and
// resp.Recv is the Message ID the peer expects in our next request, so it
// becomes our next send. Both rest on the field definitions of §6.3 ("the
// Message ID it will use in the next request that it will send to the other
// protocol peer" and "the Message ID it is expecting in the next request to
// be received from the other protocol peer") and on App. A's note that
// synchronized counters appear reversed between the two sides ("If one
// protocol party intends to send the next request as 4, then the other
// expects the next received request to be 4").
//
// Taking the component-wise maximum with cur makes simultaneous failover
// converge: each side has raised its counters when answering the other's
// request, and App. A.4 expects "the higher counter values" as the outcome.
func (r *Resync) Accept(resp Sync, cur Counters) Outcome {
	switch r.state {
	case done:
		if resp.Nonce == r.req.Nonce {
			return Outcome{Action: Drop, Reason: ReasonDuplicate}
		}
		return Outcome{Action: Drop, Reason: ReasonNonceMismatch}
	case failed:
		return Outcome{Action: Drop, Reason: ReasonNotPending}
	}
	// A renewal that is due but not yet sent leaves the first request
	// current: its answer is still the one §11 lets us accept.
	if resp.Nonce != r.req.Nonce {
		return Outcome{Action: Drop, Reason: ReasonNonceMismatch}
	}
	if resp.Recv < r.req.Send || resp.Send < r.req.Recv {
		// The nonce proves the response is the peer's authenticated answer,
		// so retransmitting cannot get a better one.
		r.state, r.reason = failed, ReasonBadResponse
		return Outcome{Action: GiveUp, Reason: ReasonBadResponse}
	}
	r.state = done
	in := raise(cur, resp.Recv, resp.Send)
	in.InFlight = Requests{}
	return Outcome{Action: Done, Install: in, Abandon: cur.InFlight.normal()}
}

// raise returns c with its send side at least send and its receive side at
// least recv.
func raise(c Counters, send, recv uint32) Counters {
	c.NextSend = max(c.sendFloor(), send)
	c.NextRecv = max(c.NextRecv, recv)
	c.RecvEnd = max(c.RecvEnd, c.NextRecv)
	return c
}
