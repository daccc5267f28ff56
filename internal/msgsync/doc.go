// Package msgsync holds the RFC 6311 rules for IKEv2 message-ID and IPsec
// replay-counter synchronization as pure functions over counters.
//
// Nothing here performs I/O, touches keys or encodes bytes: the notify codec
// lives in internal/wire, the exchange plumbing in internal/ike, and the
// failover orchestration in internal/cluster. Keeping the rules pure lets them
// be tested against the RFC's own examples and fuzzed without a network.
//
// # Roles
//
// The peer role (PeerState.Respond) answers an IKEV2_MESSAGE_ID_SYNC request
// that arrived with Message ID 0. Every IKE SA that negotiated the capability
// needs it, including a cluster member whose peer is itself a cluster
// (RFC 6311 App. A.4, simultaneous failover).
//
// The cluster role (Resync) is run once per IKE SA per failover event by the
// newly active member: it chooses M1 and P1, retransmits, accepts exactly one
// response and derives the counters to continue with.
//
// The replay-counter helpers (AdvanceSeq, ApplyReplayDelta, EstimateJump)
// cover RFC 6311 §5.2 for both roles.
//
// # The drop rule, and why hike reads it differently from strongSwan
//
// RFC 6311 §5.1 says the peer MUST drop a sync request "if M1 is lower than or
// equal to the highest value it has seen from the cluster. This includes any
// previous received synchronization messages." The sentence admits two
// readings:
//
//	(a) compare M1 with every Message ID received, ordinary or sync;
//	(b) compare M1 only with the M1 of earlier accepted sync requests.
//
// strongSwan (src/libcharon/sa/ikev2/tasks/ike_mid_sync.c) implements (a): it
// drops a request whose M1 is below the next Message ID it expects.
// hike's peer role implements (b), for three reasons:
//
//   - App. A.2 and A.3 of the RFC answer requests with M1 = 2 after the peer
//     has already received Message IDs 4 and 3. Under (a) both examples would
//     be dropped, and the "one more than the highest sender value received"
//     term of the M2 rule could never matter.
//   - §11 names the threat the rule defends against: a replayed sync request.
//     Sync requests are protected by this IKE SA's keys, so every sync request
//     an attacker can replay is one the cluster once sent; requiring M1 to
//     exceed the highest M1 already accepted stops all of them, which is what
//     §11 describes ("the Send counter sent by the cluster member should always
//     be monotonically increasing").
//   - A newly active member can only estimate how far the old member got. Under
//     (a) an underestimate is silently dropped and the IKE SA dies; under (b)
//     the answer's M2 corrects it, because M2 is never below what the peer has
//     already received. The peer's counters therefore never move backwards
//     under either reading.
//
// If no sync request was ever accepted on the IKE SA, any M1 is accepted:
// there is no earlier sync message to replay.
//
// RFC 6311 says nothing about retransmission. A cluster resending the same
// bytes is indistinguishable from a replay, so hike keeps a one-entry cache: a
// byte-identical repeat of the last accepted request gets the same answer with
// no state change, but only until the cluster proves it received that answer
// by sending an ordinary request. strongSwan processes such a copy again,
// because after its own answer the Message ID it expects equals M1 and only a
// lower M1 is dropped; hike's cache answers the retransmission the same way
// without weakening the M1 rule and without touching state a second time.
//
// # Message ordering the caller must respect
//
// A request carrying IPSEC_REPLAY_COUNTER_SYNC next to IKEV2_MESSAGE_ID_SYNC
// must have its message-ID part processed first; if that part is dropped, the
// whole message is dropped and no replay counter moves (RFC 6311 §5.2). A
// Repeat changes no state either, so the delta of a retransmitted request is
// not applied a second time.
// Sync responses are never stored in the ordinary response cache and never
// advance the expected Message ID: Message ID 0 is outside the window.
package msgsync
