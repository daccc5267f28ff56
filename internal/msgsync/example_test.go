package msgsync_test

import (
	"fmt"
	"time"

	"github.com/hike-vpn/hike/internal/msgsync"
)

// The IKE state machine's side: a sync request arrived with Message ID 0 on
// an established IKE SA that negotiated IKEV2_MESSAGE_ID_SYNC_SUPPORTED.
func ExamplePeerState_Respond() {
	var st msgsync.PeerState // part of the IKE SA record
	// RFC 6311 §9: we sent 3-7 and heard back for 4-7; we received 4-7 but
	// not 3.
	cur := msgsync.Counters{
		NextSend: 8, InFlight: msgsync.Requests{Below: 8, Bits: 1 << 4},
		NextRecv: 3, RecvEnd: 8,
	}
	req := msgsync.Sync{Nonce: msgsync.Nonce{1, 2, 3, 4}, Send: 5, Recv: 5}

	v := st.Respond(req, cur, true)
	fmt.Println(v.Action, "EXPECTED_SEND", v.Reply.Send, "EXPECTED_RECV", v.Reply.Recv)
	fmt.Println("re-run", v.Abandon.AppendMIDs(nil), "from MID", v.Install.NextSend)
	fmt.Println(st.Respond(req, v.Install, true).Action) // the cluster retransmits
	// Output:
	// answer EXPECTED_SEND 8 EXPECTED_RECV 8
	// re-run [3] from MID 8
	// repeat
}

// The cluster's side: the newly active member synchronizes one IKE SA.
func ExampleResync() {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	known := msgsync.Counters{NextSend: 64, NextRecv: 12, RecvEnd: 12} // replicated
	rs, err := msgsync.NewResync(msgsync.ResyncConfig{Window: 1, Margin: 0}, known, msgsync.NewNonce(), now)
	if err != nil {
		return // Message ID space exhausted: replace the IKE SA
	}
	cur := rs.Hold(known)
	req := rs.Request()
	fmt.Println("send M1", req.Send, "P1", req.Recv)

	act, at := rs.Next()
	fmt.Println(act, "after", at.Sub(now))
	fmt.Println(rs.Expire(at))

	// The peer's answer: its next request will be 13, it expects 65 from us.
	out := rs.Accept(msgsync.Sync{Nonce: req.Nonce, Send: 13, Recv: 65}, cur)
	fmt.Println(out.Action, "next send", out.Install.NextSend, "next recv", out.Install.NextRecv)
	// Output:
	// send M1 65 P1 12
	// resend after 1s
	// resend
	// done next send 65 next recv 13
}
