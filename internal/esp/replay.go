package esp

// window is an anti-replay window in the style of RFC 6479: a ring of 64-bit
// blocks, so that sliding the window forward clears whole words instead of
// shifting a bitmap, and a check costs one load and one mask.
//
// It holds full 64-bit sequence numbers; for non-ESN SAs the high half is
// simply always zero. Sequence number 0 is never valid (RFC 4303 §3.3.3: the
// first packet carries 1).
type window struct {
	top  uint64   // highest sequence number counted as received (0: none)
	size uint64   // W: numbers in (top-W, top] are tracked, older ones rejected
	ring []uint64 // size/64 + 1 blocks: the window can straddle one more block
}

type verdict uint8

const (
	fresh verdict = iota
	duplicate
	tooOld
)

func newWindow(size uint64) window {
	return window{size: size, ring: make([]uint64, size/64+1)}
}

func (w *window) slot(seq uint64) (*uint64, uint64) {
	return &w.ring[(seq>>6)%uint64(len(w.ring))], 1 << (seq & 63)
}

func (w *window) check(seq uint64) verdict {
	switch {
	case seq == 0:
		return tooOld
	case seq > w.top:
		return fresh
	case w.top-seq >= w.size:
		return tooOld
	}
	if b, m := w.slot(seq); *b&m != 0 {
		return duplicate
	}
	return fresh
}

// moveTop slides the window so that newTop is its upper edge, without marking
// newTop itself. Blocks that the window newly covers are cleared; bits above
// the old top in its block were never set, so they need no clearing.
func (w *window) moveTop(newTop uint64) {
	if newTop <= w.top {
		return
	}
	n := uint64(len(w.ring))
	cur, next := w.top>>6, newTop>>6
	diff := next - cur
	if diff > n {
		diff = n
	}
	for i := uint64(1); i <= diff; i++ {
		w.ring[(cur+i)%n] = 0
	}
	w.top = newTop
}

// mark records seq as received. The caller has checked it.
func (w *window) mark(seq uint64) {
	w.moveTop(seq)
	b, m := w.slot(seq)
	*b |= m
}

// checkAndMark is check and mark under one critical section; Open uses it
// after authentication because the control plane may have moved the window
// since Open's first, pre-decryption check.
func (w *window) checkAndMark(seq uint64) verdict {
	v := w.check(seq)
	if v == fresh {
		w.mark(seq)
	}
	return v
}

// seen reports whether seq is inside the window and marked.
func (w *window) seen(seq uint64) bool {
	if seq == 0 || seq > w.top || w.top-seq >= w.size {
		return false
	}
	b, m := w.slot(seq)
	return *b&m != 0
}

// merge folds st into the window: the top becomes the larger of the two and
// every number seen in either is seen afterwards. Numbers at or below st.Top
// that st's bitmap does not cover count as seen, so a short or empty bitmap
// errs towards rejecting, never towards accepting a replay.
func (w *window) merge(st ReplayState) {
	w.moveTop(st.Top)
	if len(st.Bitmap) == 0 && st.Top == w.top {
		// Everything up to the top counts as received: whole words, no
		// per-bit loop, because a failover advances every SA this way.
		// Bits above the top must stay clear, or reordered packets just
		// above it would look like duplicates.
		for i := range w.ring {
			w.ring[i] = ^uint64(0)
		}
		b, m := w.slot(w.top)
		*b = m | (m - 1)
		return
	}
	covered := uint64(len(st.Bitmap)) * 64
	for k := uint64(0); k < w.size && k < st.Top; k++ {
		seq := st.Top - k
		if w.top-seq >= w.size {
			break
		}
		if k >= covered || st.Bitmap[k/64]&(1<<(k%64)) != 0 {
			b, m := w.slot(seq)
			*b |= m
		}
	}
}

func (w *window) state() ReplayState {
	st := ReplayState{Top: w.top, Bitmap: make([]uint64, w.size/64)}
	for k := uint64(0); k < w.size && k < w.top; k++ {
		if w.seen(w.top - k) {
			st.Bitmap[k/64] |= 1 << (k % 64)
		}
	}
	return st
}

// inferSeq reconstructs a full 64-bit sequence number from the low 32 bits
// carried in an ESN packet, relative to the window (RFC 4303 Appendix A2.2).
// ok is false when the result would lie outside 1..2^64-1, which only a
// forged or hopelessly stale packet can produce.
func (w *window) inferSeq(lo uint32) (seq uint64, ok bool) {
	th, tl := uint32(w.top>>32), uint32(w.top)
	// The window's bottom, computed modulo 2^32 as the RFC does.
	bl := tl - uint32(w.size) + 1
	hi := th
	if tl >= uint32(w.size)-1 {
		// Case A: the window lies within one 2^32 subspace.
		if lo < bl {
			if th == ^uint32(0) {
				return 0, false
			}
			hi = th + 1
		}
	} else if lo >= bl {
		// Case B: the window spans two subspaces and lo is in the lower one.
		if th == 0 {
			return 0, false
		}
		hi = th - 1
	}
	seq = uint64(hi)<<32 | uint64(lo)
	return seq, seq != 0
}
