package esp

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// model is the obvious, slow anti-replay window that the ring must match.
type model struct {
	top  uint64
	size uint64
	seen map[uint64]bool
}

func (m *model) accept(seq uint64) bool {
	if seq == 0 || (seq <= m.top && (m.top-seq >= m.size || m.seen[seq])) {
		return false
	}
	m.seen[seq] = true
	m.top = max(m.top, seq)
	return true
}

func TestWindowMatchesModel(t *testing.T) {
	for _, size := range []uint64{64, 128, 1024} {
		w := newWindow(size)
		m := model{size: size, seen: map[uint64]bool{}}
		r := rand.New(rand.NewPCG(1, size))
		for i := range 200000 {
			var seq uint64
			switch r.IntN(10) {
			case 0: // far jump ahead, sometimes past the whole ring
				seq = m.top + 1 + r.Uint64N(4*size)
			case 1: // around the lower edge of the window
				seq = m.top - size - 2 + r.Uint64N(5)
			case 2: // exact duplicate of the top
				seq = m.top
			default: // reordering within and a little beyond the window
				seq = m.top + 3 - r.Uint64N(size+8)
			}
			if seq > m.top+1<<40 { // wrapped below zero
				seq = r.Uint64N(3)
			}
			want := m.accept(seq)
			got := w.check(seq) == fresh
			if got {
				w.mark(seq)
			}
			if got != want {
				t.Fatalf("W=%d step %d: seq %d (top %d): window says %t, model %t", size, i, seq, w.top, got, want)
			}
		}
	}
}

func TestWindowSemantics(t *testing.T) {
	w := newWindow(64)
	accept := func(seq uint64) verdict {
		v := w.checkAndMark(seq)
		return v
	}
	if accept(0) != tooOld {
		t.Fatal("sequence number 0 accepted")
	}
	for seq := uint64(1); seq <= 100; seq++ {
		if v := accept(seq); v != fresh {
			t.Fatalf("in-order %d: %v", seq, v)
		}
	}
	if v := accept(100); v != duplicate {
		t.Fatalf("duplicate of top: %v", v)
	}
	if v := accept(50); v != duplicate {
		t.Fatalf("duplicate inside window: %v", v)
	}
	// Out of order within the window.
	if v := accept(110); v != fresh {
		t.Fatal(v)
	}
	for _, seq := range []uint64{105, 101, 109} {
		if v := accept(seq); v != fresh {
			t.Fatalf("out-of-order %d: %v", seq, v)
		}
		if v := accept(seq); v != duplicate {
			t.Fatalf("second out-of-order %d: %v", seq, v)
		}
	}
	// Window edges: with top 110 and W 64, 47 is the oldest tracked number.
	w2 := newWindow(64)
	w2.mark(110)
	if v := w2.check(47); v != fresh {
		t.Fatalf("oldest number inside the window: %v", v)
	}
	if v := w2.check(46); v != tooOld {
		t.Fatalf("newest number below the window: %v", v)
	}
	// A jump far beyond the ring must not leave stale bits behind.
	w2.mark(100)
	w2.mark(110 + 64*100)
	if v := w2.check(110 + 64*100 - 1); v != fresh {
		t.Fatalf("after a long jump: %v", v)
	}
	if v := w2.check(100 + 64*100); v != fresh {
		t.Fatalf("stale bit survived a long jump: %v", v)
	}
}

func TestInferSeq(t *testing.T) {
	const w = 64
	cases := []struct {
		top  uint64
		lo   uint32
		want uint64
		ok   bool
	}{
		{0, 1, 1, true},
		{0, 0, 0, false},          // would be sequence number 0
		{0, 0xffffffff, 0, false}, // would be below 2^32 * 0
		{10, 5, 5, true},
		// Case B (Tl < W-1): the window straddles 2^32.
		{1<<32 | 16, 5, 1<<32 | 5, true},
		{1<<32 | 16, 0xffffffe0, 0xffffffe0, true},
		{1<<32 | 16, 0xffffffd1, 0xffffffd1, true},         // oldest in window
		{1<<32 | 16, 0xffffffd0, 1<<32 | 0xffffffd0, true}, // below it: ahead
		{1<<32 | 16, 0x80000000, 1<<32 | 0x80000000, true},
		// Case A (Tl >= W-1).
		{1<<32 | 4096, 4033, 1<<32 | 4033, true},
		{1<<32 | 4096, 4032, 2<<32 | 4032, true},
		{1<<32 | 4096, 5000, 1<<32 | 5000, true},
		{0xffffffff, 0, 1 << 32, true}, // the ESN wrap itself
		{0xffffffff, 0xffffffc1, 0xffffffc1, true},
		{math.MaxUint64 - 16, 3, 0, false}, // would need a 65th bit
		{math.MaxUint64 - 16, 0xffffffff, math.MaxUint64, true},
	}
	for _, c := range cases {
		win := newWindow(w)
		win.top = c.top
		got, ok := win.inferSeq(c.lo)
		if ok != c.ok || (ok && got != c.want) {
			t.Errorf("top %#x lo %#x: got %#x %t, want %#x %t", c.top, c.lo, got, ok, c.want, c.ok)
		}
	}
}

// Packets on both sides of 2^32 with ESN, delivered out of order: the
// receiver has to infer the high-order bits from its window each time.
func TestESNWrap(t *testing.T) {
	for _, a := range []alg{algs[2], algs[3], algs[9]} {
		out, in := pair(t, a, true)
		const start = 1<<32 - 4
		out.SetOutboundSeq(start)
		in.SetReplayState(ReplayState{Top: start})
		var pkts [][]byte
		for range 8 {
			p, err := out.Seal(nil, innerPacket(100), 4)
			if err != nil {
				t.Fatal(err)
			}
			pkts = append(pkts, p)
		}
		if lo := uint32(pkts[3][4])<<24 | uint32(pkts[3][7]); lo != 0 || pkts[3][5] != 0 || pkts[3][6] != 0 {
			t.Fatalf("%s: packet 2^32 carries low bits %x", a.name, pkts[3][4:8])
		}
		for _, i := range []int{0, 4, 6, 1, 3, 2, 7, 5} {
			if _, _, err := in.Open(nil, pkts[i]); err != nil {
				t.Fatalf("%s: packet %d (seq %#x): %v", a.name, i, start+1+i, err)
			}
		}
		if st := in.ReplayState(); st.Top != start+8 {
			t.Fatalf("%s: top %#x, want %#x", a.name, st.Top, start+8)
		}
		for _, i := range []int{2, 3, 7} {
			if _, _, err := in.Open(nil, pkts[i]); !errors.Is(err, ErrReplay) {
				t.Fatalf("%s: replay of packet %d: %v", a.name, i, err)
			}
		}
	}
}

// The high-order sequence bits are authenticated although not sent: a packet
// from 2^32 sequence numbers further on must fail the ICV, not be accepted as
// a low number.
func TestESNHighBitsAuthenticated(t *testing.T) {
	for _, a := range []alg{algs[2], algs[3], algs[9]} {
		out, in := pair(t, a, true)
		out.SetOutboundSeq(1<<32 + 6)
		pkt, _ := out.Seal(nil, innerPacket(40), 4)
		if _, _, err := in.Open(nil, pkt); !errors.Is(err, ErrAuth) {
			t.Fatalf("%s: packet 2^32+7 opened as 7: %v", a.name, err)
		}
		if in.ReplayState().Top != 0 {
			t.Fatalf("%s: forged packet moved the window", a.name)
		}
	}
}

func TestAdvanceReplayWindow(t *testing.T) {
	in := mustSA(t, algs[0].config(Inbound, false))
	w := &in.win
	for _, seq := range []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 20} {
		w.mark(seq)
	}
	if err := in.AdvanceReplayWindow(100); err != nil {
		t.Fatal(err)
	}
	if st := in.ReplayState(); st.Top != 120 {
		t.Fatalf("top after advance = %d, want 120", st.Top)
	}
	// Everything up to the new top counts as received: seen before (20),
	// never seen (11, 21) and the new top itself.
	for _, seq := range []uint64{120, 119, 100, 21, 20, 11, 1} {
		if v := w.check(seq); v == fresh {
			t.Fatalf("seq %d acceptable after advance", seq)
		}
	}
	// Numbers above the new top arrive in any order, including the ones in
	// the new top's own 64-bit block.
	for _, seq := range []uint64{125, 121, 128, 127, 122, 200, 190} {
		if v := w.checkAndMark(seq); v != fresh {
			t.Fatalf("seq %d after advance: %v", seq, v)
		}
	}

	// From arbitrary windows, including tops at either end of a 64-bit
	// block: afterwards exactly the numbers above the new top are fresh.
	r := rand.New(rand.NewPCG(3, 4))
	for _, size := range []int{64, 1024} {
		for _, delta := range []uint64{0, 1, 62, 63, 64, 65, 1000, 1 << 30} {
			for _, top := range []uint64{0, 1, 63, 64, 127, 1000, 4095} {
				c := algs[0].config(Inbound, true)
				c.ReplayWindow = size
				in := mustSA(t, c)
				for range 50 {
					in.win.checkAndMark(top - min(top, r.Uint64N(uint64(size)+5)))
				}
				in.win.checkAndMark(top)
				if err := in.AdvanceReplayWindow(delta); err != nil {
					t.Fatal(err)
				}
				nt := in.win.top
				if nt != top+delta {
					t.Fatalf("top %d + %d = %d", top, delta, nt)
				}
				for seq := nt - min(nt, uint64(size)+70); seq <= nt+130; seq++ {
					if got, want := in.win.check(seq) == fresh, seq > nt; got != want {
						t.Fatalf("W=%d top %d delta %d: seq %d fresh=%t, want %t", size, top, delta, seq, got, want)
					}
				}
				// Reordering just above the new top still works.
				in.win.checkAndMark(nt + 5)
				for seq := nt + 1; seq < nt+5; seq++ {
					if v := in.win.checkAndMark(seq); v != fresh {
						t.Fatalf("W=%d top %d delta %d: reordered seq %d after advance: %v", size, top, delta, seq, v)
					}
				}
			}
		}
	}

	// Non-ESN: no jump past 2^32-1; the window stays as it was.
	in = mustSA(t, algs[0].config(Inbound, false))
	in.SetReplayState(ReplayState{Top: math.MaxUint32 - 10})
	before := in.ReplayState()
	if err := in.AdvanceReplayWindow(11); !errors.Is(err, ErrSeqExhausted) {
		t.Fatalf("non-ESN advance past 2^32-1: %v", err)
	}
	if after := in.ReplayState(); after.Top != before.Top || after.Bitmap[0] != before.Bitmap[0] {
		t.Fatal("failed advance changed the window")
	}
	if err := in.AdvanceReplayWindow(10); err != nil {
		t.Fatalf("non-ESN advance to exactly 2^32-1: %v", err)
	}

	// ESN: the suggested RFC 6311 jump of 2^30 and more are fine.
	in = mustSA(t, algs[0].config(Inbound, true))
	in.SetReplayState(ReplayState{Top: math.MaxUint32 - 10})
	if err := in.AdvanceReplayWindow(1 << 40); err != nil {
		t.Fatal(err)
	}
	if err := in.AdvanceReplayWindow(math.MaxUint64); !errors.Is(err, ErrSeqExhausted) {
		t.Fatalf("ESN advance past 2^64-1: %v", err)
	}
}

// The RFC 6311 takeover end to end: the new member restores a stale copy of
// the window, advances it by the delta it also sends the peer; the peer
// advances its outbound counter by the same delta. Everything the failed
// member may have accepted is then rejected, and new traffic flows.
func TestRFC6311Takeover(t *testing.T) {
	for _, esn := range []bool{false, true} {
		peer, old := pair(t, algs[2], esn)
		var sent [][]byte
		for range 300 {
			p, _ := peer.Seal(nil, innerPacket(60), 4)
			sent = append(sent, p)
		}
		for _, p := range sent[:200] {
			old.Open(nil, p)
		}
		snapshot := old.ReplayState()
		for _, p := range sent[200:] {
			old.Open(nil, p) // accepted by the old member after the snapshot
		}

		taker := mustSA(t, algs[2].config(Inbound, esn))
		if err := taker.SetReplayState(snapshot); err != nil {
			t.Fatal(err)
		}
		const delta = 1000
		if err := taker.AdvanceReplayWindow(delta); err != nil {
			t.Fatal(err)
		}
		for i, p := range sent {
			// With ESN, a number far below the window is read as belonging
			// to the next 2^32 block (RFC 4303 A2.2) and fails the ICV
			// instead; either way it is dropped.
			_, _, err := taker.Open(nil, p)
			if !errors.Is(err, ErrReplay) && !(esn && errors.Is(err, ErrAuth)) {
				t.Fatalf("esn=%t: packet %d replayed to the new member: %v", esn, i+1, err)
			}
		}
		if err := peer.AdvanceOutboundSeq(delta); err != nil {
			t.Fatal(err)
		}
		for range 5 {
			p, _ := peer.Seal(nil, innerPacket(60), 4)
			if _, _, err := taker.Open(nil, p); err != nil {
				t.Fatalf("esn=%t: traffic after sync rejected: %v", esn, err)
			}
		}
	}
}

func TestReplayState(t *testing.T) {
	in := mustSA(t, algs[0].config(Inbound, false))
	for _, seq := range []uint64{97, 98, 100} {
		in.win.mark(seq)
	}
	st := in.ReplayState()
	if st.Top != 100 || len(st.Bitmap) != DefaultReplayWindow/64 {
		t.Fatalf("state top %d, %d words", st.Top, len(st.Bitmap))
	}
	// Bit k stands for Top-k: 100, 98 and 97 are bits 0, 2 and 3.
	if st.Bitmap[0] != 0b1101 {
		t.Fatalf("bitmap word 0 = %#b, want 0b1101", st.Bitmap[0])
	}
	for _, w := range st.Bitmap[1:] {
		if w != 0 {
			t.Fatal("stray bits in the bitmap")
		}
	}

	// Restoring onto a fresh SA reproduces every decision, for random
	// traffic and several window sizes.
	for _, size := range []int{64, 192, 1024} {
		c := algs[0].config(Inbound, true)
		c.ReplayWindow = size
		a, b := mustSA(t, c), mustSA(t, c)
		r := rand.New(rand.NewPCG(7, uint64(size)))
		for range 5000 {
			a.win.checkAndMark(a.win.top + 5 - r.Uint64N(uint64(size)))
		}
		if err := b.SetReplayState(a.ReplayState()); err != nil {
			t.Fatal(err)
		}
		for seq := a.win.top - uint64(size) - 10; seq <= a.win.top+10; seq++ {
			if va, vb := a.win.check(seq), b.win.check(seq); (va == fresh) != (vb == fresh) {
				t.Fatalf("W=%d seq %d: original %v, restored %v", size, seq, va, vb)
			}
		}
	}

	// Merging an older state keeps the newer top and adds the older bits.
	c := algs[0].config(Inbound, false)
	b := mustSA(t, c)
	b.win.mark(200)
	if err := b.SetReplayState(st); err != nil {
		t.Fatal(err)
	}
	if b.win.top != 200 {
		t.Fatalf("merge lowered the top to %d", b.win.top)
	}
	for seq, want := range map[uint64]verdict{100: duplicate, 99: fresh, 98: duplicate, 97: duplicate, 96: fresh, 200: duplicate} {
		if v := b.win.check(seq); v != want {
			t.Fatalf("after merge seq %d: %v, want %v", seq, v, want)
		}
	}

	// A state without a bitmap: everything up to Top counts as received.
	b = mustSA(t, c)
	b.SetReplayState(ReplayState{Top: 50})
	if b.win.check(50) == fresh || b.win.check(1) == fresh || b.win.check(51) != fresh {
		t.Fatal("empty bitmap not treated as all received")
	}
	// A shorter bitmap from a smaller window: the uncovered part is received.
	b = mustSA(t, c)
	b.SetReplayState(ReplayState{Top: 500, Bitmap: []uint64{1}})
	if b.win.check(499) != fresh || b.win.check(500) == fresh || b.win.check(500-64) == fresh {
		t.Fatal("short bitmap misread")
	}
	if err := b.SetReplayState(ReplayState{Top: 1 << 32}); !errors.Is(err, ErrSeqExhausted) {
		t.Fatalf("non-ESN state beyond 2^32-1: %v", err)
	}
}

// Replays are rejected before any cryptography: a replayed sequence number
// with a garbage ICV is a replay drop, not an authentication failure.
func TestReplayCheckedBeforeAuth(t *testing.T) {
	for _, a := range []alg{algs[2], algs[3], algs[9]} {
		out, in := pair(t, a, false)
		pkt, _ := out.Seal(nil, innerPacket(80), 4)
		if _, _, err := in.Open(nil, pkt); err != nil {
			t.Fatal(err)
		}
		pkt[len(pkt)-1] ^= 0xff
		if _, _, err := in.Open(nil, pkt); !errors.Is(err, ErrReplay) {
			t.Fatalf("%s: replay with bad ICV: %v, want ErrReplay", a.name, err)
		}
		if st := in.Stats(); st.ReplayDrops != 1 || st.AuthFailures != 0 {
			t.Fatalf("%s: stats %+v", a.name, st)
		}
	}
}

// How far an ESN sender may jump ahead (an RFC 6311 outbound advance the
// receiver is not told about) and still be understood: the receiver infers
// the high-order bits correctly for jumps up to 2^32 - W (RFC 4303 A2.2),
// so the 2^30 that RFC 6311 §5.2 suggests is safe.
func TestESNJumpLimit(t *testing.T) {
	const top, w = 5000, DefaultReplayWindow
	for _, c := range []struct {
		jump uint64
		ok   bool
	}{
		{1 << 30, true},
		{1<<32 - w, true},
		{1<<32 - w + 1, false},
	} {
		out, in := pair(t, algs[2], true)
		in.SetReplayState(ReplayState{Top: top})
		out.SetOutboundSeq(top + c.jump - 1)
		pkt, _ := out.Seal(nil, innerPacket(64), 4)
		_, _, err := in.Open(nil, pkt)
		if (err == nil) != c.ok {
			t.Fatalf("jump %#x: err %v, want success %t", c.jump, err, c.ok)
		}
		if err == nil && in.ReplayState().Top != top+c.jump {
			t.Fatalf("jump %#x: top %#x", c.jump, in.ReplayState().Top)
		}
	}
}
