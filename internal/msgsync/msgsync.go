package msgsync

import (
	"crypto/rand"
	"math"
	"math/bits"
)

// Nonce is the 4-octet random value that ties a sync response to its request
// (RFC 6311 §6.3).
type Nonce [4]byte

// NewNonce returns a fresh unpredictable nonce. It is the only function in
// this package that is not pure; the rules themselves take the nonce as input
// so that they can be tested deterministically.
func NewNonce() Nonce {
	var n Nonce
	rand.Read(n[:]) // never fails since Go 1.24; it aborts the process instead
	return n
}

// Sync is the content of one IKEV2_MESSAGE_ID_SYNC notify, always from the
// viewpoint of the endpoint that sends it (RFC 6311 §6.3). A request carries
// (M1, P1) and its response (P2, M2): the same fields, roles reversed.
type Sync struct {
	Nonce Nonce
	// Send is EXPECTED_SEND_REQ_MESSAGE_ID: the Message ID of the next request
	// the sender will send.
	Send uint32
	// Recv is EXPECTED_RECV_REQ_MESSAGE_ID: the Message ID of the next request
	// the sender expects to receive.
	Recv uint32
}

// Counters is the part of an IKE SA's Message ID state the sync rules read and
// write. RFC 7296 §2.3 windows above 1 are covered by InFlight and RecvEnd;
// with the default window of 1, InFlight holds at most NextSend-1 and RecvEnd
// equals NextRecv.
type Counters struct {
	// NextSend is the Message ID our next new request will carry: one more
	// than the highest Message ID we have used for a request.
	NextSend uint32
	// InFlight holds our requests that still await a response, usually
	// anchored at NextSend (Requests{Below: NextSend, Bits: ...}).
	InFlight Requests
	// NextRecv is the lowest request Message ID from the other side that we
	// have not received yet.
	NextRecv uint32
	// RecvEnd is one more than the highest request Message ID received from
	// the other side, or 0 if none was received. It exceeds NextRecv when
	// requests arrived out of order inside the window.
	RecvEnd uint32
}

// sendFloor is the lowest Message ID we may use for a new request without
// colliding with one we already sent. An InFlight set reaching past NextSend
// is inconsistent input, but counting it costs nothing and keeps P2 honest.
func (c Counters) sendFloor() uint32 { return max(c.NextSend, c.InFlight.end()) }

// recvFloor is the lowest Message ID the other side may use for its next new
// request without colliding with one we already received.
func (c Counters) recvFloor() uint32 { return max(c.NextRecv, c.RecvEnd) }

// Requests is a set of our own request Message IDs just below Below: bit i
// stands for Message ID Below-1-i.
type Requests struct {
	Below uint32
	Bits  uint64
}

// Empty reports whether the set holds no request.
func (r Requests) Empty() bool { return r.valid() == 0 }

// valid returns Bits without the bits that would name negative Message IDs.
func (r Requests) valid() uint64 {
	if r.Below < 64 {
		return r.Bits & (1<<r.Below - 1)
	}
	return r.Bits
}

// end returns one more than the highest Message ID in the set, 0 if empty.
func (r Requests) end() uint32 {
	b := r.valid()
	if b == 0 {
		return 0
	}
	return r.Below - uint32(bits.TrailingZeros64(b))
}

// normal returns r without meaningless bits, or the zero value if empty, so
// that equal sets compare equal.
func (r Requests) normal() Requests {
	if b := r.valid(); b != 0 {
		return Requests{Below: r.Below, Bits: b}
	}
	return Requests{}
}

// Has reports whether mid is in the set.
func (r Requests) Has(mid uint32) bool {
	if mid >= r.Below {
		return false
	}
	i := r.Below - 1 - mid
	return i < 64 && r.Bits&(1<<i) != 0
}

// AppendMIDs appends the Message IDs in the set to dst in ascending order.
func (r Requests) AppendMIDs(dst []uint32) []uint32 {
	b := r.valid()
	for i := 63; i >= 0; i-- {
		if b&(1<<i) != 0 {
			dst = append(dst, r.Below-1-uint32(i))
		}
	}
	return dst
}

// Action tells the caller what to do next. Each method documents which
// actions it returns.
type Action uint8

const (
	// Drop: discard the message silently; the Reason says why.
	Drop Action = iota
	// Answer: send the reply, install the new counters, abandon the listed
	// requests and run their operations again as new exchanges.
	Answer
	// Repeat: send the same reply as last time; change nothing, not even
	// replay counters.
	Repeat
	// Wait: nothing is due yet; Resync.Next tells when something will be.
	Wait
	// Resend: retransmit the identical request bytes.
	Resend
	// Renew: build a new request; call Resync.Renew with a fresh nonce.
	Renew
	// GiveUp: the procedure failed; delete the IKE SA (RFC 6311 §8.3 prefers
	// tearing down over living with inconsistent state).
	GiveUp
	// Done: a valid response was accepted; install the new counters.
	Done
)

var actionNames = [...]string{"drop", "answer", "repeat", "wait", "resend", "renew", "give-up", "done"}

func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "action(?)"
}

// Reason explains a Drop, a GiveUp or a skipped replay-counter update. The
// zero value means there is nothing to explain.
type Reason uint8

const (
	ReasonNone Reason = iota
	// ReasonNotNegotiated: IKEV2_MESSAGE_ID_SYNC_SUPPORTED was not exchanged
	// by both sides in IKE_AUTH (RFC 6311 §5).
	ReasonNotNegotiated
	// ReasonStaleM1: M1 does not exceed the highest M1 already accepted on
	// this IKE SA (RFC 6311 §5.1, §11).
	ReasonStaleM1
	// ReasonReplay: a byte-identical copy of the last accepted request after
	// the cluster has already used the answer.
	ReasonReplay
	// ReasonExhausted: the 32-bit Message ID space has no room for the
	// required value; the IKE SA must be replaced.
	ReasonExhausted
	// ReasonNonceMismatch: a response whose nonce is not the current
	// request's (RFC 6311 §5.1).
	ReasonNonceMismatch
	// ReasonDuplicate: a further copy of the response already accepted
	// (RFC 6311 §11).
	ReasonDuplicate
	// ReasonNotPending: no request is outstanding (the procedure gave up).
	ReasonNotPending
	// ReasonBadResponse: the response lowers a counter (M2 < M1 or P2 < P1),
	// which §5.1 forbids.
	ReasonBadResponse
	// ReasonTimeout: every retransmission and the renewed request went
	// unanswered.
	ReasonTimeout
	// ReasonDeltaLength: the replay-counter delta's length does not match the
	// Child SA's ESN setting (RFC 6311 §6.4).
	ReasonDeltaLength
	// ReasonOverflow: the sequence number would pass its maximum; rekey the
	// Child SA instead (RFC 4303 §3.3.3 forbids cycling).
	ReasonOverflow
)

var reasonNames = [...]string{
	"", "sync not negotiated", "M1 not above highest accepted M1",
	"replay of an answered sync request", "message ID space exhausted",
	"nonce mismatch", "duplicate response", "no sync request pending",
	"response lowers a counter", "no response", "delta length does not match ESN",
	"sequence number overflow, rekey instead",
}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "reason(?)"
}

// addMID adds a and b unless the sum leaves the 32-bit Message ID space.
func addMID(a, b uint32) (uint32, bool) {
	if b > math.MaxUint32-a {
		return 0, false
	}
	return a + b, true
}
