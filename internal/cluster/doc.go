// Package cluster is hike's HA membership: a raft group (hashicorp/raft,
// log and stable store in raft-wal, snapshots in files) that replicates the
// IKE SA records of every node and the ownership of the virtual IPs, and
// decides which node takes over when one fails.
//
// # Transport
//
// Raft runs over TLS 1.3 with certificates from the cluster CA on both
// sides. A certificate names a node ID (common name or DNS SAN). A dialer
// requires the certificate of the node configured at the address it dials;
// a listener requires a member's certificate presented from that member's
// configured address (nodes dial from their own address), so a node that
// holds another member's certificate can speak neither as it nor as
// itself. A node refuses to start with a certificate that does not name it.
//
// Raft writes only on the leader; followers forward their commands to it
// on the same listener, and the leader accepts SA writes only in the name
// of the node whose certificate it sees.
//
// # Replicated state
//
// The FSM holds, per IKE SA (SPIi, SPIr), the owning node, the local
// address the SA lives on and the record sealed with AES-256-GCM under a
// key derived from the cluster key (see seal.go); and the VIP -> owner map.
// Commands are small versioned binary entries: SA puts and deletes of one
// owner (many per entry: ApplyRecords and DeleteSAs coalesce concurrent
// calls), and a compare-and-set of one VIP's owner. Moving a VIP moves the
// SAs that live on it. Neither the log nor a snapshot holds key material
// in the clear, and a witness needs no cluster key at all.
//
// # Failure detection and takeover
//
// The leader counts a node as reachable while answers to its heartbeats
// and appends arrive (the last byte read on a connection it dialed to that
// node). A non-witness node unreachable for FailAfter (default 1s) loses its
// VIPs to the surviving non-witness nodes, least loaded first, ties by node
// ID; the moves are raft commands, so every node sees them as EventVIP.
// The node named in To adds the address and restores the records
// (Records) with ike.Engine.Restore(recs, RestoreOptions{Stale: true}).
//
// A node cut off from the majority must stop serving before that happens:
// a follower that has not heard from a leader for FailAfter/2, a candidate,
// and a leader whose lease (at most FailAfter/2) ran out report
// Serving() == false and EventServing, and the daemon drops its VIPs.
// Contact alone does not make a node serve again: a node that restarts or
// was cut off holds an old VIP map until it has applied what was decided
// meanwhile. A follower serves only once it has applied what the leader
// had applied when contact was made (asked over the forward channel), a
// leader once a barrier has gone through its log; Records are then
// current too.
//
// Events are edges; the state (Leader, Members, Serving, VIPs) can always
// be read, and a daemon reconciles against it. Replaying the log at start
// repeats past EventVIPs.
//
// # Membership and handback
//
// The voter set is the configured peers; Leave and Join change it at run
// time within them (never below 3 voters). Raft changes membership only
// on its leader, so both ask the leader over the forward channel, which
// adds or removes only the node its certificate names. A leaving node's
// VIPs are handed over first, like a takeover; a leaving leader hands
// leadership over before it asks.
//
// A node that comes back after a failure does not take its VIPs back: its
// SAs are being served elsewhere. Handback, on any node, asks the leader
// to return the VIPs configured for a node (its home) once the leader
// hears from it.
//
// Status is a node's view for operators: leader, term, members and how
// recently this node heard from them, VIP owners and homes, SAs per owner,
// and what this node applied and sent.
//
// # Not yet
//
// A follower's Status knows only how recently it heard from the leader,
// not from the other members. Membership stays within the configured
// peers: adding a node means a new configuration on every node.
package cluster
