package msgsync

import (
	"slices"
	"testing"
	"time"
)

var testNonce = Nonce{0xde, 0xad, 0xbe, 0xef}

// req builds a sync request (M1, P1) with the test nonce.
func req(m1, p1 uint32) Sync { return Sync{Nonce: testNonce, Send: m1, Recv: p1} }

// window1 builds peer counters with the default RFC 7296 window of 1 and no
// request in flight.
func window1(nextSend, nextRecv uint32) Counters {
	return Counters{NextSend: nextSend, NextRecv: nextRecv, RecvEnd: nextRecv}
}

// TestRespondRFCExamples types in RFC 6311 Appendix A (A.1–A.3) and the §9
// walkthrough. Tuples are (EXPECTED_SEND, EXPECTED_RECV) from the sender's
// viewpoint, as in the RFC.
func TestRespondRFCExamples(t *testing.T) {
	tests := []struct {
		name    string
		req     Sync
		cur     Counters
		reply   [2]uint32 // (P2, M2)
		abandon []uint32
	}{
		{
			// RFC 6311 App. A.1: the peer last sent request 4 and never
			// received one; its values (5, 0) equal the request's, reversed.
			name:  "RFC6311-A.1",
			req:   req(0, 5),
			cur:   window1(5, 0),
			reply: [2]uint32{5, 0},
		},
		{
			// RFC 6311 App. A.2: the peer last sent 3 and received 4, so it
			// has (4, 5), both above the request's (2, 3). Only reading (b)
			// of the §5.1 drop rule accepts M1 = 2 here.
			name:  "RFC6311-A.2",
			req:   req(2, 3),
			cur:   window1(4, 5),
			reply: [2]uint32{4, 5},
		},
		{
			// RFC 6311 App. A.3: peer last sent 1 and received 3, i.e. (2, 4);
			// reply (max(2, 5), max(4, 2)) = (5, 4).
			name:  "RFC6311-A.3",
			req:   req(2, 5),
			cur:   window1(2, 4),
			reply: [2]uint32{5, 4},
		},
		{
			// RFC 6311 §9: window 5, the peer sent 3-7 and got responses for
			// 4-7 only, so it announces 8 and stops waiting for 3. It also
			// received requests 4-7 but not 3, so it expects 8 next.
			name: "RFC6311-§9",
			req:  req(5, 5),
			cur: Counters{
				NextSend: 8, InFlight: Requests{Below: 8, Bits: 1 << 4},
				NextRecv: 3, RecvEnd: 8,
			},
			reply:   [2]uint32{8, 8},
			abandon: []uint32{3},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var st PeerState
			v := st.Respond(tc.req, tc.cur, true)
			if v.Action != Answer {
				t.Fatalf("action %v (%v), want answer", v.Action, v.Reason)
			}
			want := Sync{Nonce: tc.req.Nonce, Send: tc.reply[0], Recv: tc.reply[1]}
			if v.Reply != want {
				t.Errorf("reply %+v, want %+v", v.Reply, want)
			}
			if v.Install.NextSend != tc.reply[0] || v.Install.NextRecv != tc.reply[1] || !v.Install.InFlight.Empty() {
				t.Errorf("install %+v, want next send %d, next recv %d, nothing in flight", v.Install, tc.reply[0], tc.reply[1])
			}
			if got := v.Abandon.AppendMIDs(nil); !slices.Equal(got, tc.abandon) {
				t.Errorf("abandon %v, want %v", got, tc.abandon)
			}
		})
	}
}

// strongSwan's test_ike_mid_sync.c establishes an IKE SA between a (original
// initiator, the RFC 6311 peer) and b (the "cluster"), then sends dpdsA DPDs
// from a to b and dpdsB from b to a. After IKE_SA_INIT (MID 0) and IKE_AUTH
// (MID 1), a's next request MID is 2 + dpdsA and it expects dpdsB next.
// active adds one more request from a whose response was lost (test_active).
func strongswanPeer(dpdsA, dpdsB uint32, active bool) Counters {
	c := window1(2+dpdsA, dpdsB)
	if active {
		c.NextSend++
		c.InFlight = Requests{Below: c.NextSend, Bits: 1}
	}
	return c
}

// ssCase is one row of strongSwan's data tables: the request (send = M1,
// recv = P1) and the expected response (respSend = P2, respRecv = M2).
type ssCase struct {
	dpdsA, dpdsB       uint32
	send, recv         uint32
	respSend, respRecv uint32
}

// strongswanData is data[] of test_ike_mid_sync.c: requests that are already
// at or above a's counters, so the response echoes them reversed.
var strongswanData = []ssCase{
	{0, 0, 0, 2, 2, 0},
	{0, 0, 1, 3, 3, 1},
	{1, 0, 0, 3, 3, 0},
	{1, 0, 5, 8, 8, 5},
	{0, 1, 1, 2, 2, 1},
	{0, 1, 2, 2, 2, 2},
	{1, 1, 1, 3, 3, 1},
	{1, 1, 2, 4, 4, 2},
	{1, 2, 2, 4, 4, 2},
}

// TestStrongswanResponder mirrors strongSwan's test_responder.
func TestStrongswanResponder(t *testing.T) {
	for _, tc := range strongswanData {
		var st PeerState
		cur := strongswanPeer(tc.dpdsA, tc.dpdsB, false)
		v := st.Respond(req(tc.send, tc.recv), cur, true)
		if v.Action != Answer || v.Reply.Send != tc.respSend || v.Reply.Recv != tc.respRecv || v.Reply.Nonce != testNonce {
			t.Errorf("%+v: got %v %+v", tc, v.Action, v.Reply)
		}
		if v.Install != window1(tc.respSend, tc.respRecv) {
			t.Errorf("%+v: install %+v", tc, v.Install)
		}
	}
}

// TestStrongswanRetransmit mirrors strongSwan's test_retransmit: the same
// request processed twice is answered twice, identically, and the second copy
// changes nothing.
func TestStrongswanRetransmit(t *testing.T) {
	for _, tc := range strongswanData {
		var st PeerState
		r := req(tc.send, tc.recv)
		first := st.Respond(r, strongswanPeer(tc.dpdsA, tc.dpdsB, false), true)
		before := st
		again := st.Respond(r, first.Install, true)
		if again.Action != Repeat || again.Reply != first.Reply {
			t.Errorf("%+v: retransmit got %v %+v, want repeat of %+v", tc, again.Action, again.Reply, first.Reply)
		}
		if st != before {
			t.Errorf("%+v: repeat changed state %+v -> %+v", tc, before, st)
		}
	}
}

// TestStrongswanReplay mirrors strongSwan's test_replay: after the sync, one
// DPD each way, then the original request again, which must get no response.
// It also pins down where hike differs: after only our own DPD (the cluster
// has not yet sent anything under the new counters), hike still treats the
// copy as a retransmission and repeats its answer without changing state,
// while strongSwan would process it as a new sync (M1 equals its expected MID).
func TestStrongswanReplay(t *testing.T) {
	for _, tc := range strongswanData {
		var st PeerState
		r := req(tc.send, tc.recv)
		cur := st.Respond(r, strongswanPeer(tc.dpdsA, tc.dpdsB, false), true).Install

		cur.NextSend++ // DPD a -> b, answered
		if v := st.Respond(r, cur, true); v.Action != Repeat {
			t.Errorf("%+v: copy after our DPD got %v (%v), want repeat", tc, v.Action, v.Reason)
		}
		cur.NextRecv++ // DPD b -> a: the cluster uses the new counters
		cur.RecvEnd = cur.NextRecv
		before := st
		if v := st.Respond(r, cur, true); v.Action != Drop || v.Reason != ReasonReplay {
			t.Errorf("%+v: replay got %v (%v), want drop (replay)", tc, v.Action, v.Reason)
		}
		if st != before {
			t.Errorf("%+v: dropped replay changed state", tc)
		}
	}
}

// TestStrongswanDisabled mirrors strongSwan's test_disabled: without the
// negotiated extension the request is not answered and nothing changes.
func TestStrongswanDisabled(t *testing.T) {
	for _, tc := range strongswanData {
		var st PeerState
		v := st.Respond(req(tc.dpdsB, 0xffffffff), strongswanPeer(tc.dpdsA, tc.dpdsB, false), false)
		if v.Action != Drop || v.Reason != ReasonNotNegotiated {
			t.Errorf("%+v: got %v (%v), want drop (not negotiated)", tc, v.Action, v.Reason)
		}
		if st != (PeerState{}) {
			t.Errorf("%+v: state changed to %+v", tc, st)
		}
	}
}

// TestStrongswanSenderTooLow covers strongSwan's test_sender_too_low, where
// M1 is below the MID a expects next and strongSwan (reading (a) of the §5.1
// drop rule) drops the request. hike deliberately answers it (reading (b): no
// sync was accepted before, so nothing can be replayed), and M2 lifts the
// cluster's send counter to what a has already received, so neither side's
// counters move backwards. The values are strongSwan's data_too_low rows with
// hike's answers worked out by hand from §5.1.
func TestStrongswanSenderTooLow(t *testing.T) {
	for _, tc := range []ssCase{
		{0, 1, 0, 2, 2, 1},
		{1, 2, 0, 0, 3, 2},
		{1, 2, 1, 3, 3, 2},
	} {
		var st PeerState
		cur := strongswanPeer(tc.dpdsA, tc.dpdsB, false)
		if tc.send >= cur.NextRecv {
			t.Fatalf("%+v: not a too-low case", tc)
		}
		v := st.Respond(req(tc.send, tc.recv), cur, true)
		if v.Action != Answer || v.Reply.Send != tc.respSend || v.Reply.Recv != tc.respRecv {
			t.Errorf("%+v: got %v (%v) %+v", tc, v.Action, v.Reason, v.Reply)
		}
	}
}

// TestSenderTooLowAfterSync is hike's form of the drop rule: once a sync was
// accepted, a request whose M1 is not above the highest accepted M1 is
// dropped, whatever its nonce and P1, and a higher M1 is accepted again.
func TestSenderTooLowAfterSync(t *testing.T) {
	var st PeerState
	cur := st.Respond(req(5, 3), window1(3, 2), true).Install
	for _, m1 := range []uint32{0, 4, 5} {
		r := Sync{Nonce: Nonce{1, 2, 3, 4}, Send: m1, Recv: 100}
		if v := st.Respond(r, cur, true); v.Action != Drop || v.Reason != ReasonStaleM1 {
			t.Errorf("M1 %d after accepted M1 5: got %v (%v), want drop (stale M1)", m1, v.Action, v.Reason)
		}
	}
	v := st.Respond(Sync{Nonce: Nonce{1, 2, 3, 4}, Send: 6, Recv: 2}, cur, true)
	if v.Action != Answer || v.Reply.Recv != 6 || v.Reply.Send != 3 || st.MaxM1 != 6 {
		t.Errorf("M1 6 after accepted M1 5: got %v %+v, max M1 %d", v.Action, v.Reply, st.MaxM1)
	}
}

// TestStrongswanRecvUpdate mirrors strongSwan's test_recv_update: P1 is below
// the MID a will use next, and the response raises it.
func TestStrongswanRecvUpdate(t *testing.T) {
	for _, tc := range []ssCase{
		{0, 0, 0, 0, 2, 0},
		{0, 0, 0, 1, 2, 0},
		{0, 0, 1, 1, 2, 1},
		{1, 0, 0, 1, 3, 0},
		{1, 0, 5, 2, 3, 5},
	} {
		var st PeerState
		v := st.Respond(req(tc.send, tc.recv), strongswanPeer(tc.dpdsA, tc.dpdsB, false), true)
		if v.Action != Answer || v.Reply.Send != tc.respSend || v.Reply.Recv != tc.respRecv {
			t.Errorf("%+v: got %v %+v", tc, v.Action, v.Reply)
		}
		if v.Install.NextSend != tc.respSend || v.Install.NextRecv != tc.respRecv {
			t.Errorf("%+v: install %+v", tc, v.Install)
		}
	}
}

// TestStrongswanActive mirrors strongSwan's test_active: a has a request in
// flight when the sync arrives. P2 must skip it, and it must be abandoned and
// run again. In the row {0,1,2,2} strongSwan answers P2 = 2, the MID of the
// abandoned request itself: raising its expected MID to 2 re-queues the task
// before it adds one for it. §5.1 asks for "one more than the highest sender
// value used by the peer", so hike answers 3.
func TestStrongswanActive(t *testing.T) {
	for _, tc := range []struct {
		ssCase
		hikeSend uint32 // P2 where hike deliberately differs, else 0
	}{
		{ssCase{0, 0, 0, 2, 3, 0}, 0},
		{ssCase{0, 0, 1, 3, 3, 1}, 0},
		{ssCase{1, 0, 0, 3, 4, 0}, 0},
		{ssCase{1, 0, 5, 8, 8, 5}, 0},
		{ssCase{0, 1, 1, 2, 3, 1}, 0},
		{ssCase{0, 1, 2, 2, 2, 2}, 3},
		{ssCase{1, 1, 1, 3, 4, 1}, 0},
		{ssCase{1, 1, 2, 4, 4, 2}, 0},
	} {
		var st PeerState
		cur := strongswanPeer(tc.dpdsA, tc.dpdsB, true)
		outstanding := cur.NextSend - 1
		want := tc.respSend
		if tc.hikeSend != 0 {
			want = tc.hikeSend
		}
		v := st.Respond(req(tc.send, tc.recv), cur, true)
		if v.Action != Answer || v.Reply.Send != want || v.Reply.Recv != tc.respRecv {
			t.Errorf("%+v: got %v %+v, want P2 %d", tc.ssCase, v.Action, v.Reply, want)
		}
		if got := v.Abandon.AppendMIDs(nil); !slices.Equal(got, []uint32{outstanding}) {
			t.Errorf("%+v: abandon %v, want [%d]", tc.ssCase, got, outstanding)
		}
		if v.Install.NextSend <= outstanding || !v.Install.InFlight.Empty() {
			t.Errorf("%+v: install %+v would reuse or keep waiting for MID %d", tc.ssCase, v.Install, outstanding)
		}
	}
}

func TestRequests(t *testing.T) {
	r := Requests{Below: 3, Bits: 0b1111_0101} // bits 4+ name negative MIDs
	if got := r.AppendMIDs(nil); !slices.Equal(got, []uint32{0, 2}) {
		t.Errorf("MIDs %v, want [0 2]", got)
	}
	if !r.Has(0) || r.Has(1) || !r.Has(2) || r.Has(3) || r.Has(1<<31) {
		t.Error("Has disagrees with the set {0, 2}")
	}
	if r.end() != 3 || (Requests{Below: 9, Bits: 0b100}).end() != 7 || (Requests{Below: 2, Bits: 0b100}).end() != 0 {
		t.Error("end is not one past the highest MID")
	}
	if !(Requests{Below: 1, Bits: 0b10}).Empty() {
		t.Error("a set naming only negative MIDs is not empty")
	}
}

// TestNoAllocations keeps the rules allocation-free: they run for every IKE
// SA of a failed node at once.
func TestNoAllocations(t *testing.T) {
	cur := Counters{NextSend: 8, InFlight: Requests{Below: 8, Bits: 1 << 4}, NextRecv: 3, RecvEnd: 8}
	allocs := testing.AllocsPerRun(100, func() {
		var st PeerState
		v := st.Respond(req(5, 5), cur, true)
		st.Respond(req(5, 5), v.Install, true)
		rs, _ := NewResync(ResyncConfig{Window: 5}, cur, testNonce, t0)
		rs.Expire(t0.Add(time.Hour))
		rs.Accept(Sync{Nonce: testNonce, Send: 9, Recv: 20}, rs.Hold(cur))
		AdvanceSeq(1, true, 1<<30)
		EstimateJump(JumpInput{Rate: 10, Since: time.Second, Window: 64})
	})
	if allocs != 0 {
		t.Errorf("%v allocations per run", allocs)
	}
}
