package msgsync

import (
	"math"
	"time"
)

// FallbackJump is the jump RFC 6311 §5.2 suggests when the traffic rate
// cannot be estimated. A Child SA advanced by it should be rekeyed soon.
const FallbackJump = 1 << 30

// AdvanceSeq adds delta to a Child SA's outbound sequence counter seq (the
// last sequence number sent, RFC 4303 §3.3.3). Without ESN the counter must
// stay within 32 bits, with ESN within 64; a sum past that returns seq
// unchanged and ReasonOverflow, because RFC 4303 forbids cycling the counter:
// rekey the Child SA instead.
func AdvanceSeq(seq uint64, esn bool, delta uint64) (uint64, Reason) {
	limit := uint64(math.MaxUint64)
	if !esn {
		limit = math.MaxUint32
	}
	if seq > limit || delta > limit-seq {
		return seq, ReasonOverflow
	}
	return seq + delta, ReasonNone
}

// ApplyReplayDelta applies the delta of an incoming IPSEC_REPLAY_COUNTER_SYNC
// notify (RFC 6311 §6.4), octets long on the wire, to one Child SA's outbound
// counter seq. The field is 8 octets for ESN Child SAs and 4 otherwise; a
// length that does not match this Child SA's ESN setting cannot be
// interpreted, so the update is skipped with ReasonDeltaLength (the message-ID
// part of the same message is still answered).
func ApplyReplayDelta(seq uint64, esn bool, delta uint64, octets int) (uint64, Reason) {
	want := 4
	if esn {
		want = 8
	}
	if octets != want || (!esn && delta > math.MaxUint32) {
		return seq, ReasonDeltaLength
	}
	return AdvanceSeq(seq, esn, delta)
}

// JumpInput is what the newly active member knows about one direction of an
// IKE SA's Child SAs when it estimates how far the counters moved after the
// last replication.
type JumpInput struct {
	// Rate is the packet rate in packets per second observed before the
	// failover; zero, negative, NaN or infinite means unknown.
	Rate float64
	// Since is the time from the last replicated counter value to now.
	Since time.Duration
	// Safety multiplies the estimate; values below 1 count as 1.
	Safety float64
	// Window is the receiver's replay window size in packets (RFC 4303
	// §3.4.3).
	Window uint32
}

// MaxJump returns the largest jump that keeps an ESN receiver with the given
// replay window inferring the high-order 32 bits correctly: RFC 4303 App. A2.2
// places a received low half within 2^32 of the bottom of the window, so the
// jump must stay below 2^32 - window. The same cap is used without ESN, where
// a 32-bit counter cannot take a larger jump anyway.
func MaxJump(window uint32) uint64 {
	return 1<<32 - uint64(max(window, 1)) - 1
}

// EstimateJump chooses how far to advance a counter after a failover: the
// cluster's own outbound counter (§5.2: MUST advance) and, for the other
// direction, the delta to send in IPSEC_REPLAY_COUNTER_SYNC. The estimate is
// Rate × Since × Safety, rounded up. If the rate is unknown the jump is
// FallbackJump and earlyRekey is set (§5.2: "a rekey SHOULD follow shortly
// afterwards"). Either value is capped at MaxJump(Window); a capped estimate
// may not cover all missed packets, so it sets earlyRekey as well.
//
// With hike's replicated reservation mark the outbound counter needs no
// estimate: the mark is exact. EstimateJump remains for the inbound delta,
// which the peer advances and nobody can reserve.
func EstimateJump(in JumpInput) (jump uint64, earlyRekey bool) {
	limit := MaxJump(in.Window)
	if !(in.Rate > 0) || math.IsInf(in.Rate, 0) || in.Since < 0 {
		return min(FallbackJump, limit), true
	}
	safety := in.Safety
	if !(safety >= 1) { // also catches NaN
		safety = 1
	}
	est := math.Ceil(in.Rate * in.Since.Seconds() * safety)
	if math.IsNaN(est) || est >= float64(limit) {
		return limit, true
	}
	return uint64(est), false
}
