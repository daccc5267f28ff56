package xfrm

import (
	"fmt"

	dp "github.com/hike-vpn/hike/internal/dataplane"
)

// The kernel keeps two replay layouts (net/xfrm/xfrm_replay.c):
//
//   - legacy (XFRMA_REPLAY_VAL): one 32-bit word, bit i = seq-i, the same
//     orientation as dp.Replay.Bitmap;
//   - bmp/ESN (XFRMA_REPLAY_ESN_VAL): a ring of window bits in which
//     sequence number s lives at bit (s-1) mod window, computed on the low
//     32 bits.
//
// dp.Replay is anchored at the highest received number instead, so that
// state moves between backends and kernels unchanged.
//
// The ring arithmetic is on uint32, so with a window that does not divide
// 2^32 the kernel files the very first packet (top 0 -> 1) at a position
// its own check never looks at again. Powers of two avoid that; the
// conversion here mirrors the check, which is what decides acceptance.

// ringBit is the ring position of the number i below the top, given the
// low 32 bits of the top, exactly as xfrm_replay_check_esn computes it.
func ringBit(seqLo, window, i uint32) uint32 {
	pos := (seqLo - 1) % window
	return (pos + window - i) % window
}

func bitSet(bm []uint32, n uint32) bool {
	w := n / 32
	return int(w) < len(bm) && bm[w]&(1<<(n%32)) != 0
}

// toReplay converts the kernel's inbound state. window is the SA's window
// for the legacy layout (from XFRM_MSG_GETSA).
func toReplay(r *replayState, legacyWindow uint32) dp.Replay {
	if !r.esnLayout {
		var bm uint32
		if len(r.bmp) > 0 {
			bm = r.bmp[0]
		}
		return dp.Replay{Seq: uint64(r.seq), Window: legacyWindow, Bitmap: []uint32{bm}}
	}
	out := dp.Replay{Seq: uint64(r.seqHi)<<32 | uint64(r.seq), Window: r.window}
	if r.window == 0 {
		return out
	}
	out.Bitmap = make([]uint32, (r.window+31)/32)
	for i := range r.window {
		if bitSet(r.bmp, ringBit(r.seq, r.window, i)) {
			out.Bitmap[i/32] |= 1 << (i % 32)
		}
	}
	return out
}

// fromReplay writes want into cur (the state just read from the kernel),
// keeping the outbound counter and the layout. esn says whether the SA
// carries the upper 32 bits.
func fromReplay(cur *replayState, want *dp.Replay, esn bool) error {
	if !esn && want.Seq > 0xffffffff {
		return fmt.Errorf("sequence number %#x needs ESN", want.Seq)
	}
	if !cur.esnLayout {
		cur.seq = uint32(want.Seq)
		var bm uint32
		if len(want.Bitmap) > 0 {
			bm = want.Bitmap[0]
		}
		cur.bmp = []uint32{bm}
		return nil
	}
	cur.seq, cur.seqHi = uint32(want.Seq), uint32(want.Seq>>32)
	for i := range cur.bmp {
		cur.bmp[i] = 0
	}
	if cur.window == 0 {
		return nil
	}
	for i := range cur.window {
		if bitSet(want.Bitmap, i) {
			n := ringBit(cur.seq, cur.window, i)
			cur.bmp[n/32] |= 1 << (n % 32)
		}
	}
	return nil
}

// advance is the RFC 6311 §5.2 receiver step: move the top by delta and
// mark the whole window received (see dp.Backend.AdvanceReplay).
func advance(r *dp.Replay, delta uint64, esn bool) error {
	top := r.Seq + delta
	if top < r.Seq || (!esn && top > 0xffffffff) {
		return fmt.Errorf("advancing sequence %#x by %d overflows the counter; rekey instead", r.Seq, delta)
	}
	r.Seq = top
	w := r.Window
	if w == 0 {
		w = uint32(len(r.Bitmap)) * 32
	}
	for i := range r.Bitmap {
		r.Bitmap[i] = 0
	}
	for i := uint32(0); i < w && i < uint32(len(r.Bitmap))*32; i++ {
		if uint64(i) < top { // numbers below 1 do not exist
			r.Bitmap[i/32] |= 1 << (i % 32)
		}
	}
	return nil
}
