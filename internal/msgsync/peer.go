package msgsync

// PeerState is what the peer role remembers per IKE SA between sync requests.
// The zero value is an IKE SA that has never accepted one. Its fields are
// exported only so that the IKE SA record can be serialized and replicated;
// nothing but Respond should change them. A rekeyed IKE SA starts from the
// zero value: its Message IDs restart at 0 (RFC 7296 §2.18) and sync messages
// of the old SA cannot be replayed under the new keys.
type PeerState struct {
	// Seen reports whether a sync request was ever accepted.
	Seen bool
	// MaxM1 is the highest M1 accepted so far. It never decreases and must be
	// kept for the life of the IKE SA: it is the replay protection of §11.
	MaxM1 uint32
	// Last is the last accepted request and Reply the answer sent to it.
	Last, Reply Sync
}

// Verdict is the peer role's decision on one sync request.
type Verdict struct {
	Action Action // Drop, Answer or Repeat
	Reason Reason // why, for Drop
	// Reply is the notify to send back with Message ID 0, for Answer and
	// Repeat: Send is P2 (EXPECTED_SEND), Recv is M2 (EXPECTED_RECV).
	Reply Sync
	// Install holds the counters to continue with, for Answer.
	Install Counters
	// Abandon lists our requests, for Answer, whose responses must no longer
	// be awaited: the other side now expects Reply.Send next and will never
	// answer them. Their operations are to be run again as new exchanges,
	// which get Message IDs from Install.NextSend on.
	Abandon Requests
}

// Respond applies RFC 6311 §5.1 to a sync request req (nonce, M1, P1) that
// arrived with Message ID 0 on an established IKE SA whose counters are cur.
// negotiated reports whether both sides sent IKEV2_MESSAGE_ID_SYNC_SUPPORTED.
//
// It returns Drop, Answer (s is updated) or Repeat (s is unchanged).
func (s *PeerState) Respond(req Sync, cur Counters, negotiated bool) Verdict {
	if !negotiated {
		return Verdict{Action: Drop, Reason: ReasonNotNegotiated}
	}
	if s.Seen && req == s.Last {
		// A byte-identical copy: the cluster's retransmission if our answer
		// got lost, or a replay. Once the cluster has sent a request at or
		// beyond the M2 we gave it, it evidently has the answer, so any
		// further copy can only be a replay. Counters raised for another
		// reason (our own resync crossing this one) also end the repeats;
		// the cluster then renews with a higher M1, which is accepted.
		if cur.NextRecv == s.Reply.Recv && cur.RecvEnd <= s.Reply.Recv {
			return Verdict{Action: Repeat, Reply: s.Reply}
		}
		return Verdict{Action: Drop, Reason: ReasonReplay}
	}
	// Reading (b) of the §5.1 drop rule; see the package documentation.
	if s.Seen && req.Send <= s.MaxM1 {
		return Verdict{Action: Drop, Reason: ReasonStaleM1}
	}

	// §5.1: "M2 MUST be at least the higher of the received M1, and one more
	// than the highest sender value received from the cluster." RecvEnd is
	// that "one more"; NextRecv is at least any M2 we installed before,
	// which covers "previous received synchronization messages".
	m2 := max(req.Send, cur.recvFloor())
	// §5.1: "P2 MUST be the higher of the received P1 value, and one more than
	// the highest sender value used by the peer." NextSend is one more than
	// the highest Message ID we used, outstanding requests included (§9: the
	// peer that sent 3-7 and heard back for 4-7 announces 8).
	p2 := max(req.Recv, cur.sendFloor())

	reply := Sync{Nonce: req.Nonce, Send: p2, Recv: m2}
	*s = PeerState{Seen: true, MaxM1: req.Send, Last: req, Reply: reply}
	return Verdict{
		Action:  Answer,
		Reply:   reply,
		Install: Counters{NextSend: p2, NextRecv: m2, RecvEnd: m2},
		Abandon: cur.InFlight.normal(),
	}
}
