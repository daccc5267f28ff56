package msgsync

import (
	"encoding/binary"
	"math/bits"
	"testing"
)

// FuzzPeerRespond drives random sequences of sync requests, retransmissions
// and ordinary traffic through the peer role and checks the §5.1 invariants
// after every step:
//   - the highest accepted M1 never decreases, and "seen" is never forgotten;
//   - an answer's M2 is at least M1 and at least one past every request
//     received; its P2 is at least P1 and past every request we sent;
//   - counters installed by an answer never move backwards;
//   - a drop or a repeat changes nothing, and a repeat sends the last reply;
//   - nothing panics.
func FuzzPeerRespond(f *testing.F) {
	// Ops: 0 sync request (nonce, M1, P1), 1 copy of the last request,
	// 2 ordinary request received (skip byte), 3 we send a request,
	// 4 response to our oldest request, 5 toggle the negotiated flag.
	f.Add([]byte{0, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 5})                                        // RFC 6311 A.1 request (0, 5)
	f.Add([]byte{3, 3, 2, 0, 0, 1, 2, 3, 4, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 0, 1})                // send 2, receive 1, sync, copy, receive, copy (now a replay)
	f.Add([]byte{3, 3, 3, 4, 2, 2, 2, 0, 0, 9, 9, 9, 9, 0, 0, 0, 4, 0, 0, 0, 1})                // requests in flight, out-of-order receive, sync
	f.Add([]byte{0, 1, 1, 1, 1, 0, 0, 0, 9, 0, 0, 0, 9, 0, 2, 2, 2, 2, 0, 0, 0, 4, 0, 0, 0, 1}) // lower M1 after a sync
	f.Add([]byte{5, 0, 0, 0, 0, 0, 0, 0, 0, 1, 5, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, prog []byte) {
		var st PeerState
		cur := Counters{NextSend: 2} // an original initiator after IKE_AUTH
		var last Sync
		negotiated := true
		next := func(n int) []byte {
			if len(prog) < n {
				prog = append(prog, make([]byte, n-len(prog))...)
			}
			b := prog[:n]
			prog = prog[n:]
			return b
		}
		for len(prog) > 0 {
			op := next(1)[0]
			var r Sync
			switch op % 6 {
			case 0: // a new sync request
				b := next(12)
				copy(r.Nonce[:], b)
				r.Send = binary.BigEndian.Uint32(b[4:])
				r.Recv = binary.BigEndian.Uint32(b[8:])
			case 1: // a copy of the previous request
				r = last
			case 2: // an ordinary request from the other side, maybe out of order
				skip := uint32(next(1)[0] % 4)
				if end, ok := addMID(cur.NextRecv, skip+1); ok {
					cur.RecvEnd = max(cur.RecvEnd, end)
					if skip == 0 {
						cur.NextRecv = end
					}
				}
				continue
			case 3: // we send a request
				if cur.NextSend < 0xffffffff {
					// Re-anchor the in-flight set at the new NextSend.
					shift := cur.NextSend + 1 - cur.InFlight.Below
					cur.InFlight = Requests{Below: cur.NextSend + 1, Bits: cur.InFlight.valid()<<shift | 1}
					cur.NextSend++
				}
				continue
			case 4: // a response to our oldest request in flight
				if b := cur.InFlight.valid(); b != 0 {
					cur.InFlight.Bits = b &^ (1 << (63 - bits.LeadingZeros64(b)))
				}
				continue
			case 5:
				negotiated = !negotiated
				continue
			}
			last = r
			before := st
			v := st.Respond(r, cur, negotiated)
			if st.MaxM1 < before.MaxM1 || (before.Seen && !st.Seen) {
				t.Fatalf("accepted M1 went from %d (seen %v) to %d (seen %v)", before.MaxM1, before.Seen, st.MaxM1, st.Seen)
			}
			switch v.Action {
			case Answer:
				if !negotiated || (before.Seen && r.Send <= before.MaxM1) {
					t.Fatalf("answered %+v with state %+v, negotiated %v", r, before, negotiated)
				}
				m2, p2 := v.Reply.Recv, v.Reply.Send
				if m2 < r.Send || m2 < cur.NextRecv || m2 < cur.RecvEnd {
					t.Fatalf("M2 %d below M1 %d or received %+v", m2, r.Send, cur)
				}
				if p2 < r.Recv || p2 < cur.NextSend || p2 < cur.InFlight.end() {
					t.Fatalf("P2 %d below P1 %d or sent %+v", p2, r.Recv, cur)
				}
				if v.Reply.Nonce != r.Nonce {
					t.Fatal("nonce not echoed")
				}
				if v.Install.NextSend != p2 || v.Install.NextRecv != m2 || !v.Install.InFlight.Empty() {
					t.Fatalf("install %+v does not match reply %+v", v.Install, v.Reply)
				}
				if v.Abandon != cur.InFlight.normal() {
					t.Fatalf("abandon %+v, in flight %+v", v.Abandon, cur.InFlight)
				}
				if st.MaxM1 != r.Send || st.Reply != v.Reply {
					t.Fatalf("state %+v after answering %+v", st, r)
				}
				cur = v.Install
			case Repeat:
				if st != before || v.Reply != before.Reply || r != before.Last {
					t.Fatalf("repeat of %+v changed state or reply", r)
				}
			case Drop:
				if st != before || v.Reason == ReasonNone {
					t.Fatalf("drop (%v) changed state", v.Reason)
				}
			default:
				t.Fatalf("peer role returned %v", v.Action)
			}
		}
	})
}
