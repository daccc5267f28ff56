package msgsync

import (
	"errors"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func sec(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

// TestResyncRFCExamples runs RFC 6311 App. A.1–A.3 end to end: the member
// builds the request from its known counters (no window added, as in the
// examples), the peer answers, and both must end up with mirrored counters.
func TestResyncRFCExamples(t *testing.T) {
	for _, tc := range []struct {
		name           string
		member, peer   Counters
		request, reply [2]uint32
	}{
		{"RFC6311-A.1", window1(0, 5), window1(5, 0), [2]uint32{0, 5}, [2]uint32{5, 0}},
		{"RFC6311-A.2", window1(2, 3), window1(4, 5), [2]uint32{2, 3}, [2]uint32{4, 5}},
		{"RFC6311-A.3", window1(2, 5), window1(2, 4), [2]uint32{2, 5}, [2]uint32{5, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := NewResync(ResyncConfig{}, tc.member, testNonce, t0)
			if err != nil {
				t.Fatal(err)
			}
			r := rs.Request()
			if r.Send != tc.request[0] || r.Recv != tc.request[1] {
				t.Fatalf("request (%d, %d), want %v", r.Send, r.Recv, tc.request)
			}
			var ps PeerState
			v := ps.Respond(r, tc.peer, true)
			if v.Reply.Send != tc.reply[0] || v.Reply.Recv != tc.reply[1] {
				t.Fatalf("reply (%d, %d), want %v", v.Reply.Send, v.Reply.Recv, tc.reply)
			}
			out := rs.Accept(v.Reply, rs.Hold(tc.member))
			if out.Action != Done {
				t.Fatalf("accept: %v (%v)", out.Action, out.Reason)
			}
			// "If one protocol party intends to send the next request as 4,
			// then the other expects the next received request to be 4"
			// (App. A).
			m, p := out.Install, v.Install
			if m.NextSend != p.NextRecv || p.NextSend != m.NextRecv {
				t.Errorf("member %+v and peer %+v disagree", m, p)
			}
			if m.NextSend != tc.reply[1] || m.NextRecv != tc.reply[0] {
				t.Errorf("member installs (%d, %d), want (%d, %d)", m.NextSend, m.NextRecv, tc.reply[1], tc.reply[0])
			}
		})
	}
}

// endpoint is one side of a simultaneous failover: its counters, its peer
// role and its own pending procedure.
type endpoint struct {
	cur  Counters
	peer PeerState
	rs   Resync
}

// crossingOrders lists every order of the four events after both requests
// are sent: a: X answers Y's request; b: Y answers X's; c: X accepts Y's
// answer (after b); d: Y accepts X's answer (after a).
var crossingOrders = []string{"abcd", "abdc", "adbc", "bacd", "badc", "bcad"}

// crossing runs one simultaneous failover between X and Y, which start from
// the counters x and y, and returns both sides' final counters.
func crossing(t *testing.T, x0, y0 Counters, order string) (x, y Counters) {
	t.Helper()
	start := func(c Counters, n Nonce) *endpoint {
		rs, err := NewResync(ResyncConfig{}, c, n, t0)
		if err != nil {
			t.Fatal(err)
		}
		return &endpoint{cur: rs.Hold(c), rs: rs}
	}
	ex, ey := start(x0, Nonce{1}), start(y0, Nonce{2})
	reqX, reqY := ex.rs.Request(), ey.rs.Request()
	var ansX, ansY Sync // answers sent by X and by Y
	answer := func(e *endpoint, r Sync) Sync {
		v := e.peer.Respond(r, e.cur, true)
		if v.Action != Answer {
			t.Fatalf("crossing request %+v: %v (%v)", r, v.Action, v.Reason)
		}
		e.cur = v.Install
		return v.Reply
	}
	accept := func(e *endpoint, r Sync) {
		out := e.rs.Accept(r, e.cur)
		if out.Action != Done {
			t.Fatalf("response %+v: %v (%v)", r, out.Action, out.Reason)
		}
		e.cur = out.Install
	}
	for _, ev := range order {
		switch ev {
		case 'a':
			ansX = answer(ex, reqY)
		case 'b':
			ansY = answer(ey, reqX)
		case 'c':
			accept(ex, ansY)
		case 'd':
			accept(ey, ansX)
		}
	}
	return ex.cur, ey.cur
}

// checkCrossing asserts App. A.4's outcome: "the higher counter values", the
// same on both sides.
func checkCrossing(t *testing.T, x0, y0, x, y Counters) {
	t.Helper()
	xs := max(x0.NextSend, y0.NextRecv) // X's requests are Y's receives
	ys := max(y0.NextSend, x0.NextRecv)
	if x.NextSend != xs || y.NextRecv != xs || y.NextSend != ys || x.NextRecv != ys {
		t.Errorf("from X %+v, Y %+v: X %+v, Y %+v; want X sends %d, Y sends %d", x0, y0, x, y, xs, ys)
	}
}

// TestSimultaneousFailover checks RFC 6311 App. A.4: both sides send requests
// that cross, each answers the other's while its own is pending, and both end
// with the higher counter values, (5, 5). Every delivery order is tried (the
// figure shows one), and so is a grid of other starting points.
func TestSimultaneousFailover(t *testing.T) {
	for _, order := range crossingOrders {
		x0, y0 := window1(4, 4), window1(5, 5) // RFC 6311 App. A.4
		x, y := crossing(t, x0, y0, order)
		if x != window1(5, 5) || y != window1(5, 5) {
			t.Errorf("RFC6311-A.4 order %s: X %+v, Y %+v, want both (5, 5)", order, x, y)
		}
		for i := range 256 {
			v := func(shift int) uint32 { return uint32(i>>shift) & 3 }
			x0, y0 := window1(v(0), v(2)), window1(v(4), v(6))
			x, y := crossing(t, x0, y0, order)
			checkCrossing(t, x0, y0, x, y)
		}
	}
	// The figure itself: both responses are (5, 5).
	var xp, yp PeerState
	if v := xp.Respond(Sync{Send: 5, Recv: 5}, window1(4, 4), true); v.Reply.Send != 5 || v.Reply.Recv != 5 {
		t.Errorf("RFC6311-A.4: member answers %+v, want (5, 5)", v.Reply)
	}
	if v := yp.Respond(Sync{Send: 4, Recv: 4}, window1(5, 5), true); v.Reply.Send != 5 || v.Reply.Recv != 5 {
		t.Errorf("RFC6311-A.4: peer answers %+v, want (5, 5)", v.Reply)
	}
}

// FuzzSimultaneousFailover extends TestSimultaneousFailover to arbitrary
// starting counters, windows above 1 included.
func FuzzSimultaneousFailover(f *testing.F) {
	f.Add(uint32(4), uint32(4), uint32(4), uint32(5), uint32(5), uint32(5), uint8(0)) // RFC 6311 App. A.4
	f.Add(uint32(7), uint32(2), uint32(6), uint32(3), uint32(9), uint32(9), uint8(3))
	f.Add(uint32(0xffffffff), uint32(0), uint32(0xffffffff), uint32(0), uint32(0xfffffff0), uint32(0xfffffff0), uint8(5))
	f.Fuzz(func(t *testing.T, xs, xr, xe, ys, yr, ye uint32, order uint8) {
		x0 := Counters{NextSend: xs, NextRecv: xr, RecvEnd: xe}
		y0 := Counters{NextSend: ys, NextRecv: yr, RecvEnd: ye}
		x, y := crossing(t, x0, y0, crossingOrders[int(order)%len(crossingOrders)])
		// With out-of-order receipt, RecvEnd is what the other side must
		// send above.
		x0.NextRecv, y0.NextRecv = x0.recvFloor(), y0.recvFloor()
		checkCrossing(t, x0, y0, x, y)
	})
}

func TestResyncRequestValues(t *testing.T) {
	known := Counters{NextSend: 10, NextRecv: 4, RecvEnd: 7}
	rs, err := NewResync(ResyncConfig{Window: 5, Margin: 3}, known, testNonce, t0)
	if err != nil {
		t.Fatal(err)
	}
	// M1 = 10 + 5 + 3; P1 = one past the highest request received (6).
	if r := rs.Request(); r != (Sync{Nonce: testNonce, Send: 18, Recv: 7}) {
		t.Errorf("request %+v, want (18, 7)", r)
	}
	if h := rs.Hold(known); h.NextSend != 18 || h.NextRecv != 7 {
		t.Errorf("hold %+v, want next send 18, next recv 7", h)
	}
	if _, err := NewResync(ResyncConfig{Window: 5}, window1(0xffffffff-4, 0), testNonce, t0); !errors.Is(err, ErrExhausted) {
		t.Errorf("M1 past 2^32-1: err %v, want ErrExhausted", err)
	}
	if _, err := NewResync(ResyncConfig{Window: 5}, window1(0xffffffff-5, 0), testNonce, t0); err != nil {
		t.Errorf("M1 = 2^32-1: %v", err)
	}
}

// TestResyncSchedule walks the whole retransmission policy: three identical
// resends after 1, 2 and 4 s, the renewed request at 15 s with M1 raised by
// the window plus margin, its resends, and the give-up at 30 s.
func TestResyncSchedule(t *testing.T) {
	rs, err := NewResync(ResyncConfig{Window: 5, Margin: 1, Timeout: time.Second, Resends: 3}, window1(10, 3), testNonce, t0)
	if err != nil {
		t.Fatal(err)
	}
	first := rs.Request()
	type step struct {
		at   int // seconds after t0
		want Action
	}
	run := func(steps []step) {
		t.Helper()
		for _, s := range steps {
			if act, at := rs.Next(); act != s.want || !at.Equal(sec(s.at)) {
				t.Fatalf("next: %v at %v, want %v at %ds", act, at.Sub(t0), s.want, s.at)
			}
			if got := rs.Expire(sec(s.at).Add(-time.Millisecond)); got != Wait {
				t.Fatalf("just before %ds: %v, want wait", s.at, got)
			}
			if got := rs.Expire(sec(s.at)); got != s.want {
				t.Fatalf("at %ds: %v, want %v", s.at, got, s.want)
			}
		}
	}
	run([]step{{1, Resend}, {3, Resend}, {7, Resend}, {15, Renew}})
	if rs.Request() != first {
		t.Fatal("resends changed the request")
	}
	if act, _ := rs.Next(); act != Renew || rs.Expire(sec(99)) != Renew {
		t.Fatal("a due renewal must stay due until Renew is called")
	}
	if _, err := rs.Renew(testNonce, sec(15)); !errors.Is(err, ErrNotDue) {
		t.Errorf("renew with the old nonce: %v, want ErrNotDue", err)
	}
	second, err := rs.Renew(Nonce{9, 9, 9, 9}, sec(15))
	if err != nil {
		t.Fatal(err)
	}
	if second.Send != first.Send+6 || second.Recv != first.Recv || second.Nonce != (Nonce{9, 9, 9, 9}) {
		t.Errorf("renewed request %+v after %+v, want M1 + 6, same P1, new nonce", second, first)
	}
	if _, err := rs.Renew(Nonce{7}, sec(15)); !errors.Is(err, ErrNotDue) {
		t.Errorf("second renew: %v, want ErrNotDue", err)
	}
	run([]step{{16, Resend}, {18, Resend}, {22, Resend}, {30, GiveUp}})
	if rs.Reason() != ReasonTimeout {
		t.Errorf("reason %v, want timeout", rs.Reason())
	}
	if act := rs.Expire(sec(1000)); act != GiveUp {
		t.Errorf("after giving up: %v", act)
	}
	if out := rs.Accept(Sync{Nonce: second.Nonce, Send: 100, Recv: 100}, window1(0, 0)); out.Action != Drop || out.Reason != ReasonNotPending {
		t.Errorf("response after giving up: %v (%v)", out.Action, out.Reason)
	}
}

func TestResyncNoResends(t *testing.T) {
	rs, _ := NewResync(ResyncConfig{Resends: -1, Timeout: 2 * time.Second}, window1(1, 1), testNonce, t0)
	if rs.Expire(sec(2)) != Renew {
		t.Fatal("without resends the first timeout renews")
	}
	// Window and margin 0 still raise M1: a peer that saw the first request
	// would drop a second one with the same M1.
	if r, err := rs.Renew(Nonce{1}, sec(2)); err != nil || r.Send != 2 {
		t.Fatalf("renew: %+v %v, want M1 2", r, err)
	}
	if rs.Expire(sec(4)) != GiveUp {
		t.Fatal("the renewed request is not retried either")
	}
}

func TestResyncRenewExhausted(t *testing.T) {
	rs, _ := NewResync(ResyncConfig{Window: 10, Resends: -1}, window1(0xffffffff-15, 0), testNonce, t0)
	rs.Expire(sec(1))
	if _, err := rs.Renew(Nonce{1}, sec(1)); !errors.Is(err, ErrExhausted) {
		t.Fatalf("renew past 2^32-1: %v", err)
	}
	if act, _ := rs.Next(); act != GiveUp || rs.Reason() != ReasonExhausted {
		t.Errorf("after exhausted renew: %v (%v)", act, rs.Reason())
	}
}

func TestBackoffBounded(t *testing.T) {
	if d := backoff(time.Second, 1000); d != maxBackoff {
		t.Errorf("backoff after 1000 doublings %v, want %v", d, maxBackoff)
	}
	if d := backoff(2*time.Hour, 5); d != 2*time.Hour {
		t.Errorf("a timeout above the cap is kept: %v", d)
	}
}

func TestResyncAccept(t *testing.T) {
	fresh := func(t *testing.T) (Resync, Counters) {
		known := window1(10, 4)
		rs, err := NewResync(ResyncConfig{Window: 2}, known, testNonce, t0) // request (12, 4)
		if err != nil {
			t.Fatal(err)
		}
		return rs, rs.Hold(known)
	}
	good := Sync{Nonce: testNonce, Send: 6, Recv: 12} // peer: (P2, M2)

	t.Run("nonce mismatch", func(t *testing.T) {
		rs, cur := fresh(t)
		bad := good
		bad.Nonce[0] ^= 1
		if out := rs.Accept(bad, cur); out.Action != Drop || out.Reason != ReasonNonceMismatch {
			t.Fatalf("got %v (%v)", out.Action, out.Reason)
		}
		// RFC 6311 §5.1: dropped silently; the real response still counts.
		if out := rs.Accept(good, cur); out.Action != Done {
			t.Fatalf("valid response after a mismatch: %v (%v)", out.Action, out.Reason)
		}
	})
	t.Run("duplicate", func(t *testing.T) {
		rs, cur := fresh(t)
		out := rs.Accept(good, cur)
		// Our next send is the peer's EXPECTED_RECV, our next receive its
		// EXPECTED_SEND.
		if out.Action != Done || out.Install.NextSend != 12 || out.Install.NextRecv != 6 {
			t.Fatalf("got %v %+v", out.Action, out.Install)
		}
		// RFC 6311 §11: "MUST NOT process the same response again".
		if again := rs.Accept(good, out.Install); again.Action != Drop || again.Reason != ReasonDuplicate {
			t.Errorf("duplicate: %v (%v)", again.Action, again.Reason)
		}
		if act := rs.Expire(sec(3600)); act != Done {
			t.Errorf("schedule after done: %v", act)
		}
	})
	t.Run("peer raises counters", func(t *testing.T) {
		rs, cur := fresh(t)
		out := rs.Accept(Sync{Nonce: testNonce, Send: 40, Recv: 30}, cur)
		if out.Action != Done || out.Install.NextSend != 30 || out.Install.NextRecv != 40 || out.Install.RecvEnd != 40 {
			t.Errorf("got %v %+v", out.Action, out.Install)
		}
	})
	t.Run("response lowers M1", func(t *testing.T) {
		rs, cur := fresh(t)
		if out := rs.Accept(Sync{Nonce: testNonce, Send: 6, Recv: 11}, cur); out.Action != GiveUp || out.Reason != ReasonBadResponse {
			t.Errorf("M2 < M1: %v (%v)", out.Action, out.Reason)
		}
		if act, _ := rs.Next(); act != GiveUp {
			t.Errorf("procedure continues after a bad response: %v", act)
		}
	})
	t.Run("response lowers P1", func(t *testing.T) {
		rs, cur := fresh(t)
		if out := rs.Accept(Sync{Nonce: testNonce, Send: 3, Recv: 12}, cur); out.Action != GiveUp || out.Reason != ReasonBadResponse {
			t.Errorf("P2 < P1: %v (%v)", out.Action, out.Reason)
		}
	})
	t.Run("late answer to the first request", func(t *testing.T) {
		rs, cur := fresh(t)
		rs.Expire(sec(1))
		rs.Expire(sec(3))
		rs.Expire(sec(7))
		if rs.Expire(sec(15)) != Renew {
			t.Fatal("renew not due")
		}
		// Not yet renewed: the first request is still the current one.
		if out := rs.Accept(good, cur); out.Action != Done {
			t.Fatalf("answer before renewal: %v (%v)", out.Action, out.Reason)
		}
		rs2, cur2 := fresh(t)
		for _, s := range []int{1, 3, 7, 15} {
			rs2.Expire(sec(s))
		}
		second, err := rs2.Renew(Nonce{5}, sec(15))
		if err != nil {
			t.Fatal(err)
		}
		cur2 = rs2.Hold(cur2)
		if out := rs2.Accept(good, cur2); out.Action != Drop || out.Reason != ReasonNonceMismatch {
			t.Errorf("answer to the replaced request: %v (%v)", out.Action, out.Reason)
		}
		if out := rs2.Accept(Sync{Nonce: second.Nonce, Send: 4, Recv: second.Send}, cur2); out.Action != Done || out.Install.NextSend != second.Send {
			t.Errorf("answer to the renewed request: %v %+v", out.Action, out.Install)
		}
	})
	t.Run("requests sent while pending are abandoned", func(t *testing.T) {
		rs, cur := fresh(t)
		cur.InFlight = Requests{Below: cur.NextSend + 1, Bits: 1}
		cur.NextSend++
		out := rs.Accept(Sync{Nonce: testNonce, Send: 6, Recv: 20}, cur)
		if out.Action != Done || !out.Abandon.Has(12) || !out.Install.InFlight.Empty() || out.Install.NextSend != 20 {
			t.Errorf("got %v %+v abandon %+v", out.Action, out.Install, out.Abandon)
		}
	})
}

func TestResyncEdges(t *testing.T) {
	if _, err := NewResync(ResyncConfig{Window: 1 << 31, Margin: 1 << 31}, window1(0, 0), testNonce, t0); !errors.Is(err, ErrExhausted) {
		t.Errorf("window + margin past 2^32-1: %v", err)
	}
	rs, cur := func() (Resync, Counters) {
		rs, _ := NewResync(ResyncConfig{}, window1(100, 7), testNonce, t0)
		return rs, rs.Hold(window1(100, 7))
	}()
	rs.Accept(Sync{Nonce: testNonce, Send: 7, Recv: 100}, cur)
	if out := rs.Accept(Sync{Nonce: Nonce{5}, Send: 7, Recv: 100}, cur); out.Action != Drop || out.Reason != ReasonNonceMismatch {
		t.Errorf("foreign response after done: %v (%v)", out.Action, out.Reason)
	}
	// Requests far above MID 64 keep their bits.
	r := Requests{Below: 1000, Bits: 1<<63 | 1}
	if !r.Has(999) || !r.Has(936) || r.end() != 1000 || r.Empty() {
		t.Errorf("set %+v: wrong membership", r)
	}
}

// TestNames guards the name tables against a constant added without a name.
func TestNames(t *testing.T) {
	seen := map[string]bool{}
	for a := Drop; a <= Done; a++ {
		if s := a.String(); s == "" || s == "action(?)" || seen[s] {
			t.Errorf("action %d has name %q", a, s)
		} else {
			seen[s] = true
		}
	}
	for r := ReasonNotNegotiated; r <= ReasonOverflow; r++ {
		if s := r.String(); s == "" || s == "reason(?)" || seen[s] {
			t.Errorf("reason %d has name %q", r, s)
		} else {
			seen[s] = true
		}
	}
	if Action(Done+1).String() != "action(?)" || Reason(ReasonOverflow+1).String() != "reason(?)" || ReasonNone.String() != "" {
		t.Error("out-of-range values need a placeholder name")
	}
}
