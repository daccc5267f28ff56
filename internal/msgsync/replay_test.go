package msgsync

import (
	"math"
	"testing"
	"time"
)

func TestAdvanceSeq(t *testing.T) {
	const max32, max64 = math.MaxUint32, math.MaxUint64
	for _, tc := range []struct {
		name   string
		seq    uint64
		esn    bool
		delta  uint64
		want   uint64
		reason Reason
	}{
		{"non-ESN 2^30 jump", 1000, false, 1 << 30, 1000 + 1<<30, ReasonNone},
		{"non-ESN reaches 2^32-1", max32 - 5, false, 5, max32, ReasonNone},
		{"non-ESN past 2^32-1", max32 - 5, false, 6, max32 - 5, ReasonOverflow},
		{"non-ESN delta alone past 2^32-1", 0, false, 1 << 32, 0, ReasonOverflow},
		{"non-ESN counter already out of range", 1 << 32, false, 0, 1 << 32, ReasonOverflow},
		{"ESN crosses 2^32", max32, true, 1 << 30, max32 + 1<<30, ReasonNone},
		{"ESN reaches 2^64-1", max64 - 5, true, 5, max64, ReasonNone},
		{"ESN past 2^64-1", max64 - 5, true, 6, max64 - 5, ReasonOverflow},
		{"zero delta", 77, false, 0, 77, ReasonNone},
	} {
		got, reason := AdvanceSeq(tc.seq, tc.esn, tc.delta)
		if got != tc.want || reason != tc.reason {
			t.Errorf("%s: got %d (%v), want %d (%v)", tc.name, got, reason, tc.want, tc.reason)
		}
	}
}

// TestApplyReplayDelta covers RFC 6311 §6.4: the delta is 8 octets for ESN
// Child SAs and 4 otherwise.
func TestApplyReplayDelta(t *testing.T) {
	for _, tc := range []struct {
		name   string
		esn    bool
		delta  uint64
		octets int
		want   uint64
		reason Reason
	}{
		{"non-ESN 4 octets", false, 500, 4, 600, ReasonNone},
		{"ESN 8 octets", true, 1 << 40, 8, 100 + 1<<40, ReasonNone},
		{"ESN SA, 4-octet delta", true, 500, 4, 100, ReasonDeltaLength},
		{"non-ESN SA, 8-octet delta", false, 500, 8, 100, ReasonDeltaLength},
		{"empty delta", false, 0, 0, 100, ReasonDeltaLength},
		{"4 octets cannot hold it", false, 1 << 32, 4, 100, ReasonDeltaLength},
		{"non-ESN overflow", false, math.MaxUint32 - 99, 4, 100, ReasonOverflow},
	} {
		got, reason := ApplyReplayDelta(100, tc.esn, tc.delta, tc.octets)
		if got != tc.want || reason != tc.reason {
			t.Errorf("%s: got %d (%v), want %d (%v)", tc.name, got, reason, tc.want, tc.reason)
		}
	}
}

func TestEstimateJump(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    JumpInput
		want  uint64
		early bool
	}{
		{"estimate", JumpInput{Rate: 1000, Since: 2 * time.Second, Safety: 1.5, Window: 64}, 3000, false},
		{"rounded up", JumpInput{Rate: 3, Since: 500 * time.Millisecond, Safety: 1, Window: 64}, 2, false},
		{"safety below 1 counts as 1", JumpInput{Rate: 1000, Since: 2 * time.Second, Safety: 0.5, Window: 64}, 2000, false},
		{"safety NaN counts as 1", JumpInput{Rate: 1000, Since: time.Second, Safety: math.NaN(), Window: 64}, 1000, false},
		{"no traffic", JumpInput{Rate: 1e-9, Since: 0, Safety: 2, Window: 64}, 0, false},
		{"unknown rate", JumpInput{Since: time.Second, Safety: 2, Window: 64}, 1 << 30, true},
		{"negative rate", JumpInput{Rate: -1, Since: time.Second, Window: 64}, 1 << 30, true},
		{"NaN rate", JumpInput{Rate: math.NaN(), Since: time.Second, Window: 64}, 1 << 30, true},
		{"infinite rate", JumpInput{Rate: math.Inf(1), Since: time.Second, Window: 64}, 1 << 30, true},
		{"negative interval", JumpInput{Rate: 10, Since: -time.Second, Window: 64}, 1 << 30, true},
		{"capped below 2^32 - window", JumpInput{Rate: 1e9, Since: time.Hour, Safety: 2, Window: 64}, 1<<32 - 65, true},
		{"infinite safety", JumpInput{Rate: 1, Since: time.Second, Safety: math.Inf(1), Window: 64}, 1<<32 - 65, true},
		{"window so large the fallback is capped", JumpInput{Window: 3 << 30}, 1<<30 - 1, true},
	} {
		got, early := EstimateJump(tc.in)
		if got != tc.want || early != tc.early {
			t.Errorf("%s: got %d early=%v, want %d early=%v", tc.name, got, early, tc.want, tc.early)
		}
	}
}

// inferESN is the receiver's reconstruction of a 64-bit sequence number from
// its low 32 bits, typed in from RFC 4303 Appendix A2.2 (T is the highest
// sequence number authenticated so far, W the window size).
func inferESN(seql uint32, top uint64, w uint32) uint64 {
	th, tl := uint32(top>>32), uint32(top)
	var seqh uint32
	if tl >= w-1 { // Case A: window within one sub-space
		if seql >= tl-w+1 {
			seqh = th
		} else {
			seqh = th + 1
		}
	} else { // Case B: window spans two sub-spaces
		if seql >= tl-w+1 {
			seqh = th - 1
		} else {
			seqh = th
		}
	}
	return uint64(seqh)<<32 | uint64(seql)
}

// TestMaxJumpKeepsESNInference checks the cap against RFC 4303 App. A2.2: a
// receiver that saw everything up to T must reconstruct the first packet sent
// after a jump of MaxJump(W), and must fail one step further, so the cap is
// as large as it may be.
func TestMaxJumpKeepsESNInference(t *testing.T) {
	for _, w := range []uint32{32, 64, 1024} {
		for _, top := range []uint64{1000, 1<<32 + 5, 7<<32 + 0xfffffff0, 3<<32 - 1} {
			for extra, wantOK := range []bool{true, false} {
				jump := MaxJump(w) + uint64(extra)
				next := top + jump + 1 // the counter is the last number sent
				ok := inferESN(uint32(next), top, w) == next
				if ok != wantOK {
					t.Errorf("W %d, T %#x, jump MaxJump+%d: inferred correctly = %v", w, top, extra, ok)
				}
			}
		}
	}
}
